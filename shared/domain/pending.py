"""Why a queued task waits, in words a user can act on. Pure: the cluster's state in, a reason out.

The reasons say what would have to change: which group lacks Online nodes, which nodes run
agents too old to read the task's assignment, how many cores the task wants against what
the group has, or that it is next in line. They are computed
when asked (the API's ``pendingReason``), from the same records the scheduler reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from shared.domain.cluster import Node
from shared.domain.models import Job, Task
from shared.domain.protocol import describe, task_protocol
from shared.domain.states import NODE_SCHEDULABLE, NodeState, TaskState

SHOW_NODES = 5
"""Nodes named in a reason before "and N more"."""


def where(groups: Sequence[str]) -> str:
    return ", ".join(groups) if groups else "the cluster"


def pending_reason(
    task: Task, nodes: Sequence[Node], used: Mapping[str, int], capped: Collection[str] = ()
) -> str | None:
    """Why ``task`` is not running now, or None if it is not queued. Nodes of its groups an
    admin holds (drained or taken offline: ``Node.held``) are named, with how to end it.
    ``capped``: managed groups whose maxNodes is 0, so the autoscaler starts none of their
    nodes (a task only they may run waits for an admin, which the reason says)."""
    if task.state is not TaskState.QUEUED:
        return None
    mine = [n for n in nodes if not task.node_groups or set(task.node_groups) & set(n.groups)]
    reason = _reason(task, mine, used)
    if reason.startswith("no Online node") and capped_only(task.node_groups, capped):
        reason += "; " + max_zero(task.node_groups)
    held = sorted(n.name for n in mine if n.held is not None)
    if not held or reason.startswith("next in line"):
        return reason
    shown = ", ".join(held[:SHOW_NODES]) + (
        f" and {len(held) - SHOW_NODES} more" if len(held) > SHOW_NODES else ""
    )
    return f"{reason}; held by an admin: {shown} (hpc node online {held[0]} brings it back)"


def capped_only(groups: Sequence[str], capped: Collection[str]) -> bool:
    """Every group named is a managed group of maxNodes 0 (none named: any node may do)."""
    return bool(groups) and all(g in capped for g in groups)


def max_zero(groups: Sequence[str]) -> str:
    """What a maxNodes of 0 means for a job of ``groups``, and how to raise it."""
    first, its = (groups[0] if groups else "NAME"), ("their" if len(groups) > 1 else "its")
    return (
        f"the maxNodes of {where(groups)} is 0, so the autoscaler starts none of {its} nodes: "
        f"raise it (hpc nodegroup set {first} --max N) or start one (hpc node start NAME)"
    )


def _reason(task: Task, mine: Sequence[Node], used: Mapping[str, int]) -> str:
    place = where(task.node_groups)
    online = [n for n in mine if n.state in NODE_SCHEDULABLE and n.incarnation > 0]
    starting = sorted(n.name for n in mine if n.state is NodeState.STARTING)
    if not online and starting:
        return f"waiting for {', '.join(starting)} to start in {place}"
    if not online:
        states = Counter(n.state.value for n in mine)
        seen = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        return f"no Online node in {place}" + (f" ({seen})" if seen else "")
    need = task_protocol(task)
    if need > 1:
        able = [n for n in online if n.agent_protocol >= need]
        if not able:
            return _older_agents(need, online, place)
        online = able
    if task.exclusive or task.nodes > 1:
        return _wide_reason(task, online, used, place)
    largest = max(n.cores for n in online)
    if largest < task.cores:
        return (
            f"needs {task.cores} cores on one node; the largest Online node in {place} "
            f"has {largest}"
        )
    free = {n.name: n.cores - used.get(n.name, 0) for n in online}
    best = max(free.values())
    if best >= task.cores:
        return (
            f"next in line: {task.cores} core(s) free in {place}; the next scheduler pass places it"
        )
    total = sum(n.cores for n in online)
    busy = total - sum(max(f, 0) for f in free.values())
    return (
        f"waiting for {task.cores} free core(s) on one node in {place} "
        f"({busy} of {total} cores busy; at most {max(best, 0)} free on any node)"
    )


def _older_agents(need: int, online: Sequence[Node], place: str) -> str:
    """Every Online node of the task's groups runs an agent that could not read its
    assignment: say which protocol it needs and which nodes to upgrade."""
    names = sorted(n.name for n in online)
    shown = ", ".join(names[:SHOW_NODES]) + (
        f" and {len(names) - SHOW_NODES} more" if len(names) > SHOW_NODES else ""
    )
    which = (
        f"node {shown} in {place} runs an older agent: upgrade it"
        if len(names) == 1
        else f"nodes {shown} in {place} run older agents: upgrade them"
    )
    return f"needs {describe(need)}; {which} (hpc node list shows each node's agent protocol)"


def _wide_reason(task: Task, online: Sequence[Node], used: Mapping[str, int], place: str) -> str:
    """A multi-node or exclusive task: it needs ``nodes`` nodes at once, each big enough and
    free enough (idle, when exclusive)."""
    want = f"{task.nodes} nodes" if task.nodes > 1 else "a node"
    big = [n for n in online if n.cores >= task.cores]
    if len(big) < task.nodes:
        each = " each" if task.nodes > 1 else ""
        return (
            f"needs {want} with {task.cores} core(s){each}; {place} has {len(big)} Online "
            f"node(s) with {task.cores} or more cores"
        )
    if task.exclusive:
        ready = [n for n in big if used.get(n.name, 0) <= 0]
        what = f"{task.nodes} idle nodes" if task.nodes > 1 else "an idle node"
        why, now = "exclusive: nothing else may run there", "idle now"
    else:
        ready = [n for n in big if n.cores - used.get(n.name, 0) >= task.cores]
        what = f"{want} with {task.cores} free core(s) each"
        why, now = "all at once", "that free now"
    if len(ready) >= task.nodes:
        return f"next in line: {what} in {place}; the next scheduler pass places it"
    return (
        f"waiting for {what} in {place} ({why}; {len(ready)} of {len(big)} big enough "
        f"node(s) are {now})"
    )


def behind(job: Job, queued: Sequence[Job], reason: str) -> str:
    """``reason`` led by the jobs ahead of ``job`` in the queue that compete for its nodes
    (queued tasks, ahead in scheduling order, a node group in common): e.g. "12 jobs of
    higher priority ahead; waiting for 8 free core(s) ...". Unchanged if there are none."""
    mine = set(job.node_groups)
    higher = earlier = 0
    for other in queued:
        if other.id == job.id or not other.task_counts.get(TaskState.QUEUED):
            continue
        if mine and other.node_groups and mine.isdisjoint(other.node_groups):
            continue
        if other.priority > job.priority:
            higher += 1
        elif other.priority == job.priority and (other.submit_time, other.id) < (
            job.submit_time,
            job.id,
        ):
            earlier += 1
    parts = []
    if higher:
        parts.append(f"{higher} job{'s' if higher != 1 else ''} of higher priority ahead")
    if earlier:
        parts.append(
            f"{earlier} earlier job{'s' if earlier != 1 else ''} of the same priority ahead"
        )
    return "; ".join([*parts, reason]) if parts else reason
