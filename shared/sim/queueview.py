"""What the replay's autoscaler run is shown of the queue, as the cluster's timer shows it.

Two rules leave queued work out, the cluster's own (:mod:`shared.usecases.autoscale`):

- the ceiling (:mod:`shared.domain.ceiling`): a job that cannot fit under the group's
  maxNodes beside the nodes running work holds waits for that work, not for nodes;
- likely ends (:mod:`shared.domain.likelyends`): the boots a job defers for the nodes
  running jobs likely free within a boot delay (a policy that forecasts them: ``forecast``).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from shared.domain.ceiling import Room, beyond_ceiling
from shared.domain.likelyends import Release, boots_needed, deferrals
from shared.domain.models import Task
from shared.domain.warmpool import Plan
from shared.sim.fleet import GROUP, Fleet
from shared.sim.swf import SwfJob


@runtime_checkable
class EndForecast(Protocol):
    """An idle policy that forecasts the running jobs' ends (``forecast``)."""

    wait_weight: float

    def likely_ends(self, now: float) -> list[Release]: ...

    def plan(self, now: float, in_use: int, waiting: int, up: int, deferred: int = 0) -> Plan: ...


def fits_ceiling(
    queue: list[SwfJob], fleet: Fleet, nodes: int, cpn: int, asks: dict[int, Task]
) -> tuple[list[SwfJob], set[tuple[int, int]]]:
    """The queued jobs the autoscaler is shown, and the keys of the others: the cluster's
    rule (:mod:`shared.domain.ceiling`), each job one task on its nodes (keyed by its last
    task, as its reservation is: :mod:`shared.sim.hold`), beside the nodes its running jobs
    hold (``nodes``: the group's maxNodes)."""
    partial = sorted(fleet.free[n] for n in fleet.held if fleet.free[n] > 0)
    room = Room(cpn, nodes - len(fleet.held), partial)
    if not partial and sum(job_nodes(j, cpn) for j in queue) <= room.whole:
        return queue, set()  # all fit: no task to build
    for job in queue:
        if job.id not in asks:
            n = job_nodes(job, cpn)
            asks[job.id] = Task(job_id=job.id, id=n, command="", cores=min(job.procs, cpn), nodes=n)
    hidden = beyond_ceiling([asks[j.id] for j in queue], {GROUP: room})
    if not hidden:
        return queue, hidden
    return [j for j in queue if (j.id, asks[j.id].id) not in hidden], hidden


def deferred(
    shown: list[SwfJob], fleet: Fleet, cpn: int, forecast: EndForecast | None, now: float
) -> dict[int, int]:
    """The boots each shown job defers for likely ends (job id -> nodes): the jobs beyond
    what the idle Online and the Starting nodes cover, in queue order."""
    if forecast is None:
        return {}
    cover = len(fleet.idle_at) + len(fleet.starting)
    needs = boots_needed([(j.id, job_nodes(j, cpn)) for j in shown], cover)
    if not needs:
        return {}
    return deferrals(forecast.likely_ends(now), needs, forecast.wait_weight)


def job_nodes(job: SwfJob, cpn: int) -> int:
    return math.ceil(job.procs / min(job.procs, cpn))
