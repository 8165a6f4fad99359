"""Cancel many tasks of a sweep that the scheduler has not created yet, in a few documents.

A run of such tasks with consecutive ids (``hpc task cancel 39 100-1100``) is cut off its
range as a range of its own, canceled (:func:`cut_off`): the range keeps the ids before
the run and a new range takes those after it, so canceling 10,000 tasks of a 50,000-step
sweep writes three range documents, not 10,000 task documents. A short run (fewer than
:data:`SHORT_RUN` ids) is created Canceled instead, as one task's cancel does
(:meth:`TaskRange.create_ahead`): every dispatch of a job reads its ranges whole, so ids
given one by one must not multiply them.

Either way the tasks are never dispatched: the scheduler creates a range's tasks only from
its cursor, in a commit that checks the range's etag, and a canceled range is not open.
:func:`plan` chooses what one commit (one transactional batch: at most ``max_docs``
documents and ``max_bytes``) does; the caller commits it and plans again from a fresh read
until nothing is left, so a crash between two commits leaves every id in exactly one range
or stored task.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain import lifecycle
from shared.domain.models import Task
from shared.domain.taskrange import MAX_CREATED_AHEAD, TaskRange

SHORT_RUN = 8
"""Runs shorter than this are created Canceled (one task document each); longer ones are
cut off as a canceled range (one or two range documents)."""

Span = tuple[int, int]
"""Task ids ``first`` to ``last``, both included."""


@dataclass(frozen=True)
class Run:
    """Tasks ``first`` to ``last`` canceled, the first at sweep index ``index``."""

    first: int
    last: int
    index: int
    step: int
    name: str


@dataclass
class Cut:
    """What one commit writes: ``ranges`` (replaced, or created where the etag is None) and
    ``tasks`` (created Canceled), and the ``runs`` of tasks that it cancels."""

    ranges: list[TaskRange] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    moves: list[tuple[str, int]] = field(default_factory=list)
    """Tasks moved from Queued to Canceled, by name (for the job's counts and steps)."""

    @property
    def empty(self) -> bool:
        return not self.runs


def unborn_runs(r: TaskRange, spans: Sequence[Span]) -> list[Span]:
    """The runs of ``r``'s tasks not created yet that ``spans`` (ascending, disjoint) name,
    ascending; none of a canceled range."""
    return [] if r.canceled_time is not None else runs_in(r, spans)


def runs_in(r: TaskRange, spans: Sequence[Span]) -> list[Span]:
    """The runs of ``r``'s tasks not created yet (from its cursor, less those created ahead)
    that ``spans`` (ascending, disjoint) name, ascending, whatever the range's state."""
    low, high = r.first_id + r.cursor, r.first_id + r.count - 1
    ahead = r.created_ahead
    out: list[Span] = []
    for first, last in spans:
        first, last = max(first, low), min(last, high)
        if first > last:
            continue
        i = bisect_left(ahead, first)
        while i < len(ahead) and ahead[i] <= last:  # (tasks created ahead are stored)
            if ahead[i] > first:
                out.append((first, ahead[i] - 1))
            first, i = ahead[i] + 1, i + 1
        if first <= last:
            out.append((first, last))
    return out


def cut_off(
    r: TaskRange, first: int, last: int, *, now: datetime, reason: str | None
) -> list[TaskRange]:
    """Cut tasks ``first`` to ``last`` of ``r``, none created yet, off as a canceled range.
    ``r`` keeps the ids before them (or, when ``first`` is its first id, becomes the
    canceled range); the new ranges (etag None) are returned in id order: the canceled one
    unless ``r`` became it, then the one of the ids after ``last``, if any is left to create."""
    end = r.first_id + r.count - 1
    if r.canceled_time is not None or not r.first_id + r.cursor <= first <= last <= end:
        raise ValueError(f"tasks {first}-{last} are not of range {r.key}'s to create")
    if any(first <= i <= last for i in r.created_ahead):
        raise ValueError(f"tasks {first}-{last} of range {r.key} hold one created already")
    out = rest_after(r, last)
    if first == r.first_id:  # (its cursor is 0): the range itself is the canceled one
        r.count, r.created_ahead = last - first + 1, []
        _cancel(r, now, reason)
        return out
    canceled = carve(r, first, last)
    _cancel(canceled, now, reason)
    return [canceled, *out]


def plan(
    ranges: Sequence[TaskRange],
    spans: Sequence[Span],
    *,
    now: datetime,
    reason: str | None,
    max_docs: int,
    max_bytes: int,
    size: Callable[[Task | TaskRange], int],
) -> Cut:
    """One commit's share of canceling the tasks ``spans`` name that are not created yet in
    ``ranges`` (the job's, as just read; changed in place): as many runs, in id order, as
    ``max_docs`` documents and ``max_bytes`` (by ``size``) hold. Empty: none is left."""

    def short(current: TaskRange, first: int, last: int) -> list[Task] | None:
        if len(current.created_ahead) + last - first + 1 > MAX_CREATED_AHEAD:
            return None
        tasks = [current.task(i) for i in range(first, last + 1)]
        for task in tasks:
            lifecycle.cancel(task, now, reason)
        return tasks

    def cut(current: TaskRange, first: int, last: int) -> list[TaskRange]:
        return cut_off(current, first, last, now=now, reason=reason)

    return plan_runs(ranges, spans, unborn_runs, short, cut, max_docs, max_bytes, size)


def plan_runs(
    ranges: Sequence[TaskRange],
    spans: Sequence[Span],
    runs_of: Callable[[TaskRange, Sequence[Span]], list[Span]],
    short: Callable[[TaskRange, int, int], list[Task] | None],
    cut: Callable[[TaskRange, int, int], list[TaskRange]],
    max_docs: int,
    max_bytes: int,
    size: Callable[[Task | TaskRange], int],
) -> Cut:
    """What one commit does of changing the runs ``runs_of`` finds in each range (a cancel's,
    :func:`plan`; a requeue's, :func:`shared.domain.rangerequeue.plan`): a run shorter than
    :data:`SHORT_RUN` is created as the tasks ``short`` makes (None: too many created ahead
    already, so it is cut), a longer one ``cut`` off its range; as many runs, in id order,
    as ``max_docs`` documents and ``max_bytes`` (by ``size``) hold. ``ranges`` change in
    place; the caller commits and plans again from a fresh read until it is empty."""
    plan = Cut()
    written: dict[int, TaskRange] = {}
    docs = used = 0

    def room(items: Sequence[Task | TaskRange]) -> bool:
        return docs + len(items) <= max_docs and used + sum(size(i) for i in items) <= max_bytes

    for r in ranges:
        current = r  # the range holding the ids after the runs done so far
        for first, last in runs_of(r, spans):
            new_doc = [] if current.first_id in written else [current]
            index = current.start + (first - current.first_id) * current.step
            run = Run(first, last, index, current.step, current.template.name)
            n = last - first + 1
            tasks = short(current, first, last) if n < SHORT_RUN else None
            if tasks is not None:
                added: list[Task | TaskRange] = [*new_doc, *tasks]
                if not room(added):
                    break
                for task in tasks:
                    current.create_ahead(task.id)
                plan.tasks += tasks
                plan.moves += [(t.name, 1) for t in tasks]
            else:
                if not room([*new_doc, *cut(current.model_copy(deep=True), first, last)]):
                    break
                pieces = cut(current, first, last)
                added = [*new_doc, *pieces]
                written.update((p.first_id, p) for p in pieces)
                plan.moves.append((run.name, n))
                written.setdefault(current.first_id, current)
                current = written.get(last + 1, current)  # (the rest after it, if any)
            written.setdefault(current.first_id, current)
            docs, used = docs + len(added), used + sum(size(i) for i in added)
            plan.runs.append(run)
        else:
            continue
        break  # (the commit is full: the rest is the next one's)
    plan.ranges = sorted(written.values(), key=lambda p: p.first_id)
    return plan


def rest_after(r: TaskRange, last: int) -> list[TaskRange]:
    """The ids of ``r`` after ``last`` as a range of their own (etag None), in the state ``r``
    is, less the tasks created ahead at its start; none if every one of them is created."""
    end = r.first_id + r.count - 1
    if last >= end:
        return []
    rest = piece(r, last + 1, end)
    rest.created_ahead = [i for i in r.created_ahead if i > last]
    while rest.created_ahead and rest.created_ahead[0] == rest.first_id + rest.cursor:
        rest.cursor, rest.created_ahead = rest.cursor + 1, rest.created_ahead[1:]
    return [rest] if rest.left else []


def carve(r: TaskRange, first: int, last: int) -> TaskRange:
    """Tasks ``first`` to ``last`` of ``r`` as their own range (:func:`piece`), ``r`` left
    with its ids before ``first``: the middle of a range a cancel or a requeue cuts out."""
    out = piece(r, first, last)
    r.count = first - r.first_id
    r.created_ahead = [i for i in r.created_ahead if i < first]
    return out


def piece(r: TaskRange, first: int, last: int) -> TaskRange:
    """Tasks ``first`` to ``last`` of ``r`` as a range of their own, none created yet,
    canceled as ``r`` is; its template is the task ``first`` as created (Queued, even of a
    canceled range: the cancel is the range's, undone by a requeue)."""
    index = r.start + (first - r.first_id) * r.step
    name = f"{r.name_prefix}[{index}]" if r.name_prefix else r.template.name
    update = {"id": first, "sweep_index": index, "name": name, "etag": None}
    template = r.template.model_copy(update=update)
    return r.model_copy(
        update={
            "first_id": first,
            "count": last - first + 1,
            "start": index,
            "template": template,
            "cursor": 0,
            "created_ahead": [],
            "etag": None,
        },
        deep=True,
    )


def _cancel(r: TaskRange, now: datetime, reason: str | None) -> None:
    r.canceled_time, r.canceled_reason, r.canceled_alone = now, reason, True
