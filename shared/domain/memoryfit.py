"""Consumable memory (Slurm's ``CR_Core_Memory``): what a running task holds of its nodes'
memory, and whether a request fits what is left. Pure; one rule for the scheduler
(:mod:`shared.domain.capacity`, :mod:`shared.domain.reservation`), the autoscaler's packing
(:mod:`shared.domain.firstfit`, :mod:`shared.domain.demand`), the pending reasons and the
node views.

A task asking for ``minMemoryMb`` holds that much on each of its nodes from dispatch until it
ends (a multi-node task on every node; ``maxCores`` growth adds cores, never memory; an
exclusive task holds its ask, as Slurm's ``--exclusive`` without ``--mem=0``: it holds all
the node's cores, so nothing else starts there anyway). A task asking for none holds none
(Slurm with no ``DefMemPerCPU``). A node of unknown memory runs no task that asks for memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from shared.domain.cluster import Node
from shared.domain.hosts import Holding, held
from shared.domain.memory import shown
from shared.domain.models import Task
from shared.domain.states import NODE_SCHEDULABLE


def free_mb(memory_mb: int | None, held_mb: int) -> int | None:
    """A node's memory no running task holds (None: its memory is unknown). Never below 0
    (a node that reported less memory than its tasks hold, after they started, has none)."""
    return None if memory_mb is None else max(memory_mb - held_mb, 0)


def fits_now(need: int | None, memory_mb: int | None, held_mb: int) -> bool:
    """A request of ``need`` MB per node (None: none asked) fits a node of ``memory_mb``
    (None: unknown) whose running tasks hold ``held_mb``."""
    if need is None:
        return True
    have = free_mb(memory_mb, held_mb)
    return have is not None and have >= need


def asked(task: Task | Holding) -> int:
    """MB the task holds on each of its nodes while it is active (0: it asked for none)."""
    mb = task.min_memory_mb if isinstance(task, Task) else task.memory_mb
    return mb or 0


def held_memory(active: Iterable[Task | Holding]) -> dict[str, int]:
    """MB the active tasks hold on each node, on every node they hold."""
    out: dict[str, int] = defaultdict(int)
    for task in active:
        mb = asked(task)
        if mb:
            for host in held(task):
                out[host.node] += mb
    return out


def node_free_mb(node: Node, held_mb: Mapping[str, int]) -> int | None:
    """A node's free memory as the views show it (``freeMemoryMb``): None when unknown."""
    return free_mb(node.memory_mb, held_mb.get(node.name, 0))


def short_of(
    task: Task, nodes: Sequence[Node], used: Mapping[str, int], held_mb: Mapping[str, int]
) -> list[str]:
    """The schedulable ``nodes`` whose cores could take ``task`` now and whose memory could
    (it has enough in all) but whose free memory cannot: busy for it until tasks there end."""
    need = task.min_memory_mb
    if need is None:
        return []
    out = []
    for n in nodes:
        if n.state not in NODE_SCHEDULABLE or n.memory_mb is None or n.memory_mb < need:
            continue
        free = n.cores - used.get(n.name, 0)
        if free >= task.cores and not fits_now(need, n.memory_mb, held_mb.get(n.name, 0)):
            out.append(n.name)
    return sorted(out)


def short_reason(
    task: Task, short: Sequence[str], nodes: Sequence[Node], held_mb: Mapping[str, int], place: str
) -> str:
    """Why ``task`` waits when nodes have its cores free but not its memory (``short``)."""
    assert task.min_memory_mb is not None
    memory = {n.name: n.memory_mb for n in nodes}
    free = {n: free_mb(memory[n], held_mb.get(n, 0)) or 0 for n in short}
    best = max(short, key=lambda n: (free[n], n))
    where = "on one node" if task.nodes == 1 else f"on each of {task.nodes} nodes"
    among = f", the most of the {len(short)} nodes with its cores free" if len(short) > 1 else ""
    return (
        f"waiting for {shown(task.min_memory_mb, up=True)} free memory {where} in {place} "
        f"({best} has {shown(free[best])} free{among}: running tasks hold the rest)"
    )
