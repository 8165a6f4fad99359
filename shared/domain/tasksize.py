"""How large a task's assignment message can grow, checked when the job is submitted.

Each task reaches its agent as one :class:`~shared.domain.messages.RunTask` on the bus, and
Service Bus Standard carries at most 256 KB per message. A task whose assignment cannot be
sent would be accepted and then never run, so the spec is refused up front, with the bound
and what to shorten. The size is measured on the real message, built with the widest values
the cluster may add at dispatch (ids, HPC_* variables, the node list of a multi-node task).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache

from shared.domain.durations import MAX_LIMIT_S
from shared.domain.messages import JOB_SUBMIT_ENV, MAX_ID, RunTask
from shared.domain.outputpaths import WIDEST, OutputIds, expand_optional, widest_expansion
from shared.domain.specvalues import sweep_path

MAX_ASSIGNMENT_BYTES = 256 * 1024
"""Service Bus Standard's largest message (shared.ports.bus.MAX_MESSAGE_BYTES; a test pins
the two together: the domain imports no port)."""

MAX_ENV_BYTES = 64 * 1024
"""A task's env, names and values in UTF-8: it travels in every assignment of the task."""

ENVELOPE_BYTES = 1024
"""Room for what surrounds the body: the session id (a node name, 128 characters at most),
the bus's per-message count and the broker's AMQP headers."""

_NODE = "n" * 128  # the longest node name (messages.NodeName)
_GROUP = "g" * 64  # the longest node group name (shared.usecases.nodes)
_CORES = 1_000_000  # the most cores of a node (messages.Cores)
_HOST = f"{_NODE}:{_CORES}"
_OWNER = "u" * 32  # the longest API user name (shared.domain.usernames.USER_NAME)
_WIDEST_JSON_CHAR = 12
"""JSON bytes of one character at most: an astral character is two \\uXXXX escapes."""
_WIDEST_NAME = "\U0001f600" * WIDEST["%x"]  # a job name's widest JSON (%x in --stdout)


def check_env_size(env: Mapping[str, str]) -> None:
    """Refuse an env over :data:`MAX_ENV_BYTES` (ValueError saying the bound and why)."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
    if size > MAX_ENV_BYTES:
        raise ValueError(
            f"env is {size} bytes (names and values); at most {MAX_ENV_BYTES} are accepted: "
            "it travels in each task's assignment message, which Service Bus carries up to "
            "256 KB; put large data in a file and pass its path"
        )


def check_assignment(
    *,
    command: str,
    env: Mapping[str, str],
    work_dir: str | None,
    stdout: str | None,
    stderr: str | None,
    nodes: int,
    sweep_index: int | None,
) -> None:
    """Refuse (ValueError) a task whose RunTask could exceed :data:`MAX_ASSIGNMENT_BYTES`.
    ``command`` is as dispatched (a sweep's ``*`` already replaced by ``sweep_index``)."""
    mine = [command, work_dir or "", *env, *env.values()]
    rough = (
        _WIDEST_JSON_CHAR * sum(map(len, mine))
        + sum(widest_expansion(p, _WIDEST_JSON_CHAR) for p in (stdout, stderr) if p)
        + 6 * len(env)
        + _fixed_bytes(nodes)
    )
    if rough <= MAX_ASSIGNMENT_BYTES:
        return  # the usual task: far below the bound, no message built
    size = _assignment_bytes(command, env, work_dir, stdout, stderr, nodes, sweep_index)
    if size <= MAX_ASSIGNMENT_BYTES:
        return
    at = "" if sweep_index is None else f" at sweep index {sweep_index}"
    paths = sum(_json_bytes(p) for p in (work_dir, stdout, stderr) if p is not None)
    raise ValueError(
        f"the task's assignment message{at} could reach {size} bytes (command "
        f"{_json_bytes(command)}, env {_json_bytes(dict(env))}, workDir/stdout/stderr {paths}, "
        f"the rest the cluster's ids and HPC_* variables for {nodes} node(s)); Service Bus "
        f"Standard carries at most {MAX_ASSIGNMENT_BYTES} bytes: shorten the command or env "
        "(put large data in a file and pass its path)"
    )


def _json_bytes(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")))


@cache
def _fixed_bytes(nodes: int) -> int:
    """The most a task takes besides its own text (ids, HPC_* variables, field names, envelope)."""
    return _assignment_bytes("", {}, "", "", "", nodes, -MAX_ID)


def _assignment_bytes(
    command: str,
    env: Mapping[str, str],
    work_dir: str | None,
    stdout: str | None,
    stderr: str | None,
    nodes: int,
    sweep_index: int | None,
) -> int:
    """The task's RunTask as shared.usecases.dispatch builds it, with the widest ids, node
    names, core counts and owner; HPC_NODES (a name:cores per node) is counted, not built."""
    ids = OutputIds(
        job_id=MAX_ID,
        task_id=MAX_ID,
        sweep_index=sweep_index,
        job_name=_WIDEST_NAME,
        owner=_OWNER,
        node=_NODE,
    )
    cluster = {
        "HPC_JOB_ID": str(MAX_ID),
        JOB_SUBMIT_ENV: "9999-12-31T23:59:59.999999+00:00",  # the longest isoformat of a UTC time
        "HPC_TASK_ID": str(MAX_ID),
        "HPC_TASK_ATTEMPT": str(1_000_000),
        "HPC_SWEEP_INDEX": "" if sweep_index is None else str(sweep_index),
        "HPC_NODE_NAME": _NODE,
        "HPC_NODE_GROUP": _GROUP,
        "HPC_TASK_CORES": str(_CORES * nodes),
        "HPC_NODES": "",
    }
    run = RunTask(
        incarnation=MAX_ID,
        job_id=MAX_ID,
        task_id=MAX_ID,
        attempt=1_000_000,
        command=command,
        cores=_CORES,
        runtime_limit_s=MAX_LIMIT_S,
        work_dir=sweep_path(work_dir, sweep_index),
        stdout=expand_optional(sweep_path(stdout, sweep_index), ids),
        stderr=expand_optional(sweep_path(stderr, sweep_index), ids),
        env={**cluster, **env},
        owner=_OWNER,
    )
    hosts = nodes * len(_HOST) + nodes - 1
    return len(run.to_bytes()) + hosts + ENVELOPE_BYTES
