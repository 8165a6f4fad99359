"""The nodes a dispatched task holds and the cores it holds on each. Pure.

A task's resources are granted at dispatch and recorded on it (:attr:`Task.hosts`): one
:class:`Host` per node, the first being where its command runs (``Task.node``). Every
count of busy cores (the scheduler's free cores, EASY's projection, pending reasons, the
autoscaler's idle nodes) comes from :func:`held`, so a multi-node task's cores count on
every one of its nodes, not only the first.

Losing any node of a task loses the attempt: a multi-node (MPI) run cannot go on without
one of its nodes, so the task is requeued as when its first node is lost
(:func:`lost_host`, applied by the reconciler).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from shared.domain.cluster import Node
from shared.domain.models import Host, Task
from shared.domain.states import NodeState


class Seat(NamedTuple):
    """One node of a Holding and the cores held there (a Host without the model's cost)."""

    node: str
    cores: int
    incarnation: int | None = None


@dataclass(frozen=True)
class Holding:
    """What an active task holds, and until when: all a scheduler pass needs of the tasks
    that run (free cores, EASY's projection, maxConcurrent counts), read from the store
    without loading whole task documents (:meth:`Store.holdings`)."""

    job_id: int
    task_id: int
    hosts: tuple[Seat, ...]
    runtime_limit_s: int | None = None
    since: datetime | None = None
    """When its attempt started (else was dispatched): it ends by since + runtime limit."""
    job_exclusive: bool = False
    """Its job is job-exclusive: it holds its nodes against other jobs (jobexclusive)."""
    memory_mb: int | None = None
    """Memory it holds on each of its nodes (its ``minMemoryMb``; None: none): memoryfit."""

    @property
    def until(self) -> float | None:
        if self.runtime_limit_s is None or self.since is None:
            return None
        return self.since.timestamp() + self.runtime_limit_s


def holding_of(task: Task) -> Holding:
    return Holding(
        task.job_id,
        task.id,
        tuple(Seat(h.node, h.cores, h.incarnation) for h in held(task)),
        task.runtime_limit_s,
        task.start_time or task.dispatch_time,
        task.job_exclusive,
        task.min_memory_mb,
    )


def held(task: Task | Holding) -> Sequence[Host | Seat]:
    """The nodes and cores the task's current attempt holds (none before dispatch). A task
    dispatched before hosts were recorded holds ``cores`` on ``node``."""
    if isinstance(task, Holding):
        return task.hosts
    if task.hosts:
        return list(task.hosts)
    if task.node is None:
        return []
    return [Host(node=task.node, cores=task.cores, incarnation=task.incarnation)]


def used_cores(active: Iterable[Task | Holding]) -> dict[str, int]:
    """Cores the active tasks hold on each node, on every node they hold."""
    used: dict[str, int] = defaultdict(int)
    for task in active:
        for host in held(task):
            used[host.node] += host.cores
    return used


def granted_cores(task: Task) -> int:
    """All the cores the task holds, on all its nodes (HPC_TASK_CORES)."""
    return sum(h.cores for h in held(task))


def host_list(hosts: Sequence[Host | Seat]) -> str:
    """HPC_NODES: ``name:cores`` per node, comma-separated, the first node first. It is the
    form Open MPI's ``--host`` takes (``mpirun -np $HPC_TASK_CORES --host $HPC_NODES``)."""
    return ",".join(f"{h.node}:{h.cores}" for h in hosts)


def lost_host(task: Task, nodes: Mapping[str, Node]) -> str | None:
    """Why the task lost one of the nodes it holds, or None if it holds them all still: the
    node was removed, became unreachable, its agent restarted (another incarnation), or
    (for a node other than the first, whose agent reports the task) it went Offline."""
    for i, host in enumerate(held(task)):
        node = nodes.get(host.node)
        if node is None:
            return f"node {host.node} was removed"
        if node.state is NodeState.UNREACHABLE:
            return f"node {host.node} became unreachable ({node.state_reason})"
        if host.incarnation is not None and host.incarnation != node.incarnation:
            return f"agent on {host.node} restarted"
        if i > 0 and node.state is NodeState.OFFLINE:
            return f"node {host.node} went offline ({node.state_reason})"
    return None
