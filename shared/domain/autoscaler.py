"""The autoscaler policy: cluster state and ``now`` in, start/stop orders with reasons out.

Pure: no provider, no store, no clock. Like HPC Pack's AutoGrowShrink it only
starts and stops nodes that were added (an Offline node of a managed group is
a deallocated VM); creating and deleting VMs is an admin act. Everything it
must remember between timer runs (``idle_since``, backoffs, the last scale-up)
is in :class:`AutoscalerState`, which the caller loads and saves with the run
(a Meta document): a timer function has no memory of its own.

Rules, each pinned by a table in tests/test_autoscaler.py:

- **Grow for runnable work only.** Queued tasks are first placed (in queue
  order, first fit) on the free cores of Online nodes, unmanaged (on-prem)
  groups first, then on Starting nodes of managed groups, which count as
  coming capacity. What is left (the overflow) is bin-packed, first-fit
  decreasing, onto template nodes of each managed group the task may run on;
  the group grows by the number of bins, never past ``max_nodes``, the Offline
  nodes it has, or ``max_starts_per_run``. A job allowed on
  [OnPremNodes, AzureNodes] therefore fills on-prem first and bursts to Azure
  only for the overflow.
- **Stop only idle nodes.** A managed Online node with no active task is stopped
  once idle for ``idle`` (ShrinkIdleTimes x ShrinkInterval) since the
  autoscaler first saw it idle, if no queued task could run on it, the group
  stays at ``min_nodes``, and no scale-up happened within
  ``scale_down_delay``. A node with running tasks is never stopped: a stop is a
  drain first (:func:`request_stop`), and a Draining node stops once empty.
- **Failed starts back off per group.** A start failure (quota, allocation,
  throttling, eviction, a node that never joined within ``deployment_timeout``)
  holds the group's growth for a backoff that doubles only if the previous one
  had expired, capped at ``backoff_max``; a Retry-After extends it. A node that
  joins resets it.
- **Every order says why** (``Order.reason``: "why did this node start").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.domain.models import Node, Task
from shared.domain.states import NodeState
from shared.ports.compute import OFF_STATES, PowerState

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


# ------------------------------------------------------------------ in / out


@dataclass(frozen=True)
class StartFailure:
    """A start the provider reported failed (an error value from start or its poll)."""

    group: str
    node: str
    reason: str
    retry_after: timedelta | None = None


@dataclass(frozen=True)
class ClusterView:
    """What the caller read for this run."""

    nodes: Sequence[Node]
    queued: Sequence[Task]
    """Queued tasks in scheduling order (the window the scheduler reads)."""
    used_cores: Mapping[str, int] = field(default_factory=dict)
    """Cores held by active (Dispatching, Running) tasks per node."""
    power: Mapping[str, PowerState] = field(default_factory=dict)
    """VM power states from the provider; a node missing here is not judged by it."""
    failures: Sequence[StartFailure] = ()


OrderAction = Literal["start", "stop", "drain", "offline"]


@dataclass(frozen=True)
class Order:
    """``start``/``stop``: call the provider and move the node Starting/Stopping; ``drain``:
    move it Draining (no new tasks); ``offline``: its VM is off already (evicted), mark it."""

    action: OrderAction
    node: str
    group: str
    reason: str


@dataclass(frozen=True)
class Decision:
    orders: list[Order]
    state: AutoscalerState
    notes: list[str]
    """Why nothing happened where something might have (a group in backoff, at max...)."""


# ------------------------------------------------------------------- helpers


def _managed_group(node: Node, policy: AutoscalerPolicy) -> str | None:
    for g in node.groups:
        if g in policy.groups and g not in policy.exclude_node_groups:
            return g
    return None


def _eligible(task: Task, group: str) -> bool:
    return not task.node_groups or group in task.node_groups


def request_stop(node: Node, used_cores: int, reason: str) -> Order:
    """A stop asked for (by an admin or the policy): drain first while tasks run."""
    group = node.groups[0] if node.groups else ""
    if used_cores > 0:
        return Order("drain", node.name, group, f"{reason}; draining: tasks still run")
    return Order("stop", node.name, group, reason)


def bins_needed(cores: Sequence[int], node_cores: int) -> int:
    """Nodes of ``node_cores`` needed for tasks of these core counts, first-fit decreasing."""
    bins: list[int] = []
    for need in sorted(cores, reverse=True):
        for i, free in enumerate(bins):
            if free >= need:
                bins[i] -= need
                break
        else:
            bins.append(node_cores - need)
    return len(bins)


def _backoff(
    memory: GroupMemory, failure: StartFailure, policy: AutoscalerPolicy, now: datetime
) -> GroupMemory:
    expired = memory.backoff_until is None or now >= memory.backoff_until
    if not expired:
        duration = memory.backoff or policy.backoff_initial
    elif memory.backoff is None:
        duration = policy.backoff_initial
    else:
        duration = min(memory.backoff * 2, policy.backoff_max)
    until = now + duration if expired else memory.backoff_until
    assert until is not None
    if failure.retry_after is not None:
        until = max(until, now + failure.retry_after)
    return replace(memory, backoff_until=until, backoff=duration, last_failure=failure.reason)


# ----------------------------------------------------------------- the policy


def autoscale(
    view: ClusterView, policy: AutoscalerPolicy, state: AutoscalerState, now: datetime
) -> Decision:
    """One run: repair what the VMs say, time out nodes that never joined, then grow and shrink."""
    groups = dict(state.groups)
    names = {n.name for n in view.nodes}
    nodes_mem = {name: m for name, m in state.nodes.items() if name in names}
    orders: list[Order] = []
    notes: list[str] = []
    busy: set[str] = set()  # nodes already ordered this run

    def fail(group: str, failure: StartFailure) -> None:
        groups[group] = _backoff(groups.get(group, GroupMemory()), failure, policy, now)

    for failure in view.failures:
        fail(failure.group, failure)

    # --- facts from the VMs and the deployment timeout (every run)
    for node in view.nodes:
        group = _managed_group(node, policy)
        if group is None:
            continue
        nmem = nodes_mem.get(node.name, NodeMemory())
        power = view.power.get(node.name)
        if node.state is NodeState.ONLINE and nmem.start_ordered_at is not None:
            nmem = replace(nmem, start_ordered_at=None)  # it joined: its start worked
            groups[group] = replace(groups.get(group, GroupMemory()), backoff=None)
        if node.state is not NodeState.OFFLINE and power in OFF_STATES:
            why = f"its VM is {power} (evicted or stopped outside the cluster)"
            orders.append(Order("offline", node.name, group, why))
            busy.add(node.name)
            fail(group, StartFailure(group, node.name, f"{node.name}: {why}"))
            nmem = NodeMemory()
        elif node.state is NodeState.STARTING:
            since = nmem.start_ordered_at or node.state_time
            if now - since >= policy.deployment_timeout:
                why = (
                    f"its agent did not join within the deployment timeout "
                    f"({policy.deployment_timeout.total_seconds():g} s)"
                )
                orders.append(Order("stop", node.name, group, why))
                busy.add(node.name)
                fail(group, StartFailure(group, node.name, f"{node.name}: {why}"))
                nmem = NodeMemory()
        elif node.state is NodeState.DRAINING and view.used_cores.get(node.name, 0) == 0:
            orders.append(Order("stop", node.name, group, "drained: its last task ended"))
            busy.add(node.name)
        elif (
            node.state is NodeState.OFFLINE
            and power in (PowerState.RUNNING, PowerState.STARTING)
            and nmem.start_ordered_at is None
        ):
            orders.append(Order("stop", node.name, group, "its VM runs but its node is Offline"))
            busy.add(node.name)
        nodes_mem[node.name] = nmem

    # --- simulate the queue on what runs or is coming, on-prem first
    free: dict[str, int] = {}
    order_key: dict[str, tuple[int, str]] = {}
    for node in view.nodes:
        if node.name in busy:
            continue
        group = _managed_group(node, policy)
        if node.state is NodeState.ONLINE:
            free[node.name] = node.cores - view.used_cores.get(node.name, 0)
            order_key[node.name] = (0 if group is None else 1, node.name)
        elif node.state is NodeState.STARTING and group is not None:
            free[node.name] = node.cores
            order_key[node.name] = (2, node.name)
    by_name = {n.name: n for n in view.nodes}
    placing = sorted(free, key=lambda n: order_key[n])
    overflow: list[Task] = []
    wanted_nodes: set[str] = set()  # nodes the queue will use: not idle, whatever they run now
    for task in view.queued:
        for name in placing:
            node = by_name[name]
            if free[name] >= task.cores and (
                not task.node_groups or set(task.node_groups) & set(node.groups)
            ):
                free[name] -= task.cores
                wanted_nodes.add(name)
                break
        else:
            overflow.append(task)

    # --- grow
    started_by_group: dict[str, int] = {}
    starts_left = policy.max_starts_per_run
    claimed: set[tuple[int, int]] = set()
    for group in sorted(policy.groups):
        gp = policy.groups[group]
        gmem = groups.get(group, GroupMemory())
        if group in policy.exclude_node_groups:
            continue
        members = [n for n in view.nodes if group in n.groups]
        offline = sorted(
            (n for n in members if n.state is NodeState.OFFLINE and n.name not in busy),
            key=lambda n: n.name,
        )
        active = [n for n in members if n.state is not NodeState.OFFLINE and n.name not in busy]
        # min_nodes is kept whatever the interval; it is not growth for work.
        want_min = max(0, gp.min_nodes - len(active))
        if gmem.last_grow_check is not None and now - gmem.last_grow_check < gp.grow_interval:
            tasks: list[Task] = []
        else:
            gmem = replace(gmem, last_grow_check=now)
            tasks = [
                t
                for t in overflow
                if _eligible(t, group)
                and t.cores <= gp.node_cores
                and (t.job_id, t.id) not in claimed
            ]
        need = 0
        if tasks and len(tasks) < gp.grow_threshold:
            notes.append(
                f"{group}: {len(tasks)} queued tasks, below GrowThreshold {gp.grow_threshold}"
            )
            tasks = []
        if tasks:
            if gp.grow_by_min:
                widest: dict[int, Task] = {}
                for t in tasks:
                    if t.job_id not in widest or t.cores > widest[t.job_id].cores:
                        widest[t.job_id] = t
                demand_tasks = list(widest.values())
            else:
                demand_tasks = tasks
            per_size: dict[int, int] = {}
            for t in demand_tasks:
                per_size[t.cores] = per_size.get(t.cores, 0) + 1
            demand = [
                c
                for c, n in per_size.items()
                for _ in range(math.ceil(n / gp.tasks_per_resource_unit))
            ]
            need = bins_needed(demand, gp.node_cores)
            need += math.ceil(need * gp.extra_nodes_grow_ratio / 100)
        wanted = max(need, want_min)
        if wanted == 0:
            groups[group] = gmem
            continue
        if gmem.backoff_until is not None and now < gmem.backoff_until:
            notes.append(
                f"{group}: wants {wanted} nodes but backs off until "
                f"{gmem.backoff_until:%H:%M:%S} after: {gmem.last_failure}"
            )
            groups[group] = gmem
            continue
        room = max(0, gp.max_nodes - len(active))
        count = min(wanted, room, len(offline), starts_left)
        if count < wanted:
            notes.append(
                f"{group}: wants {wanted} nodes, starts {count} (max_nodes {gp.max_nodes}, "
                f"{len(offline)} Offline, {starts_left} starts left this run)"
            )
        for node in offline[:count]:
            if need:
                why = (
                    f"{len(tasks)} queued tasks of jobs "
                    f"{', '.join(str(j) for j in sorted({t.job_id for t in tasks})[:5])} "
                    f"overflow the free cores of running nodes; {group} needs {need} node(s) "
                    f"of {gp.node_cores} cores"
                )
            else:
                why = f"{group} is below its min_nodes {gp.min_nodes}"
            orders.append(Order("start", node.name, group, why))
            nodes_mem[node.name] = NodeMemory(start_ordered_at=now)
        if count:
            claimed.update((t.job_id, t.id) for t in tasks)
            starts_left -= count
            started_by_group[group] = count
            gmem = replace(gmem, last_scale_up=now)
        groups[group] = gmem

    # --- shrink
    stops_left = policy.max_stops_per_run
    for group in sorted(policy.groups):
        gp = policy.groups[group]
        gmem = groups.get(group, GroupMemory())
        if group in policy.exclude_node_groups:
            continue
        members = [n for n in view.nodes if _managed_group(n, policy) == group]
        idle_nodes: list[Node] = []
        for node in members:
            nm = nodes_mem.get(node.name, NodeMemory())
            if node.state is NodeState.ONLINE and view.used_cores.get(node.name, 0) == 0:
                if nm.idle_since is None:
                    nm = replace(nm, idle_since=now)
                idle_nodes.append(node)
            elif nm.idle_since is not None:
                nm = replace(nm, idle_since=None)
            nodes_mem[node.name] = nm
        if gmem.last_shrink_check is not None and now - gmem.last_shrink_check < gp.shrink_interval:
            continue
        groups[group] = gmem = replace(gmem, last_shrink_check=now)
        if gmem.last_scale_up is not None and now - gmem.last_scale_up < policy.scale_down_delay:
            if idle_nodes:
                notes.append(
                    f"{group}: no scale-down within {policy.scale_down_delay} of a scale-up"
                )
            continue
        up = sum(1 for n in members if n.state is not NodeState.OFFLINE and n.name not in busy)
        for node in sorted(idle_nodes, key=lambda n: n.name):
            idle_since = nodes_mem[node.name].idle_since
            if idle_since is None or node.name in busy or now - idle_since < gp.idle:
                continue
            if node.name in wanted_nodes:
                notes.append(f"{node.name}: idle but queued tasks will run on it")
                continue
            if up <= gp.min_nodes or stops_left <= 0:
                break
            idle_for = (now - idle_since).total_seconds()
            orders.append(
                Order(
                    "stop",
                    node.name,
                    group,
                    f"idle for {idle_for:g} s (ShrinkIdleTimes {gp.shrink_idle_times} x "
                    f"ShrinkInterval {gp.shrink_interval.total_seconds():g} s) and no queued "
                    "task can run on it",
                )
            )
            nodes_mem[node.name] = NodeMemory()
            up -= 1
            stops_left -= 1

    return Decision(orders, AutoscalerState(groups=groups, nodes=nodes_mem), notes)
