"""The autoscaler's first fit of the queue on the nodes up or starting, as the scheduler's
next pass would place it: which tasks overflow (and need nodes started) and which nodes the
queue will use. Pure; used by :mod:`shared.domain.autoscaler` and :mod:`shared.domain.idleplan`
(the bin-packing of the overflow onto new nodes is :mod:`shared.domain.demand`'s).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence

from shared.domain.autoscaler_io import Reserved
from shared.domain.jobexclusive import Occupancy, bars
from shared.domain.models import Task
from shared.domain.nextpass import NO_HOLD, Hold, NextPass
from shared.domain.protocol import task_protocol
from shared.domain.reservedhold import ends_first

KeptOff = dict[tuple[int, int], set[Hashable]]
"""Overflowing tasks ((job, task)) the job-exclusive rule kept off a node with room for them,
and the other jobs that did: the autoscaler's notes name that cause (:func:`place_queue`)."""


def place_queue(
    queued: Sequence[Task],
    placing: list[str],
    free: dict[str, int],
    size: Mapping[str, int],
    groups_of: Mapping[str, set[str]],
    *,
    tiers: Mapping[str, int] | None = None,
    protocol: Mapping[str, int] | None = None,
    memory: Mapping[str, int | None] | None = None,
    spill: Callable[[Task], bool] | None = None,
    reserved: Reserved | None = None,
    now_s: float = 0.0,
    bursts: Callable[[Task], bool] | None = None,
    occupied: Occupancy | None = None,
    coming: Collection[str] = (),
    kept_off: KeptOff | None = None,
) -> tuple[list[Task], set[str]]:
    """The queue, in its order, placed on the nodes of ``placing`` (those with ``free`` cores)
    as the scheduler's next pass would place it (:class:`~shared.domain.nextpass.NextPass`:
    the Online nodes by ``tiers``, on-prem 0 before managed 1 (missing: 0), on-prem most free
    first, VMs best fit;
    then those in ``coming``, in ``placing``'s order): the tasks that fit nowhere, and the
    nodes used. ``protocol``:
    each node's agent protocol (missing: the current one, as a node the autoscaler starts
    boots the current agent); a task goes only where its assignment can be read. ``memory``:
    each node's free memory (:func:`memory_of`: consumable, :mod:`shared.domain.memoryfit`);
    a task that asks for memory goes only where it fits and holds it there for later tasks,
    a node missing from it taken as enough (None: no task asks for any). ``spill``:
    a multi-node task that does not fit whole and for which it says True (e.g.
    :meth:`Reach.holds`) takes the nodes that fit now, and only the rest overflows (a copy
    with ``nodes`` = the nodes still lacking): nodes are started for the rest only, and a
    node it took is not counted again for a later task. ``reserved``: the tasks after the
    reserved one take its nodes only where others lack (as the scheduler's backfill), and
    may not take the cores it waits for unless they end first (at ``now_s``,
    epoch seconds), nor any task if it is not in ``queued``; no hold once the reserved task
    overflows and ``bursts`` says a node will be started for it
    (:mod:`shared.domain.reservedhold`), nor the memory it asks there; a task the
    job-exclusive rule bars from the reserved task's nodes may take none of their cores.
    ``occupied``: which jobs use each node now; a task goes only where the job-exclusive rule
    lets its job (:mod:`shared.domain.jobexclusive`), and what it is placed on counts for
    later tasks; a task of a job that holds nodes takes them before any other, as the
    scheduler does, except those in ``coming``
    (Starting: not in the scheduler's next pass). ``kept_off`` is filled with the overflowing
    tasks that rule kept off a node with room ((job, task) -> the other jobs that did), for
    the notes to name the cause."""
    overflow: list[Task] = []
    wanted: set[str] = set()
    ages = protocol or {}
    nodes = NextPass(
        [n for n in placing if free[n] > 0], free, size, groups_of, tiers=tiers or {},
        protocol=ages, memory=memory or {}, occupied=occupied, coming=coming,
    )  # fmt: skip
    held: dict[str, int] = {}
    head = len(queued)
    if reserved is not None:
        head = next((i for i, t in enumerate(queued) if (t.job_id, t.id) == reserved.task), -1)
        held = dict(reserved.cores) if head < 0 else {}  # not in the window: it holds them

    def place(task: Task) -> None:
        hold = NO_HOLD
        first = reserved is not None and ends_first(task, reserved, now_s)
        if held and not first:
            hold = Hold(_held_from(task, held, size, reserved), _ask(reserved))
        need = task_protocol(task) if ages else 1
        mem = task.min_memory_mb if memory else None
        chosen = nodes.place(task, need, mem, held, hold)
        lack = task.nodes - len(chosen)
        if not lack or (chosen and spill is not None and spill(task)):  # (a part: spilled)
            nodes.take(task, chosen)
            wanted.update(chosen)
            if first:  # its cores are back before the reserved start: the hold's as before
                for name in chosen:
                    if name in held:
                        held[name] -= size[name] if task.exclusive else task.cores
            if not lack:
                return
        else:
            lack = task.nodes  # all its nodes or none (a one-node task: always)
        overflow.append(task if lack == task.nodes else task.model_copy(update={"nodes": lack}))
        if kept_off is not None and (blockers := nodes.blockers(task, need, mem)):
            kept_off[(task.job_id, task.id)] = blockers

    for task in queued[: head + 1]:
        place(task)
    if head + 1 >= len(queued):
        return overflow, wanted
    assert reserved is not None
    last = overflow[-1] if overflow and head >= 0 else None
    if last is not None and (last.job_id, last.id) == reserved.task:  # it (or a part) waits
        held = {} if bursts is not None and bursts(last) else dict(reserved.cores)
    for task in queued[head + 1 :]:
        place(task)
    return overflow, wanted


def _held_from(
    task: Task, held: Mapping[str, int], size: Mapping[str, int], reserved: Reserved | None
) -> Mapping[str, int]:
    """The cores of the reserved nodes ``task`` may not take: those the reserved task needs,
    or every one where the job-exclusive rule bars it from sharing a node with that task
    (the scheduler refuses such a backfill: :func:`shared.domain.reservation.harmless`)."""
    if reserved is None or not bars(
        task.job_id, task.job_exclusive, reserved.task[0], reserved.job_exclusive
    ):
        return held
    return {n: size.get(n, c) for n, c in held.items()}


def _ask(reserved: Reserved | None) -> Mapping[str, int]:
    """The memory the reserved task holds on each of its nodes: the scheduler's hold if it
    gave one, else its ask on each (none: 0)."""
    if reserved is None:
        return {}
    if reserved.held_mb is not None:
        return reserved.held_mb
    return dict.fromkeys(reserved.cores, reserved.memory_mb or 0)
