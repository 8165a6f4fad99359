"""What an agent is: its node name, node groups, cores, memory and timings."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent import machine
from shared.domain.messages import EVENTS_LOCK_MS
from shared.domain.specvalues import quoted
from shared.settings import AgentMemory, Settings

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
"""A node name: a host name's characters (it becomes a folder, a session id and an entry of
HPC_NODES, ``name:cores,...``, so no ``/``, ``,`` or ``:``)."""
GROUP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
"""A node group name, as shared.usecases.nodegroups.create_group takes it."""


def _default_heartbeat_interval_s() -> float:
    return Settings().heartbeat_interval_s


def fence_for_timeout(heartbeat_timeout_s: float) -> float:
    """The lifeline's fence for a heartbeat timeout: 2/3 of it, so the tasks of an agent not
    heard are dead before the control plane declares the node lost and runs them elsewhere."""
    return heartbeat_timeout_s * 2 / 3


def _default_fence_s() -> float:
    return fence_for_timeout(Settings().heartbeat_timeout_s)


def _default_recent_ended_s() -> float:
    return Settings().heartbeat_timeout_s + EVENTS_LOCK_MS / 1000


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default_factory=socket.gethostname, min_length=1)
    """The node name, which is also the agent's session id on the ``nodes`` queue."""
    groups: list[str] = Field(default_factory=lambda: ["OnPremNodes"], min_length=1)
    """Node groups this node belongs to; the first one is the task's HPC_NODE_GROUP fallback."""
    cores: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=1_000_000)
    """Cores the node offers; the scheduler keeps placements within them."""
    memory_mb: AgentMemory = Field(default_factory=lambda: machine.memory_mb())
    """The node's memory (MB; given as MB or a size, 16G), sent at registration: tasks that
    ask for more than its tasks leave free are not placed on it (consumable memory). None:
    unknown (it runs no task that asks for memory)."""
    heartbeat_interval_s: float = Field(default_factory=_default_heartbeat_interval_s, gt=0)
    poll_ms: int = Field(default=50, ge=1, le=1000)
    """Longest wait for assignments per loop: bounds how late a cancel or a process exit is noticed."""
    kill_grace_s: float = Field(default=15.0, ge=0, le=3600)
    """Time a canceled task's or one past its runtime limit's process group has between
    SIGTERM and SIGKILL (HPC_TASK_GRACE_S; HPC Pack's TaskCancelGracePeriod, 15 s): to save
    a checkpoint. Tasks the agent kills as it stops get at most 1 s (agent/tasks.py)."""
    state_dir: Path | None = None
    """This node's folder on this machine (lock file, host id; see agent/identity.py).
    ``hpc agent run`` uses $HPC_HOME/agents/<name>; None: no lock, a random host id."""
    name_wait_s: float = Field(default=0.0, ge=0, le=3600)
    """How long to wait for an earlier agent of this name in ``state_dir`` to exit before
    giving up with NameInUse (``--wait-for-name``; 0: give up at once)."""
    registration_retry_s: float = Field(default=5.0, gt=0)
    """How often an unanswered registration is sent again (the control plane may be down)."""
    recent_ended_s: float = Field(default_factory=_default_recent_ended_s, gt=0)
    """How long heartbeats repeat an ended attempt, so a lost TaskEnded is recovered."""
    lifeline: bool = True
    """Start the watchdog that kills this agent's tasks if the agent dies (agent/lifeline.py)."""
    lifeline_bus: dict[str, str] = Field(default_factory=dict, repr=False)
    """The HPC_* settings that open this agent's bus (shared/wiring.py ``bus_env``): the
    watchdog reports on it the ends this agent, silent or dead, does not
    (agent/lifeline_reports.py). Empty: it reports none. ``hpc agent run`` sets it."""
    fence_s: float = Field(default_factory=_default_fence_s, gt=0)
    """The watchdog also kills them when no heartbeat was sent for this long (the agent paused
    or cut off from the bus): 2/3 of HPC_HEARTBEAT_TIMEOUT_S, so they are dead before the
    control plane declares the node lost and runs them elsewhere. Replaced by 2/3 of the
    control plane's timeout when its answer to the registration says it (protocol 5)."""
    run_as_owner: bool = False
    """Run each task as the OS user named as its job's owner (agent/owners.py); the agent must
    be root. False: every task runs as the agent's own user."""
    enforce_memory: bool = False
    """Kill a task whose processes use more memory than it asked for (minMemoryMb): it fails
    saying so (agent/memorylimit.py; HPC_AGENT_ENFORCE_MEMORY). False: the ask is the
    scheduler's accounting only."""

    @field_validator("name")
    @classmethod
    def _name_is_a_session_id(cls, name: str) -> str:
        if name != name.strip() or any(c.isspace() for c in name):
            raise ValueError(f"node name must not contain whitespace, got {name!r}")
        if not NODE_NAME.fullmatch(name):
            raise ValueError(
                f"node name {quoted(name)}: a letter or digit first, then letters, digits, _ . - "
                "(63 at most, as a host name): it names the node's folder, its queue session "
                "and its entry in HPC_NODES"
            )
        return name

    @field_validator("groups")
    @classmethod
    def _groups_are_named(cls, groups: list[str]) -> list[str]:
        if any(not g.strip() for g in groups):
            raise ValueError("node group names must not be empty")
        for g in groups:
            if not GROUP_NAME.fullmatch(g):
                raise ValueError(
                    f"node group name {quoted(g)}: letters, digits, _ . - (64 at most, a letter "
                    "first), as `hpc nodegroup create` takes"
                )
        return list(dict.fromkeys(groups))  # keep order, drop repeats
