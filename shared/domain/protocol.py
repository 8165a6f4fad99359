"""Agent protocol versions: which assignments an agent can read. Pure.

Messages refuse unknown fields, and the wire form leaves out fields at their defaults
(:meth:`shared.domain.messages.Message.to_bytes`), so an agent reads every
:class:`~shared.domain.messages.RunTask` that sets no field newer than it. Each version
below is the set of RunTask fields agents of that version know, numbered from the
repository's history of ``RunTask``:

1. the first registering, incarnation-fenced agents (commit 29a41cd): ``incarnation``,
   ``job_id``, ``task_id``, ``attempt``, ``command``, ``cores``, ``work_dir``, ``env``;
2. ``runtime_limit_s`` (runtime limits, commit db62299);
3. ``stdout`` and ``stderr`` (files the agent writes output to, commit 0db5284);
4. ``owner`` (the job's owner, for agents that run each task as its owner: --run-as-owner);
5. no RunTask field: the answer to its registration says the control plane's heartbeat
   timeout (:class:`~shared.domain.messages.Registration` ``heartbeat_timeout_s``), so its
   lifeline fences at 2/3 of the timeout that actually decides the node lost, not of its own
   machine's setting (:func:`tells_timeout`), and a ``note`` for its log (a node group its
   ``--group`` created);
6. no RunTask field: the answer also says the cluster's task grace period
   (``task_grace_s``, the control plane's HPC_TASK_GRACE_S, HPC Pack's cluster-wide
   TaskCancelGracePeriod), which the agent uses instead of its own machine's
   (:func:`tells_grace`).

An agent says its version in :class:`~shared.domain.messages.RegisterNode` (``protocol``;
left out, as by agents that predate it: 1); the control plane keeps it on the node
(``Node.agent_protocol``) and the scheduler places a task only on nodes whose agents read
its assignment (:func:`task_protocol`). A new RunTask field gets a new version here
(tests/test_agent_protocol.py fails until it is classified).

``owner`` differs from the other fields: it is what the agent is told, not what the task
asks for. Dispatch sets it only in assignments to agents of version 4 or later
(:func:`carries_owner`); an older agent runs every task as its own OS user and has no use
for it, so it still gets every task (no task needs version 4, and :func:`task_protocol`
never says 4). An agent of version 4 is therefore always told the owner by a control plane
that knows the field; one with --run-as-owner fails a task whose assignment does not say
its owner (sent by an older control plane) rather than run it as another user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.domain.messages import RunTask
from shared.domain.models import Task


@dataclass(frozen=True)
class Version:
    number: int
    fields: tuple[str, ...]
    """The RunTask fields (Python names) this version added."""
    what: str
    """What it brought, in a user's words (pending reasons name it)."""


VERSIONS: tuple[Version, ...] = (
    Version(
        1,
        (
            "kind",
            "incarnation",
            "job_id",
            "task_id",
            "attempt",
            "command",
            "cores",
            "work_dir",
            "env",
        ),
        "the first agents",
    ),
    Version(2, ("runtime_limit_s",), "runtime limits"),
    Version(3, ("stdout", "stderr"), "stdout/stderr files"),
    Version(4, ("owner",), "the task's owner"),
    Version(5, (), "told the control plane's heartbeat timeout"),
    Version(6, (), "told the cluster's task grace period"),
)

AGENT_PROTOCOL: int = VERSIONS[-1].number
"""The version this code's agent speaks (it reads every RunTask field)."""

FIELD_PROTOCOL: Mapping[str, int] = {f: v.number for v in VERSIONS for f in v.fields}
"""The version that added each RunTask field."""

OWNER_PROTOCOL: int = FIELD_PROTOCOL["owner"]
"""The first version told the task's owner (RunTask ``owner``)."""

TIMEOUT_PROTOCOL: int = 5
"""The first version told the control plane's heartbeat timeout when it registers."""

GRACE_PROTOCOL: int = 6
"""The first version told the cluster's task grace period when it registers."""

_WHAT = {v.number: v.what for v in VERSIONS}


def run_task_protocol(run: RunTask) -> int:
    """The lowest agent protocol that reads ``run``: the newest version among the fields it
    sets to other than their default (those at their default are left off the wire). A field
    missing from :data:`VERSIONS` counts as the newest version."""
    used = run.model_dump(exclude_defaults=True).keys()
    return max((FIELD_PROTOCOL.get(name, AGENT_PROTOCOL) for name in used), default=1)


def carries_owner(agent_protocol: int) -> bool:
    """Whether an agent of this protocol is told each task's owner in its assignments. Older
    ones are not: the field would make them refuse the assignment, and they run every task
    as their own user anyway."""
    return agent_protocol >= OWNER_PROTOCOL


def tells_timeout(agent_protocol: int) -> bool:
    """Whether the answer to an agent's registration says the control plane's heartbeat
    timeout. Older agents refuse fields they do not know, so they are not told (they fence
    on their own machine's HPC_HEARTBEAT_TIMEOUT_S, as before)."""
    return agent_protocol >= TIMEOUT_PROTOCOL


def tells_grace(agent_protocol: int) -> bool:
    """Whether the answer to an agent's registration says the cluster's task grace period
    (older agents refuse the field; they keep their machine's HPC_TASK_GRACE_S)."""
    return agent_protocol >= GRACE_PROTOCOL


def task_protocol(task: Task) -> int:
    """The protocol the RunTask built from ``task`` needs (shared.usecases.dispatch builds
    it): the same answer as :func:`run_task_protocol` of its assignment to an agent that is
    not told owners (one that is reads the owner too), without building it (the scheduler
    asks once per queued task and pass)."""
    if task.stdout is not None or task.stderr is not None:
        return 3
    if task.runtime_limit_s is not None:
        return 2
    return 1


def describe(version: int) -> str:
    """``agent protocol 3 (stdout/stderr files)``."""
    what = _WHAT.get(version)
    return f"agent protocol {version}" + (f" ({what})" if what else "")
