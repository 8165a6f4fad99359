"""How many nodes queued work needs: bin-packing of its tasks onto nodes of a group's size,
with HPC Pack's GrowByMin, TasksPerResourceUnit and ExtraNodesGrowRatio. Pure; used by the
autoscaler (shared.domain.autoscaler) to grow a group by the nodes it needs, not one by one.

A multi-node task needs its nodes on different nodes; an exclusive task takes whole nodes; a
job-exclusive job's tasks share nodes only with their own job's (:func:`tenant`).
One that may burst takes the nodes that can hold it now and needs nodes started only for the
rest (:class:`Reach`): the scheduler spans on-prem and managed nodes the same way. A task
that asks for memory goes only on nodes that have it (:mod:`shared.domain.memory`), and a
group grows for it only if its nodes have it or their memory is not known yet
(:func:`grown_for`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from shared.domain import autoscaler_notes
from shared.domain.cluster import Node
from shared.domain.growshrink import GroupPolicy, fits_node, memory_believed, mute, sizes_seen
from shared.domain.memory import fits, shown
from shared.domain.memoryfit import free_mb
from shared.domain.models import Task
from shared.domain.states import NodeState


def may_run_in(task: Task, group: str) -> bool:
    """The task may run on nodes of ``group`` (a task that names no group runs anywhere)."""
    return not task.node_groups or group in task.node_groups


def bins_needed(cores: Sequence[int], node_cores: int) -> int:
    """Nodes of ``node_cores`` needed for tasks of these core counts, first-fit decreasing."""
    return nodes_needed([(c, None) for c in cores], node_cores)


Part = tuple[int, object] | tuple[int, object, object] | tuple[int, object, object, int]
"""``(cores, owner)``, ``(cores, owner, tenant)`` or ``(cores, owner, tenant, memory MB)``."""


def nodes_needed(parts: Sequence[Part], node_cores: int, node_memory_mb: int | None = None) -> int:
    """Nodes of ``node_cores`` (and ``node_memory_mb``: None, unknown, not counted) needed for
    these parts, first-fit decreasing; parts with the same owner (the nodes of one
    multi-node task) go on different nodes, as the scheduler places them (owner None: no
    such constraint); a node holds parts of one tenant only (a job-exclusive job's tasks
    pack only with their own job's: :func:`tenant`; none given: all share), and parts whose
    memory its memory covers (consumable memory: :mod:`shared.domain.memoryfit`)."""
    memory = node_memory_mb
    ordered = sorted(parts, key=lambda p: (p[0], p[3] if len(p) > 3 else 0), reverse=True)
    if node_cores <= MAX_LEVELS and all(_plain(p, memory) for p in ordered):
        return _by_levels([p[0] for p in ordered], node_cores)
    bins: list[int] = []
    mems: list[int] = []
    owners: list[set[object]] = []
    tenants: list[object] = []
    for part in ordered:
        need, owner, tenant = part[0], part[1], part[2] if len(part) > 2 else None
        mb = part[3] if len(part) > 3 and memory is not None else 0
        for i, free in enumerate(bins):
            if (
                free >= need
                and mems[i] >= mb
                and (owner is None or owner not in owners[i])
                and tenants[i] == tenant
            ):
                bins[i] -= need
                mems[i] -= mb
                if owner is not None:
                    owners[i].add(owner)
                break
        else:
            bins.append(node_cores - need)
            mems.append((memory or 0) - mb)
            owners.append({owner} if owner is not None else set())
            tenants.append(tenant)
    return len(bins)


MAX_LEVELS = 4096
"""Node sizes up to this many cores are packed by free-core levels (:func:`_by_levels`)."""


def _plain(part: Part, memory: int | None) -> bool:
    """A part with no constraint but its cores: no owner, no tenant, no memory counted."""
    return (
        part[1] is None
        and (len(part) < 3 or part[2] is None)
        and (memory is None or len(part) < 4 or not part[3])
    )


def _by_levels(needs: Sequence[int], node_cores: int) -> int:
    """:func:`nodes_needed` for parts with no constraint but cores, ``needs`` in decreasing
    order: the same first fit (the lowest-numbered node with room), found from a heap of
    node numbers per count of free cores rather than by a scan of every node, which made an
    autoscaler run quadratic in the work left over (about 400 ms for 6,000 tasks)."""
    levels: list[list[int]] = [[] for _ in range(node_cores + 1)]
    free: list[int] = []
    for need in needs:
        if need <= 0 and free:  # takes nothing: the first node holds it
            continue
        best, level = -1, -1
        for have in range(max(need, 1), node_cores + 1):
            heap = levels[have]
            if heap and (best < 0 or heap[0] < best):
                best, level = heap[0], have
        if best < 0:  # a new node (one too small for the part never takes another)
            best, left = len(free), node_cores - need
            free.append(left)
        else:
            heapq.heappop(levels[level])
            left = free[best] = free[best] - need
        if left > 0:
            heapq.heappush(levels[left], best)
    return len(free)


def tenant(task: Task) -> int | None:
    """Whose nodes a task's part packs onto: its job's, if job-exclusive; None: shared."""
    return task.job_id if task.job_exclusive else None


def nodes_for(tasks: Sequence[Task], gp: GroupPolicy) -> int:
    """Nodes of the group's size the tasks need: :func:`packed_nodes`, then
    ExtraNodesGrowRatio's share (:func:`extra_nodes`)."""
    need = packed_nodes(tasks, gp)
    return need + extra_nodes(need, gp)


def extra_nodes(need: int, gp: GroupPolicy) -> int:
    """ExtraNodesGrowRatio: the percent of ``need`` added to a growth, rounded up."""
    return math.ceil(need * gp.extra_nodes_grow_ratio / 100)


def packed_nodes(tasks: Sequence[Task], gp: GroupPolicy) -> int:
    """Nodes of the group's size the tasks fill: GrowByMin (one widest task per job),
    TasksPerResourceUnit (tasks per unit of demand), then bin-packing."""
    if not tasks:
        return 0
    if gp.grow_by_min:
        widest: dict[int, Task] = {}
        for t in tasks:
            if t.job_id not in widest or t.cores > widest[t.job_id].cores:
                widest[t.job_id] = t
        tasks = list(widest.values())
    per_size: dict[tuple[int, int | None, int], int] = {}
    parts: list[Part] = []
    for t in tasks:
        mb = t.min_memory_mb or 0  # held on each of its nodes (memoryfit)
        if t.exclusive:  # whole nodes
            parts += [(gp.node_cores, None, tenant(t), mb)] * t.nodes
        elif t.nodes > 1:  # its nodes on different nodes
            parts += [(t.cores, (t.job_id, t.id), tenant(t), mb)] * t.nodes
        else:
            key = (t.cores, tenant(t), mb)
            per_size[key] = per_size.get(key, 0) + 1
    parts += [
        (cores, None, who, mb)
        for (cores, who, mb), n in per_size.items()
        for _ in range(math.ceil(n / gp.tasks_per_resource_unit))
    ]
    return nodes_needed(parts, gp.node_cores, gp.node_memory_mb)


@dataclass(frozen=True)
class Reach:
    """The nodes a wide task could ever hold: eligible on-prem Online nodes plus, per managed
    group it may grow, the most nodes the group can have up. Only a task that may burst and
    fits that takes a part of the nodes up now (:func:`place_queue`): one that never can would
    keep them up, billing, for nothing."""

    onprem: Sequence[tuple[Collection[str], int, int | None]]
    """(groups, cores, memory MB or None: unknown) of each Online node no autoscaler starts."""
    managed: Mapping[str, tuple[GroupPolicy, int]]
    """Each managed group that may grow: (its policy, most nodes it can have up)."""

    def holds(self, task: Task) -> bool:
        total, burst = 0, False
        for group, (gp, most) in self.managed.items():
            if may_run_in(task, group) and fits_node(task, gp):
                total, burst = total + most, True
        if not burst:
            return False
        allowed = set(task.node_groups)
        need = task.min_memory_mb
        for groups, cores, memory_mb in self.onprem:
            if (
                cores >= task.cores
                and (not allowed or not allowed.isdisjoint(groups))
                and fits(need, memory_mb)
            ):
                total += 1
        return total >= task.nodes


def reach(
    nodes: Iterable[Node], group_of: Mapping[str, str | None], groups: Mapping[str, GroupPolicy]
) -> Reach:
    """The :class:`Reach` of a cluster: ``group_of`` maps each node to its managed group (None:
    on-prem, or a group the autoscaler leaves alone); ``groups``: the groups that may grow.
    A node an admin holds (drained, taken offline) is never started, so it does not count."""
    onprem: list[tuple[Collection[str], int, int | None]] = []
    count: dict[str, int] = {}
    for n in nodes:
        group = group_of.get(n.name)
        if group is None:
            if n.state is NodeState.ONLINE:
                onprem.append((n.groups, n.cores, n.memory_mb))
        elif group in groups and not n.held:
            count[group] = count.get(group, 0) + 1
    most = {g: (gp, min(gp.max_nodes, count.get(g, 0))) for g, gp in groups.items()}
    return Reach(onprem, most)


class Growth(NamedTuple):
    """What :func:`grown_for` says of a group's overflow."""

    tasks: list[Task]
    """The tasks it grows for (a probe counted on one node: see :func:`grown_for`)."""
    why: str | None
    """Why it starts none for the tasks asking for memory it leaves out (None: none left)."""
    able: int
    """How many of the tasks one node of it could run: what GrowThreshold counts (a probe
    grows for one of them, and must not fall below the threshold for it)."""


def grown_for(
    tasks: Sequence[Task], group: str, gp: GroupPolicy, members: Sequence[Node] = ()
) -> Growth:
    """Of overflowing ``tasks`` that may run in ``group``: those it grows for (a node of it can
    run them: :func:`fits_node`), and why it starts none for those asking for memory it
    starts no node for. Those are: tasks asking more than its nodes are known to have (the
    nodes started would never run them); and, where its node memory is unknown, all but one,
    the probe, counted on one node (a wide one too): one node started tells the memory when
    its agent registers, cheaper than many that may all be too small. None at all while one
    of its ``members`` is Starting (it will tell) or is mute (:func:`mute`: its agent did not
    tell, another would not either, and a VM started each grow check for nothing is the loop
    to avoid)."""
    grown: list[Task] = []
    big: list[Task] = []
    silent: list[str] = []  # members whose agents did not tell their memory
    probing: bool | None = None  # a node is (or will be) starting that tells the memory
    able = 0
    for t in tasks:
        if not fits_node(t, gp):
            if t.cores <= gp.node_cores:  # memory is what it lacks
                big.append(t)
            continue
        able += 1
        if t.min_memory_mb is not None and gp.node_memory_mb is None:
            if probing is None:
                silent = sorted(n.name for n in members if mute(n))
                probing = bool(silent) or any(n.state is NodeState.STARTING for n in members)
            if probing:
                if silent:  # none will tell: said; else the Starting one will
                    big.append(t)
                continue
            probing = True
            t = t if t.nodes == 1 else t.model_copy(update={"nodes": 1})
        grown.append(t)
    return Growth(grown, _none_started(group, big, gp, silent) if big else None, able)


def _none_started(group: str, tasks: Sequence[Task], gp: GroupPolicy, silent: list[str]) -> str:
    """Why ``group`` starts no node for ``tasks``, which ask for memory (:func:`grown_for`)."""
    most = max(t.min_memory_mb or 0 for t in tasks)
    which = (
        f"{autoscaler_notes.queued(tasks)} of {autoscaler_notes.listed_jobs(tasks)} "
        f"ask{'s' if len(tasks) == 1 else ''} up to "
        f"{shown(most, up=True)} memory per node"
    )
    if gp.node_memory_mb is not None:
        has = f"its nodes have {shown(gp.node_memory_mb)}"
        change = autoscaler_notes.bigger_vms(group)
    else:
        has = f"its nodes' memory is unknown ({silent[0]}'s agent did not report it)"
        change = "upgrade its agent, or run it with --memory-mb SIZE"
    return f"{which}; {has}: none started for them ({change})"


def memory_of(
    nodes: Iterable[Node],
    group_of: Mapping[str, str | None],
    groups: Mapping[str, GroupPolicy],
    held_mb: Mapping[str, int] | None = None,
) -> dict[str, int | None]:
    """Each node's free memory as :func:`place_queue` counts it: an Online node's own less
    what its active tasks hold (``held_mb``: consumable, :mod:`shared.domain.memoryfit`; None:
    unknown, it takes no task that asks for memory, as in the scheduler); a Starting node of
    a managed group (``group_of``, ``groups``) what it is believed to have
    (:func:`memory_believed`; None if mute); left out if unknown: taken as enough (as the
    group is, when it grows)."""
    out: dict[str, int | None] = {}
    nodes = list(nodes)
    seen = sizes_seen(nodes)
    for n in nodes:
        if n.state is NodeState.ONLINE:
            out[n.name] = free_mb(n.memory_mb, (held_mb or {}).get(n.name, 0))
        elif n.state is NodeState.STARTING and group_of.get(n.name) in groups:
            have = memory_believed(n, seen)
            if have is not None or mute(n):
                out[n.name] = have
    return out
