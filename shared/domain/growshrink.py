"""HPC Pack's AutoGrowShrink parameters, and what the autoscaler remembers between runs.

Plain data for :mod:`shared.domain.autoscaler`. The memory (``idle_since``,
backoffs, the last scale-up) is a value the caller loads and stores with
each run (:meth:`AutoscalerState.to_dict` fits a Meta document): a timer
function keeps nothing in memory, and counting idle checks would drift with
timer runs, so idleness is a duration since a stored time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

# ------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GroupPolicy:
    """HPC Pack's AutoGrowShrink parameters for one managed group, plus its bounds."""

    node_cores: int
    """Cores of one node of the group (the template the overflow is packed onto)."""
    min_nodes: int = 0
    max_nodes: int = 100
    grow_interval: timedelta = timedelta(minutes=1)
    """GrowInterval: how often growth is considered."""
    shrink_interval: timedelta = timedelta(minutes=1)
    """ShrinkInterval: how often shrinking is considered."""
    shrink_idle_times: int = 3
    """ShrinkIdleTimes: idle checks before a stop; used as a duration (see :attr:`idle`)."""
    grow_threshold: int = 1
    """GrowThreshold: queued tasks the group could run before it grows at all."""
    tasks_per_resource_unit: int = 1
    """TasksPerResourceUnit: queued tasks that count as one core of demand."""
    extra_nodes_grow_ratio: int = 0
    """ExtraNodesGrowRatio: percent of extra nodes added to each growth."""
    grow_by_min: bool = False
    """GrowByMin: grow by each job's smallest need (its widest task) instead of all its tasks."""
    scale_down_delay: timedelta | None = None
    """No scale-down of this group this soon after it grew; None: the policy's
    (:attr:`AutoscalerPolicy.scale_down_delay`)."""

    @property
    def idle(self) -> timedelta:
        """ShrinkIdleTimes checks in a row, as a duration (counting checks drifts with timer runs)."""
        return self.shrink_interval * self.shrink_idle_times


@dataclass(frozen=True)
class AutoscalerPolicy:
    groups: Mapping[str, GroupPolicy]
    """The managed groups (their nodes are VMs the autoscaler may start and stop)."""
    exclude_node_groups: frozenset[str] = frozenset()
    """ExcludeNodeGroups: managed groups left alone (neither grown nor shrunk)."""
    deployment_timeout: timedelta = timedelta(minutes=20)
    """A started node whose agent has not joined by then is stopped and counted as a failure."""
    scale_down_delay: timedelta = timedelta(minutes=10)
    """No scale-down of a group this soon after it grew."""
    max_starts_per_run: int = 10
    max_stops_per_run: int = 10
    backoff_initial: timedelta = timedelta(minutes=1)
    backoff_max: timedelta = timedelta(minutes=30)


# ---------------------------------------------------------- remembered state


@dataclass(frozen=True)
class GroupMemory:
    last_grow_check: datetime | None = None
    last_shrink_check: datetime | None = None
    last_scale_up: datetime | None = None
    backoff_until: datetime | None = None
    backoff: timedelta | None = None
    """The last backoff given; the next failure after it expired doubles it."""
    last_failure: str | None = None


@dataclass(frozen=True)
class NodeMemory:
    idle_since: datetime | None = None
    start_ordered_at: datetime | None = None
    """When the autoscaler ordered this node started (the deployment timeout runs from it)."""


@dataclass(frozen=True)
class AutoscalerState:
    """What the autoscaler remembers between runs; the caller stores it (e.g. as a Meta doc)."""

    groups: Mapping[str, GroupMemory] = field(default_factory=dict)
    nodes: Mapping[str, NodeMemory] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def enc(obj: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in obj.__dict__.items():
                if isinstance(value, datetime):
                    value = value.isoformat()
                elif isinstance(value, timedelta):
                    value = value.total_seconds()
                out[key] = value
            return out

        return {
            "groups": {g: enc(m) for g, m in self.groups.items()},
            "nodes": {n: enc(m) for n, m in self.nodes.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AutoscalerState:
        def dec(raw: Mapping[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in raw.items():
                if key == "backoff" and value is not None:
                    value = timedelta(seconds=value)
                elif isinstance(value, str) and key != "last_failure":
                    value = datetime.fromisoformat(value)
                out[key] = value
            return out

        return cls(
            groups={g: GroupMemory(**dec(m)) for g, m in data.get("groups", {}).items()},
            nodes={n: NodeMemory(**dec(m)) for n, m in data.get("nodes", {}).items()},
        )


def next_backoff(
    memory: GroupMemory,
    policy: AutoscalerPolicy,
    now: datetime,
    *,
    reason: str,
    retry_after: timedelta | None = None,
) -> GroupMemory:
    """A group's backoff after a failed start: it doubles only if the previous one had
    expired (failures reported together, or while waiting, count once), up to
    ``backoff_max``; a Retry-After extends it."""
    expired = memory.backoff_until is None or now >= memory.backoff_until
    if not expired:
        duration = memory.backoff or policy.backoff_initial
    elif memory.backoff is None:
        duration = policy.backoff_initial
    else:
        duration = min(memory.backoff * 2, policy.backoff_max)
    until = now + duration if expired else memory.backoff_until
    assert until is not None
    if retry_after is not None:
        until = max(until, now + retry_after)
    return replace(memory, backoff_until=until, backoff=duration, last_failure=reason)
