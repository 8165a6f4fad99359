"""A task's environment and working directory, from its assignment and its agent's own.

Why a module of its own: what a user's task may inherit from the agent is a security
boundary (a probe read the agent's storage keys in a plain user's task), and where it runs
decides what it can write over (a probe's ran in the cluster's source checkout).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache

from shared.domain.messages import RunTask

_SECRET_VARIABLES = frozenset(
    {
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "AZURE_PASSWORD",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "AZUREWEBJOBSSTORAGE",
    }
)
"""azure-identity's and Functions' credential variables (by upper-cased name)."""
_SECRET_PARTS = ("CONNECTION", "SECRET", "PASSWORD", "PASSWD", "AZUREWEBJOBS")
"""Text that makes a variable of the agent's own environment a credential, anywhere in it."""
_SECRET_WORDS = frozenset({"KEY", "TOKEN", "CREDENTIALS"})
"""Words (between underscores) that do: GPG_KEY, GITHUB_TOKEN; not MONKEY, KEYBOARD."""


_SECRET_VALUE = re.compile(
    r"(AccountKey|SharedAccessKey|SharedAccessSignature|AccessKey|Password|pwd)=|"
    r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@",
    re.IGNORECASE,
)
"""A value that carries a credential: a connection string's key, or a URL's password."""


@lru_cache(maxsize=4096)  # the agent's environment is the same at every task start
def agent_private(name: str, value: str = "") -> bool:
    """A variable of the agent's own environment that no user task inherits: the cluster's
    settings (``HPC_*``: a task gets its own from the control plane in its assignment, set
    after this), azure-identity's and Functions' credentials (``AzureWebJobs*``), anything
    named like a credential (``*_KEY``, ``*CONNECTION*``, ``*SECRET*``...), and any value
    that carries one (a connection string's ``AccountKey=``/``SharedAccessKey=``, a URL's
    password: a probe's ``ServiceBusConnection`` and ``DATABASE_URL`` passed the names). A probe read
    HPC_COSMOS_KEY and HPC_BLOB_CONNECTION_STRING in a plain user's task: with them a user
    could forge agent events and read every user's output."""
    upper = name.upper()
    if upper.startswith("HPC_") or upper in _SECRET_VARIABLES or _SECRET_VALUE.search(value):
        return True
    return any(part in upper for part in _SECRET_PARTS) or not _SECRET_WORDS.isdisjoint(
        upper.replace("-", "_").split("_")
    )


def task_env(
    task: RunTask, *, node: str, group: str, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The agent's environment overlaid with the task's; HPC_NODE_NAME and HPC_NODE_GROUP
    are always set (the control plane normally fills them; an empty value counts as missing)."""
    base_env = os.environ if base is None else base
    env = {k: v for k, v in base_env.items() if not agent_private(k, v)}
    env.update(task.env)
    if not env.get("HPC_NODE_NAME"):
        env["HPC_NODE_NAME"] = node
    if not env.get("HPC_NODE_GROUP"):
        env["HPC_NODE_GROUP"] = group
    return env


def work_dir(given: str | None, *, home: str | None) -> str | None:
    """The task's working directory: a relative one (sent through the API as given; the CLI
    makes its own absolute) is taken from ``home``, the agent's user's, and none is ``home``,
    as ``--run-as-owner`` takes both from the owner's (agent/owners.py; ``home`` None: left
    as given for it). They were the agent's own working directory: under ``hpc up`` the
    source checkout, which a probe's task could write over; under systemd ``/``."""
    if home is None or (given is not None and os.path.isabs(given)):
        return given
    return home if given is None else os.path.join(home, given)
