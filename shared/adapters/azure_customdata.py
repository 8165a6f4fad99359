"""Custom data of a node VM: a ``#cloud-config`` document that installs the agent and runs
it as a systemd service. Pure: settings and the VM's spec in, text out.

Custom data is readable by anything on the VM (IMDS) and by whoever may read the VM
resource, so it carries **no secret**: the agent reaches Service Bus and Blob storage by
name with the VM's user-assigned managed identity (``AZURE_CLIENT_ID`` makes
``DefaultAzureCredential`` pick it), never with a key or connection string.

The boot story it is written for. Azure creates a VM running, and the provider deallocates
it once created, so that first boot can be cut short at any point:

- the agent does not start on the creation boot (its node is Offline; an agent joining
  then would bring the node Online on a VM about to be deallocated): the unit is enabled
  and starts on every later boot, i.e. on each ``start``;
- installing is idempotent and is also the unit's ``ExecStartPre``, so an install the
  deallocation cut short completes on the first start (cloud-init also re-runs the
  per-instance steps that did not finish);
- ``bootcmd`` counts boots, so when cloud-init only reaches its steps on a later boot it
  starts the agent itself.

The document is JSON, which is YAML (cloud-init reads it with ``yaml.safe_load``): written
by ``json.dumps`` it needs no YAML library and cannot be mis-quoted.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from shared.ports.compute import VmSpec
from shared.settings import Settings

AGENT_USER = "hpc"
"""The system user the agent (and so every task) runs as: not the admin user, no sudo."""
AGENT_HOME = "/var/lib/hybridhpc"
"""HPC_HOME of the agent on a VM (systemd's StateDirectory creates it, owned by AGENT_USER)."""
VENV = "/opt/hybridhpc"
UNIT = "hybridhpc-agent.service"
ENV_FILE = "/etc/hybridhpc/agent.env"
PACKAGE_FILE = "/etc/hybridhpc/package"
INSTALLER = "/usr/local/sbin/hybridhpc-install"
BOOTS_FILE = "/var/lib/hybridhpc-boots"
CUSTOM_DATA_MAX = 87_380
"""ARM's limit on osProfile.customData (base64 of at most 64 KiB)."""

SECRET_SETTINGS = (
    "HPC_TOKEN",
    "HPC_COSMOS_KEY",
    "HPC_BLOB_CONNECTION_STRING",
    "HPC_SERVICEBUS_CONNECTION_STRING",
)
"""Never written to custom data, whatever the caller passes."""

INSTALL_SCRIPT = f"""#!/bin/sh
# Install the HybridHPC agent once. Idempotent (cloud-init and the agent's unit both run it);
# the requirement is read from a file, never pasted into a shell line.
set -eu
exec 9>/run/hybridhpc-install.lock
flock 9
want=$(cat {PACKAGE_FILE})
if [ -x {VENV}/bin/hpc ] && [ "$(cat {VENV}/.package 2>/dev/null)" = "$want" ]; then
  exit 0
fi
python3 -m venv {VENV}
{VENV}/bin/pip install --disable-pip-version-check --upgrade "$want"
printf '%s' "$want" > {VENV}/.package
"""

_BARE = re.compile(r"^[A-Za-z0-9._:/@+,=-]+$")
_ARG_BARE = re.compile(r"^[A-Za-z0-9._:/@+,=%$-]+$")
"""An ExecStart argument once ``%`` and ``$`` are doubled."""


def agent_settings(settings: Settings) -> dict[str, str]:
    """The settings an agent on a VM needs, taken from the control plane's own: where the
    bus and the output are (by name: reached with the VM's identity), the timings, the task
    grace and memory enforcement (the cluster's, so every VM of it kills tasks alike)."""
    return {
        "HPC_HOME": AGENT_HOME,
        "HPC_BUS": "servicebus",
        "HPC_SERVICEBUS_NAMESPACE": settings.servicebus_namespace,
        "HPC_OUTPUT": "blob",
        "HPC_BLOB_ACCOUNT_URL": settings.blob_account_url,
        "HPC_BLOB_CONTAINER": settings.blob_container,
        "HPC_HEARTBEAT_INTERVAL_S": f"{settings.heartbeat_interval_s:g}",
        "HPC_HEARTBEAT_TIMEOUT_S": f"{settings.heartbeat_timeout_s:g}",
        "HPC_MAX_OUTPUT_BYTES": str(settings.max_output_bytes),
        "HPC_TASK_GRACE_S": f"{settings.task_grace_s:g}",
        "HPC_AGENT_ENFORCE_MEMORY": str(settings.agent_enforce_memory).lower(),
    }


def environment_file(values: Mapping[str, str]) -> str:
    """A systemd EnvironmentFile: ``KEY=VALUE`` lines, values quoted where needed."""
    lines = []
    for key, value in values.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not an environment variable name: {key!r}")
        if "\n" in value or "\r" in value:
            raise ValueError(f"{key}: a value must be one line")
        if value and not _BARE.match(value):
            value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def systemd_arg(arg: str) -> str:
    """One ExecStart argument: bare when safe, else double-quoted; ``%`` and ``$`` escaped
    (systemd would expand them)."""
    if "\n" in arg:
        raise ValueError(f"a command-line argument must be one line: {arg!r}")
    arg = arg.replace("%", "%%").replace("$", "$$")
    if _ARG_BARE.match(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def agent_command(spec: VmSpec) -> list[str]:
    """``hpc agent run`` for the VM's node: its name is the VM's, its group and cores the
    node's (the control plane owns both; this is the agent's first proposal)."""
    return [
        f"{VENV}/bin/hpc",
        "agent",
        "run",
        "--name",
        spec.name,
        "--group",
        spec.group,
        "--cores",
        str(spec.cores),
    ]


def agent_unit(spec: VmSpec) -> str:
    """The agent's systemd unit. ``KillMode=process``, as Slurm's slurmd.service: systemd
    signals the agent alone, never the tasks. With the default (``control-group``) an agent
    that crashed or was killed had its whole unit signalled at once: the watchdog died before
    it could act, and a task whose command had just returned lost its end record to the
    SIGTERM, so it ran again. Now the agent's own watchdog ends its tasks, sparing a command
    that has returned (agent/lifeline.py), and the restarted agent ends what its predecessor
    left (agent/groups.py ``orphans``): the paths the fault tests run."""
    command = " ".join(systemd_arg(a) for a in agent_command(spec))
    return f"""[Unit]
Description=HybridHPC node agent ({spec.name})
Wants=network-online.target
After=network-online.target

[Service]
User={AGENT_USER}
EnvironmentFile={ENV_FILE}
StateDirectory=hybridhpc
ExecStartPre=+{INSTALLER}
ExecStart={command}
TimeoutStartSec=900
KillMode=process
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
"""


def cloud_config(
    spec: VmSpec,
    *,
    package: str,
    identity_client_id: str,
    environment: Mapping[str, str],
) -> str:
    """The ``#cloud-config`` document of the VM that becomes node ``spec.name``.
    ``environment``: the agent's settings (:func:`agent_settings`); ``identity_client_id``:
    the VM's user-assigned identity, the agent's AZURE_CLIENT_ID."""
    if not package.strip() or "\n" in package:
        raise ValueError(f"the agent package must be one pip requirement, got {package!r}")
    secrets = sorted(set(environment) & set(SECRET_SETTINGS))
    if secrets:
        raise ValueError(f"custom data is readable on the VM: never put {secrets} in it")
    env = {
        **environment,
        "HPC_NODE_NAME": spec.name,
        "HPC_NODE_GROUP": spec.group,
        "AZURE_CLIENT_ID": identity_client_id,
    }
    document: dict[str, Any] = {
        "package_update": True,
        "packages": ["python3", "python3-venv"],
        "users": [
            "default",
            {
                "name": AGENT_USER,
                "system": True,
                "homedir": AGENT_HOME,
                "shell": "/usr/sbin/nologin",
                "lock_passwd": True,
            },
        ],
        "bootcmd": [["sh", "-c", f"date -u +%FT%TZ >> {BOOTS_FILE}"]],
        "write_files": [
            {"path": PACKAGE_FILE, "permissions": "0644", "content": package.strip() + "\n"},
            {"path": ENV_FILE, "permissions": "0644", "content": environment_file(env)},
            {"path": INSTALLER, "permissions": "0755", "content": INSTALL_SCRIPT},
            {
                "path": f"/etc/systemd/system/{UNIT}",
                "permissions": "0644",
                "content": agent_unit(spec),
            },
        ],  # fmt: skip
        "runcmd": [
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", UNIT],
            [INSTALLER],
            [
                "sh",
                "-c",
                f'if [ "$(wc -l < {BOOTS_FILE})" -gt 1 ]; then '
                f"systemctl start --no-block {UNIT}; fi",
            ],
        ],
    }
    return "#cloud-config\n" + json.dumps(document, indent=2) + "\n"


def encode(document: str) -> str:
    """osProfile.customData: base64, as ARM requires; refused above ARM's limit."""
    encoded = base64.b64encode(document.encode()).decode()
    if len(encoded) > CUSTOM_DATA_MAX:
        raise ValueError(f"custom data is {len(encoded)} characters, ARM takes {CUSTOM_DATA_MAX}")
    return encoded
