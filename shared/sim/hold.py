"""The scheduler's reservation as the replay's autoscaler is shown it: read as the cluster's
timer reads it (:func:`shared.usecases.autoscale.reserved`), so both run the autoscaler's
first fit on the same inputs (:mod:`shared.domain.reservedhold`).

The cluster reruns a pass without jumps on the registered (Online) nodes over the first
free + 1 queued tasks; here the pass is over as many queued jobs. A replayed job is one
request to the scheduler but one one-node task per node to the autoscaler, where the cluster
has one multi-node task. The hold is keyed to the job's last task: the first fit places all
of the job's tasks before it decides whether later tasks must keep off the held cores, as it
places the cluster's one task whole (spilling the part that does not fit) before deciding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from shared.domain.autoscaler_io import Reserved
from shared.domain.scheduler import Busy, Policy, schedule
from shared.sim.fleet import Fleet
from shared.sim.replay import _request
from shared.sim.swf import SwfJob


def reserved(
    queue: Sequence[SwfJob],
    fleet: Fleet,
    busy: Sequence[Busy],
    now: float,
    policy: Policy,
    cpn: int,
) -> Reserved | None:
    """The reservation a pass would make now, keyed to its job's last task; None when no
    Online core is free (the cluster's pass reads no queue then) or nothing is reserved."""
    free = sum(fleet.free[n] for n in fleet.open)
    if free <= 0 or not queue:
        return None
    head = queue[: free + 1]  # a job takes at least one core: the first blocked is here
    decision = schedule(
        (replace(_request(j, cpn), queued_at=j.submit) for j in head),
        [fleet.space(n) for n in fleet.online],
        busy,
        now=now,
        policy=policy,
    )
    res = decision.reservation
    if res is None:
        return None
    job = next(j for j in head if j.id == res.key)
    last = math.ceil(job.procs / min(job.procs, cpn))
    return Reserved((job.id, last), dict(res.held), res.at, held_mb=dict(res.held_mb))
