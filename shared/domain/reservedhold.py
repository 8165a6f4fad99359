"""How the autoscaler's first fit honours the scheduler's reservation (pure).

The scheduler keeps a blocked head task's cores on its reserved nodes: a later task takes
them only if it provably ends before the reserved start (EASY's known time), never when the
time is unknown (what runs there has no runtime limit). The autoscaler's first fit must do
the same, or it counts those cores for later tasks and grows nothing while they wait behind
the reservation, maybe for hours (two reviews found both cases). But when the reserved task
itself will be given a node the autoscaler starts, its reservation ends as that node boots
and the held cores go to the later tasks then: holding them would start nodes that never
get work (:func:`may_grow_for`). As in the scheduler, a later task takes a reserved node only
where other nodes lack, and only if the node keeps what the reserved task waits for there
(:meth:`shared.domain.nextpass.NextPass.place`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from shared.domain.autoscaler_io import Reserved
from shared.domain.growshrink import AutoscalerPolicy, GroupMemory, fits_node
from shared.domain.models import Task
from shared.domain.scheduler import Decision


def ends_first(task: Task, reserved: Reserved, now_s: float) -> bool:
    """The task ends before the reserved start, so it may use the held cores (EASY)."""
    limit = task.runtime_limit_s
    return reserved.at is not None and limit is not None and now_s + limit <= reserved.at


def may_grow_for(
    task: Task,
    policy: AutoscalerPolicy,
    members: Collection[str],
    memories: Mapping[str, GroupMemory],
    now: datetime,
) -> bool:
    """A managed group with nodes, not excluded, not backing off, whose nodes are big enough
    (cores, memory: :func:`fits_node`), may be grown for ``task``: the autoscaler will start
    a node it can run on."""
    for group, gp in policy.groups.items():
        if group in policy.exclude_node_groups or group not in members:
            continue
        if task.node_groups and group not in task.node_groups:
            continue
        until = memories.get(group, GroupMemory()).backoff_until
        if (until is None or now >= until) and gp.max_nodes > 0 and fits_node(task, gp):
            return True
    return False


def unless_hidden(hold: Reserved | None, hidden: Collection[tuple[int, int]]) -> Reserved | None:
    """No hold for a reserved task the autoscaler is not shown: it waits for running work
    under its group's maxNodes (:mod:`shared.domain.ceiling`), not for nodes; held for it, the
    cores would be kept from the shown tasks (a hold whose task is not in the queue holds
    them from all) and nodes started for those instead."""
    return None if hold is None or hold.task in hidden else hold


def hold_of(decision: Decision, window: Sequence[Task]) -> Reserved | None:
    """The scheduler's reservation of a pass over ``window`` (the queue's head, in order), as
    the autoscaler's first fit holds it: on each reserved node, the cores free
    when the reserved task blocked less the scheduler's spare there (what stays free at its
    projected start: :attr:`Reservation.held`). Holding the reserved task's own cores
    instead kept out later tasks the scheduler lets in where running tasks end before that
    start (55 of 5,000 random clusters placed differently)."""
    res = decision.reservation
    if res is None:
        return None
    task = next(t for t in window if (t.job_id, t.id) == res.key)
    return Reserved(
        (task.job_id, task.id), dict(res.held), res.at, task.job_exclusive, task.min_memory_mb,
        held_mb=dict(res.held_mb),
    )  # fmt: skip
