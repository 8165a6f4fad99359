"""Requeue many tasks of a range canceled alone (:mod:`shared.domain.rangecut`) in a few
documents: the undo of a range cut.

A run of such tasks with consecutive ids (``hpc task requeue 39 100-1100`` after ``hpc task
cancel 39 100-1100``) is cut out of its canceled range as an open range of its own
(:func:`cut_out`), whose template is the requeue's new attempt (``lifecycle.rerun``: Queued,
a fresh retry budget, the job's priority now): the scheduler creates its tasks from it as it
dispatches them, each once, as it does any sweep's. The canceled range keeps the ids before
the run and a new canceled range takes those after it. A short run (fewer than
:data:`~shared.domain.rangecut.SHORT_RUN` ids) is created instead, Queued as a new attempt,
as one task's requeue does (``shared.usecases.sweeps.requeue_unborn``), so ids given one by
one do not multiply the ranges every dispatch reads.

:func:`plan` chooses what one commit (one transactional batch) does; the caller commits it
and plans again from a fresh read until nothing is left, so a crash between two commits
leaves every id in exactly one range or stored task, requeued or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from shared.domain import lifecycle
from shared.domain.models import Task
from shared.domain.rangecut import Cut, Span, carve, plan_runs, rest_after, runs_in
from shared.domain.taskrange import MAX_CREATED_AHEAD, TaskRange


def canceled_runs(r: TaskRange, spans: Sequence[Span]) -> list[Span]:
    """The runs of ``r``'s tasks not created yet that ``spans`` (ascending, disjoint) name,
    ascending; none unless ``r`` was canceled alone (its tasks may be requeued alone)."""
    if r.canceled_time is None or not r.canceled_alone:
        return []
    return runs_in(r, spans)


def cut_out(
    r: TaskRange, first: int, last: int, *, now: datetime, priority: int
) -> list[TaskRange]:
    """Requeue tasks ``first`` to ``last`` of ``r`` (canceled alone, none of them created):
    they become an open range whose template is their new attempt. ``r`` keeps the ids
    before them (or, when ``first`` is at its cursor, becomes the open range); the new
    ranges (etag None) are returned in id order: the open one unless ``r`` became it, then
    the canceled one of the ids after ``last``, if any is left to create."""
    end = r.first_id + r.count - 1
    if not r.canceled_alone or not r.first_id + r.cursor <= first <= last <= end:
        raise ValueError(f"tasks {first}-{last} are not of canceled range {r.key}'s")
    if any(first <= i <= last for i in r.created_ahead):
        raise ValueError(f"tasks {first}-{last} of range {r.key} hold one created already")
    out = rest_after(r, last)  # (canceled as r is)
    template = _rerun(r.task(first), now, priority)
    if first == r.first_id + r.cursor:  # r itself is the open one, from its cursor
        r.count, r.created_ahead = last - r.first_id + 1, []
        _open(r, template, shift=r.cursor)
        return out
    opened = carve(r, first, last)
    _open(opened, template, shift=0)
    return [opened, *out]


def plan(
    ranges: Sequence[TaskRange],
    spans: Sequence[Span],
    *,
    now: datetime,
    priority: int,
    max_docs: int,
    max_bytes: int,
    size: Callable[[Task | TaskRange], int],
) -> Cut:
    """One commit's share of requeueing the tasks ``spans`` name in ``ranges`` canceled alone
    (the job's, as just read, less any the caller must not requeue; changed in place): as
    many runs, in id order, as ``max_docs`` documents and ``max_bytes`` (by ``size``) hold.
    ``moves``: tasks moved from Canceled to Queued, by name. Empty: none is left."""

    def short(current: TaskRange, first: int, last: int) -> list[Task] | None:
        ahead = first != current.first_id + current.cursor  # (one at the cursor moves it)
        if len(current.created_ahead) + ahead * (last - first + 1) > MAX_CREATED_AHEAD:
            return None
        return [_rerun(current.task(i), now, priority) for i in range(first, last + 1)]

    def cut(current: TaskRange, first: int, last: int) -> list[TaskRange]:
        return cut_out(current, first, last, now=now, priority=priority)

    return plan_runs(ranges, spans, canceled_runs, short, cut, max_docs, max_bytes, size)


def _rerun(task: Task, now: datetime, priority: int) -> Task:
    """The task (Canceled, not created) as its requeue makes it: Queued, a new attempt."""
    if lifecycle.rerun(task, now, priority=priority) is None:
        raise ValueError(f"task {task.id} is {task.state}, not Canceled")
    return task


def _open(r: TaskRange, template: Task, *, shift: int) -> None:
    """``r`` no longer canceled, its tasks made from ``template`` (the task at its cursor,
    ``shift`` ids after its first: the range's template is its first task's)."""
    if shift:
        template = template.model_copy(
            update={"id": r.first_id, "sweep_index": r.start, "name": r.template.name}
        )
    r.template = template.model_copy(update={"etag": None})
    r.canceled_time = r.canceled_reason = r.canceled_for = None
    r.canceled_alone = False
