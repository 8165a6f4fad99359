"""Why a queued task waits, in words a user can act on. Pure: the cluster's state in, a reason out.

The reasons say what would have to change: which group lacks Online nodes, how many cores
the task wants against what the group has, or that it is next in line. They are computed
when asked (the API's ``pendingReason``), from the same records the scheduler reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from shared.domain.models import Node, Task
from shared.domain.states import NODE_SCHEDULABLE, NodeState, TaskState


def where(groups: Sequence[str]) -> str:
    return ", ".join(groups) if groups else "the cluster"


def pending_reason(task: Task, nodes: Sequence[Node], used: Mapping[str, int]) -> str | None:
    """Why ``task`` is not running now, or None if it is not queued."""
    if task.state is not TaskState.QUEUED:
        return None
    place = where(task.node_groups)
    mine = [n for n in nodes if not task.node_groups or set(task.node_groups) & set(n.groups)]
    online = [n for n in mine if n.state in NODE_SCHEDULABLE and n.incarnation > 0]
    starting = sorted(n.name for n in mine if n.state is NodeState.STARTING)
    if not online and starting:
        return f"waiting for {', '.join(starting)} to start in {place}"
    if not online:
        states = Counter(n.state.value for n in mine)
        seen = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        return f"no Online node in {place}" + (f" ({seen})" if seen else "")
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
