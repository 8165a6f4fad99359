"""Job-level exclusive (HPC Pack's job ``/exclusive``, Slurm's ``--exclusive`` on a job): who
may use a node, given which jobs run there. Pure; one rule for the scheduler
(:mod:`shared.domain.capacity`, :mod:`shared.domain.reservation`), the autoscaler's packing
(:mod:`shared.domain.demand`) and the pending reasons.

A job-exclusive job's tasks run only on nodes where no other job's task runs, and while
one of them runs on a node, no other job's task starts there. Its own tasks share a node
freely (a sweep of 1-core steps packs onto one node, alone with its job). A node where a
task of such a job runs is *held* by that job. A task-level ``exclusive`` (all of a node's
cores) is another rule, applied on top of this one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from shared.domain.hosts import Holding, held
from shared.domain.models import Task

BARRED_NOTE = "exclusive job: waits for nodes with no other job's task"
"""What a job-exclusive task's pending reason says when other jobs' tasks keep it off nodes."""


def may_use(
    job: Hashable, exclusive: bool, running: Collection[Hashable], holder: Hashable | None
) -> bool:
    """A request of ``job`` (job-exclusive or not) may use a node where the jobs ``running``
    have active tasks and which ``holder`` holds (the job-exclusive job running there, None:
    none). Another job's hold bars everyone; a job-exclusive job wants no other job there."""
    if holder is not None and holder != job:
        return False
    return not exclusive or all(j == job for j in running)


def blockers(
    job: Hashable, exclusive: bool, running: Collection[Hashable], holder: Hashable | None
) -> set[Hashable]:
    """The other jobs that keep a request of ``job`` off a node (none: :func:`may_use`): the
    job holding it, or, for a job-exclusive request, the jobs ``running`` there."""
    if holder is not None and holder != job:
        return {holder}
    return {j for j in running if j != job} if exclusive else set()


def bars(job: Hashable, exclusive: bool, other: Hashable, other_exclusive: bool) -> bool:
    """A task of job ``other`` running on a node keeps a request of ``job`` off it (until it
    ends): :func:`may_use` for one running task."""
    return other != job and (exclusive or other_exclusive)


@dataclass(frozen=True)
class Occupancy:
    """Which jobs have active tasks on each node, and which job-exclusive job holds it."""

    jobs: Mapping[str, frozenset[Hashable]] = field(default_factory=dict)
    holders: Mapping[str, Hashable] = field(default_factory=dict)

    def allows(self, job: Hashable, exclusive: bool, node: str) -> bool:
        """:func:`may_use` on ``node`` as occupied now."""
        return may_use(job, exclusive, self.jobs.get(node, ()), self.holders.get(node))

    def barred(self, job: Hashable, exclusive: bool, nodes: Iterable[str]) -> list[str]:
        """The ``nodes`` (names) a request of ``job`` may not use now, in their order."""
        return [n for n in nodes if not self.allows(job, exclusive, n)]


def occupancy(active: Iterable[Task | Holding]) -> Occupancy:
    """The :class:`Occupancy` of the nodes the ``active`` tasks hold (every node of a
    multi-node task)."""
    jobs: dict[str, set[Hashable]] = defaultdict(set)
    holders: dict[str, Hashable] = {}
    for task in active:
        for host in held(task):
            jobs[host.node].add(task.job_id)
            if task.job_exclusive:
                holders[host.node] = task.job_id
    return Occupancy({n: frozenset(j) for n, j in jobs.items()}, holders)


def barred_reason(task: Task, barred: Collection[str], occupied: Occupancy, place: str) -> str:
    """Why ``task`` waits when the rule bars it from ``barred`` (node names) and the nodes
    it may use are busy; ``place``: where it may run, in words."""
    if task.exclusive:
        want = f"{task.nodes} idle nodes" if task.nodes > 1 else "an idle node"
    elif task.nodes > 1:
        want = f"{task.nodes} nodes with {task.cores} free core(s) each"
    else:
        want = f"{task.cores} free core(s) on one node"
    shown = sorted(barred)
    listed = ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
    if task.job_exclusive:
        verb = "runs another job's task" if len(shown) == 1 else "run other jobs' tasks"
        why = f"{BARRED_NOTE} ({listed} {verb})"
    else:
        holders = sorted({str(occupied.holders[n]) for n in barred if n in occupied.holders})
        why = (
            f"{listed} held by exclusive job{'s' if len(holders) > 1 else ''} {', '.join(holders)}"
        )
    return f"waiting for {want} in {place}: {why}"


class Tenants:
    """An :class:`Occupancy` that a first fit adds its placements to (the autoscaler's
    simulation of the next pass, on the nodes still starting: :mod:`shared.domain.nextpass`),
    so that a node a job-exclusive task is placed on is not counted as room for another
    job's, nor a node another job's task is placed on as room for it."""

    def __init__(self, occupied: Occupancy | None = None) -> None:
        seen = occupied or Occupancy()
        self.jobs: dict[str, set[Hashable]] = {n: set(j) for n, j in seen.jobs.items()}
        self.holders: dict[str, Hashable] = dict(seen.holders)

    def allows(self, job: Hashable, exclusive: bool, node: str) -> bool:
        return may_use(job, exclusive, self.jobs.get(node, ()), self.holders.get(node))

    def blockers(self, job: Hashable, exclusive: bool, node: str) -> set[Hashable]:
        """:func:`blockers` on ``node`` as occupied now."""
        return blockers(job, exclusive, self.jobs.get(node, ()), self.holders.get(node))

    def occupy(self, node: str, job: Hashable, exclusive: bool) -> None:
        self.jobs.setdefault(node, set()).add(job)
        if exclusive:
            self.holders[node] = job
