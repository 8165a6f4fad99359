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
from shared.domain.rangecut import SHORT_RUN, Cut, Run, Span, piece
from shared.domain.taskrange import MAX_CREATED_AHEAD, TaskRange


def canceled_runs(r: TaskRange, spans: Sequence[Span]) -> list[Span]:
    """The runs of ``r``'s tasks not created yet that ``spans`` (ascending, disjoint) name,
    ascending; none unless ``r`` was canceled alone (its tasks may be requeued alone)."""
    if r.canceled_time is None or not r.canceled_alone:
        return []
    return _unborn(r, spans)


def _unborn(r: TaskRange, spans: Sequence[Span]) -> list[Span]:
    low, high = r.first_id + r.cursor, r.first_id + r.count - 1
    ahead = set(r.created_ahead)
    out: list[Span] = []
    for first, last in spans:
        start = None
        for i in range(max(first, low), min(last, high) + 1):
            if i in ahead:
                if start is not None:
                    out.append((start, i - 1))
                start = None
            elif start is None:
                start = i
        if start is not None:
            out.append((start, min(last, high)))
    return out


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
    out: list[TaskRange] = []
    if last < end:
        rest = piece(r, last + 1, end)  # (canceled as r is)
        rest.created_ahead = [i for i in r.created_ahead if i > last]
        while rest.created_ahead and rest.created_ahead[0] == rest.first_id + rest.cursor:
            rest.cursor, rest.created_ahead = rest.cursor + 1, rest.created_ahead[1:]
        out = [rest] if rest.left else []
    template = _rerun(r.task(first), now, priority)
    if first == r.first_id + r.cursor:  # r itself is the open one, from its cursor
        r.count, r.created_ahead = last - r.first_id + 1, []
        _open(r, template, shift=r.cursor)
        return out
    opened = piece(r, first, last)
    _open(opened, template, shift=0)
    r.count = first - r.first_id
    r.created_ahead = [i for i in r.created_ahead if i < first]
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
    cut = Cut()
    written: dict[int, TaskRange] = {}
    docs = used = 0

    def room(items: Sequence[Task | TaskRange]) -> bool:
        return docs + len(items) <= max_docs and used + sum(size(i) for i in items) <= max_bytes

    for r in ranges:
        current = r  # the range holding the ids after the runs done so far
        for first, last in canceled_runs(r, spans):
            new_doc = [] if current.first_id in written else [current]
            index = current.start + (first - current.first_id) * current.step
            run = Run(first, last, index, current.step, current.template.name)
            n = last - first + 1
            ahead = first != current.first_id + current.cursor
            if n < SHORT_RUN and len(current.created_ahead) + ahead * n <= MAX_CREATED_AHEAD:
                tasks = [_rerun(current.task(i), now, priority) for i in range(first, last + 1)]
                added: list[Task | TaskRange] = [*new_doc, *tasks]
                if not room(added):
                    break
                for task in tasks:
                    current.create_ahead(task.id)
                cut.tasks += tasks
                cut.moves += [(t.name, 1) for t in tasks]
            else:
                trial = cut_out(
                    current.model_copy(deep=True), first, last, now=now, priority=priority
                )
                if not room([*new_doc, *trial]):
                    break
                pieces = cut_out(current, first, last, now=now, priority=priority)
                added = [*new_doc, *pieces]
                written.update((p.first_id, p) for p in pieces)
                cut.moves.append((run.name, n))
                written.setdefault(current.first_id, current)
                current = written.get(last + 1, current)  # (the canceled rest, if any)
            written.setdefault(current.first_id, current)
            docs, used = docs + len(added), used + sum(size(i) for i in added)
            cut.runs.append(run)
        else:
            continue
        break  # (the commit is full: the rest is the next one's)
    cut.ranges = sorted(written.values(), key=lambda p: p.first_id)
    return cut


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
