"""The scheduler's decision: which queued task goes to which node. Pure: no I/O, no clock.

One pass looks at the queued tasks in scheduling order (priority, then submit
time — the store returns them so) and the free cores of the schedulable
nodes, and places each task on the node of its job's node groups that has
the most free cores (spreading load across nodes). A task that fits nowhere
is skipped and smaller tasks behind it may still run (backfill); the first
version reserves nothing for the skipped task, so a stream of small tasks
can delay a wide one. A node never gets more cores than it has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared.domain.models import Node, Task
from shared.domain.states import NODE_SCHEDULABLE


@dataclass(frozen=True)
class Placement:
    job_id: int
    task_id: int
    node: str
    group: str | None
    """The node's group that made it eligible (HPC_NODE_GROUP), or its first group."""


def free_cores(nodes: Iterable[Node], used: Mapping[str, int]) -> dict[str, int]:
    """Free cores of each schedulable node, given the cores its active tasks hold."""
    return {n.name: n.cores - used.get(n.name, 0) for n in nodes if n.state in NODE_SCHEDULABLE}


def plan(queued: Sequence[Task], nodes: Sequence[Node], used: Mapping[str, int]) -> list[Placement]:
    """Placements for as many of ``queued`` (already in scheduling order) as fit."""
    free = free_cores(nodes, used)
    by_name = {n.name: n for n in nodes if n.name in free}
    placements: list[Placement] = []
    total_free = sum(f for f in free.values() if f > 0)
    for task in queued:
        if total_free <= 0:
            break
        best: Node | None = None
        for node in by_name.values():
            if free[node.name] < task.cores:
                continue
            if task.node_groups and not set(task.node_groups) & set(node.groups):
                continue
            if best is None or (free[node.name], best.name) > (free[best.name], node.name):
                best = node
        if best is None:
            continue
        free[best.name] -= task.cores
        total_free -= task.cores
        group = next((g for g in best.groups if g in task.node_groups), None)
        placements.append(
            Placement(
                task.job_id, task.id, best.name, group or (best.groups[0] if best.groups else None)
            )
        )
    return placements
