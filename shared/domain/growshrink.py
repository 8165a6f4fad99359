"""HPC Pack's AutoGrowShrink parameters, and what the autoscaler remembers between runs.

Plain data for :mod:`shared.domain.autoscaler`. The memory (``idle_since``,
backoffs, the last scale-up) is a value the caller loads and stores with
each run (:meth:`AutoscalerState.to_dict` fits a Meta document): a timer
function keeps nothing in memory, and counting idle checks would drift with
timer runs, so idleness is a duration since a stored time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.domain.memory import may_fit
from shared.domain.states import NodeState

if TYPE_CHECKING:
    from shared.domain.cluster import Node
    from shared.domain.models import Task

# ------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GroupPolicy:
    """HPC Pack's AutoGrowShrink parameters for one managed group, plus its bounds."""

    node_cores: int
    """Cores of one node of the group (the template the overflow is packed onto)."""
    node_memory_mb: int | None = None
    """Memory (MB) of one node of the group, by :func:`group_memory_mb` (None: unknown, taken
    as enough: a node started tells its memory when its agent registers)."""
    min_nodes: int = 0
    max_nodes: int = 100
    grow_interval: timedelta = timedelta(minutes=1)
    """GrowInterval: how often growth is considered (after a check that found no queued work
    for the group, at the next run: :attr:`GroupMemory.quiet`)."""
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


def fits_node(task: Task, gp: GroupPolicy) -> bool:
    """One node of the group can run ``task``: enough cores, and enough memory if it asks
    for some (a group of unknown node memory is taken to have enough: see
    :attr:`GroupPolicy.node_memory_mb`). Every "may the autoscaler grow this group for this
    task" asks this."""
    return task.cores <= gp.node_cores and may_fit(task.min_memory_mb, gp.node_memory_mb)


def memory_believed(node: Node, seen: Mapping[str, int]) -> int | None:
    """The memory the autoscaler takes ``node`` (of a managed group) to have when it starts it
    for a task that asks for memory. A node that registered: its own (its agent's word, or
    ``hpc node add``'s that its agent did not contradict); None there means its agent is
    mute: it can run no such task. A node never registered: what ``hpc node add`` gave it
    (the group's ``node_memory_mb`` then: the setting never speaks for nodes added before
    it, which a probe saw started one by one for nothing), but what a registered node of the
    same VM size (``seen``: :func:`sizes_seen`) reported when that is less (a VM's OS
    reports less than its size's nominal memory). None: unknown."""
    if node.incarnation > 0:
        return node.memory_mb
    told = seen.get(node.size) if node.size else None
    belief = node.memory_mb
    return told if told is not None and (belief is None or told < belief) else belief


def mute(node: Node) -> bool:
    """Its agent registered and said no memory (older than memory reporting, or a system
    that does not say) and nobody gave it one: it runs no task that asks for memory."""
    return node.incarnation > 0 and node.memory_mb is None


def sizes_seen(nodes: Iterable[Node]) -> dict[str, int]:
    """The least memory registered nodes of each VM size reported."""
    seen: dict[str, int] = {}
    for n in nodes:
        if n.incarnation > 0 and n.size and n.memory_mb is not None:
            seen[n.size] = min(n.memory_mb, seen.get(n.size, n.memory_mb))
    return seen


def group_memory_mb(setting: int | None, group: str, nodes: Iterable[Node]) -> int | None:
    """The most memory a node of a managed group has, as the autoscaler decides with it
    (its grow starts the nodes that have what the tasks ask first: :func:`start_order`):
    the most any of its nodes is believed to have (:func:`memory_believed`). None: unknown
    (no node of it says; a node started tells), or all its nodes are mute.
    A group with no node: the setting (what ``hpc node add`` makes)."""
    members = [n for n in nodes if group in n.groups]
    if not members:
        return setting
    seen = sizes_seen(members)
    believed = [memory_believed(n, seen) for n in members]
    return max((m for m in believed if m is not None), default=None)


def start_order(
    offline: Sequence[Node], tasks: Sequence[Task], members: Sequence[Node]
) -> list[Node]:
    """The Offline nodes a grow for ``tasks`` starts, first first: those believed to have the
    most memory any of them asks (:func:`memory_believed`; ``members``: the group's nodes),
    then those of unknown memory, then the others; none believed to have less than every one
    of them asks, nor a mute one (:func:`mute`), when every one of them asks for memory (it
    would run none of them). Within each, the longest Offline first, then by name: the VM an
    admin has just stopped is the last the minNodes floor starts again (a probe: it started
    the very VM stopped, where another was Offline)."""
    asks = [t.min_memory_mb for t in tasks]
    most = max((a for a in asks if a is not None), default=None)
    if most is None:
        return sorted(offline, key=lambda n: (n.state_time, n.name))
    least = None if None in asks else min(a for a in asks if a is not None)
    seen = sizes_seen(members)
    have = {n.name: memory_believed(n, seen) for n in offline}

    def rank(n: Node) -> tuple[int, datetime, str]:
        m = have[n.name]
        return (1 if m is None else 0 if m >= most else 2) + 2 * mute(n), n.state_time, n.name

    if least is not None:
        offline = [n for n in offline if not mute(n) and may_fit(least, have[n.name])]
    return sorted(offline, key=rank)


def healthy_first(offline: list[Node], memory: Mapping[str, NodeMemory]) -> list[Node]:
    """``offline`` in its order, but nodes that were evicted after, and those whose last
    start never joined last, each the longest ago first, until they join (Slurm marks a node
    past ResumeTimeout DOWN and powers up others: a probe's broken VM took every retry; and
    a VM that never joined was started before an evicted one that had run, and stalled a
    job for its deployment timeout)."""
    mem = {n.name: memory.get(n.name, NodeMemory()) for n in offline}
    healthy = [n for n in offline if mem[n.name].failed_at is None]
    return healthy + sorted(
        (n for n in offline if mem[n.name].failed_at is not None),
        key=lambda n: (not mem[n.name].evicted, mem[n.name].failed_at or n.state_time),
    )


def untried_others(members: Sequence[Node], name: str, memory: Mapping[str, NodeMemory]) -> bool:
    """Whether a group (``members``) has Offline VMs besides ``name`` that no start failed on
    (not held): a VM that never joined then backs off only itself (started last, as Slurm
    marks a node past ResumeTimeout DOWN and powers up others; an admin probe saw one such
    VM hold its group's growth 2 min while 3 healthy VMs sat Offline). With none left, the
    group backs off (a bad image: every VM fails)."""
    return any(
        n.name != name
        and n.state is NodeState.OFFLINE
        and n.held is None
        and (memory.get(n.name) or NodeMemory()).failed_at is None
        for n in members
    )


def not_joined(
    memory: GroupMemory, policy: AutoscalerPolicy, now: datetime, untried: bool, *, why: str
) -> GroupMemory:
    """A group's memory after one of its VMs never joined: with other VMs untried
    (:func:`untried_others`) no back-off, and its grow check due now whatever GrowInterval,
    so that the work's replacement starts in this run (a third probe: it waited for the
    next check); with none, the back-off of a failed start (:func:`next_backoff`)."""
    if untried:
        return replace(memory, last_grow_check=None)
    return next_backoff(memory, policy, now, reason=why)


def start_of(node: Node, memory: NodeMemory) -> datetime:
    """When the node's current start began, for its deployment timeout: the autoscaler's
    order, or the node's move to Starting if later (an admin's start after an older order: a
    probe's `hpc node start` was stopped within seconds, timed from a start refused minutes
    before)."""
    ordered = memory.start_ordered_at
    return node.state_time if ordered is None else max(ordered, node.state_time)


@dataclass(frozen=True)
class AutoscalerPolicy:
    groups: Mapping[str, GroupPolicy]
    """The managed groups (their nodes are VMs the autoscaler may start and stop)."""
    exclude_node_groups: frozenset[str] = frozenset()
    """ExcludeNodeGroups: managed groups left alone (neither grown nor shrunk)."""
    deployment_timeout: timedelta = timedelta(minutes=20)
    """A started node whose agent has not joined by then is stopped and counted as a failure;
    a node Unreachable that long has its VM deallocated (:mod:`shared.domain.unreachable`)."""
    scale_down_delay: timedelta = timedelta(minutes=10)
    """No scale-down of a group this soon after it grew."""
    max_starts_per_run: int = 10
    max_stops_per_run: int = 10
    backoff_initial: timedelta = timedelta(minutes=1)
    backoff_max: timedelta = timedelta(minutes=30)
    remember_covered: bool = True
    """Keep which queued tasks each run found nodes for (:attr:`GroupMemory.covered`): only
    the pending reasons read it, so the replay (:mod:`shared.sim.elastic`), which has none,
    does not work it out (about 2 ms a run with 2,000 queued jobs)."""


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
    quiet: bool = False
    """The last grow check found no queued work the group's free nodes could not take: the
    next run checks again at once, whatever GrowInterval (the first work after a quiet spell
    does not wait up to an interval for its first nodes; growth goes on at most once an
    interval from then)."""
    covered: str | None = None
    """The queued tasks (a :mod:`shared.domain.notescope` scope) that may run in the group and
    that the last run found nodes for (up, starting, or started by it): their pending reasons
    name no next grow check (:func:`shared.domain.growcheck.is_covered`). None: unknown."""


@dataclass(frozen=True)
class NodeMemory:
    idle_since: datetime | None = None
    start_ordered_at: datetime | None = None
    """When the autoscaler ordered this node started (the deployment timeout runs from it)."""
    failed_at: datetime | None = None
    """When its last start failed the deployment timeout (its agent never joined), until it
    joins: a grow starts such nodes last (a probe: one broken VM was started again at every
    retry while healthy ones stayed off, and the job never ran)."""
    evicted: bool = False
    """``failed_at`` was its VM found off under its agent (evicted, stopped outside the
    cluster), not a start that never joined: such a node had joined, so it is started before
    those that never did (:func:`healthy_first`)."""
    on_offline_since: datetime | None = None
    """When its VM was first seen running while the node was Offline (shared.domain.strayvms)."""


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
                elif isinstance(value, str) and key not in _TEXTS:
                    value = datetime.fromisoformat(value)
                out[key] = value
            return out

        return cls(
            groups={g: GroupMemory(**dec(m)) for g, m in data.get("groups", {}).items()},
            nodes={n: NodeMemory(**dec(m)) for n, m in data.get("nodes", {}).items()},
        )


_TEXTS = frozenset({"last_failure", "covered"})
"""Fields of the stored memory that are text, not times."""


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


def managed_group(node: Node, policy: AutoscalerPolicy) -> str | None:
    """The group of its provider's VMs the node is in, autoscaled or not: a group whose
    autoscale is off (``exclude_node_groups``) is neither grown nor shrunk, but its VMs still
    get the repairs (a node drained by a stop stopped once empty, a finished stop marked
    Offline, the deployment timeout, evictions): a probe's stopped VM stayed Drained and billing, and a
    VM that never joined stayed Starting, in a group an admin ran by hand."""
    for g in node.groups:
        if g in policy.groups:
            return g
    return None


def asked_starts(
    nodes: Sequence[Node], managed: Mapping[str, str | None], busy: Collection[str]
) -> list[tuple[Node, str, str]]:
    """The Offline VMs an admin asked to start while they were stopping
    (``Node.start_requested``), with their group and the start's reason: their stop is done,
    so they start now, whatever the queue (an admin's start), but never a held one."""
    return [
        (node, group, f"{node.start_requested} (asked while it stopped; its stop is done)")
        for node in nodes
        if node.start_requested
        and (group := managed.get(node.name))
        and node.state is NodeState.OFFLINE
        and node.held is None
        and node.name not in busy
    ]
