"""A job's tasks as users see them: its stored tasks together with the tasks of its sweeps
that do not exist yet (:class:`~shared.domain.taskrange.TaskRange`), which are shown Queued
(Canceled once the job was canceled) until the scheduler creates them.

Listing merges the two by task id without making more than the page: a page of a
1,000,000-task sweep costs one stored-task query, one range query and the page itself.

One such task can be canceled alone (:func:`cancel_unborn`, Slurm's ``scancel 1234_90``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Iterator

from shared.domain import lifecycle
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import MAX_CREATED_AHEAD, TaskRange
from shared.errors import Conflict, NotFound, Refused
from shared.usecases.deps import Deps
from shared.usecases.settling import settle


def list_tasks(
    deps: Deps,
    job_id: int,
    *,
    states: Collection[TaskState] | None = None,
    offset: int = 0,
    limit: int = 1000,
    after: int = 0,
) -> list[Task]:
    """Tasks of one job in id order: ids above ``after``, skipping ``offset`` of them."""
    deps.store.get_job(job_id)  # 404 for an unknown job
    offset = max(offset, 0)
    if limit <= 0 or (states is not None and not states):
        return []
    ranges = [r for r in deps.store.get_ranges(job_id) if r.left and _shown(r, states)]
    if not ranges:
        return deps.store.list_tasks(job_id, states=states, offset=offset, limit=limit, after=after)
    stored = deps.store.list_tasks(job_id, states=states, limit=offset + limit, after=after)
    entries: Iterator[tuple[int, Task | TaskRange]] = heapq.merge(
        ((t.id, t) for t in stored),
        *(_unborn_ids(r, after) for r in ranges),
        key=lambda e: e[0],
    )
    page = itertools.islice(_once(entries), offset, offset + limit)
    return [e.task(i) if isinstance(e, TaskRange) else e for i, e in page]


def _once(
    entries: Iterator[tuple[int, Task | TaskRange]],
) -> Iterator[tuple[int, Task | TaskRange]]:
    """Each id once, the stored task first: a pass or a cancel that created a task between
    the reads of the ranges and of the tasks leaves it in both (a review saw task 4 listed
    Canceled and Queued). heapq.merge keeps the stored stream first among equal ids."""
    last = None
    for entry in entries:
        if entry[0] != last:
            last = entry[0]
            yield entry


def get_task(deps: Deps, job_id: int, task_id: int) -> Task:
    """A stored task, or one of a sweep not created yet. Raises NotFound."""
    job = deps.store.get_job(job_id)
    try:
        return deps.store.get_task(job_id, task_id)
    except NotFound:
        for r in deps.store.get_ranges(job_id):
            if r.contains(task_id):
                return r.task(task_id)
        raise NotFound(
            f"task {job_id}.{task_id} does not exist; job {job_id} has tasks 1 to {job.task_count}"
        ) from None


def cancel_unborn(deps: Deps, job: Job, task_id: int, *, reason: str | None = None) -> Task:
    """Cancel a task of a sweep that the scheduler has not created yet (``job`` as just read,
    the task not stored): it is created now, Canceled, in one commit with its job's counts
    (Queued -> Canceled) and its range listing it as created ahead of the cursor, which
    skips it. So it exists once and is never dispatched: a pass that read the range before
    conflicts on the range's etag (or on creating the task), and a pass that created it
    first makes this commit conflict; ``Deps.retry`` then finds it stored. Being a stored
    Canceled task from then on, it is requeued, listed and counted as any other.

    NotFound if the job has no such task; Conflict if it was created meanwhile (retry);
    Refused if its range was canceled, the job is being canceled, or the range already has
    MAX_CREATED_AHEAD tasks canceled ahead of its cursor."""
    r = next((r for r in deps.store.get_ranges(job.id) if r.contains(task_id)), None)
    if r is None:
        get_task(deps, job.id, task_id)  # NotFound if there is no such task
        raise Conflict(f"task {job.id}.{task_id} was created meanwhile")  # (stored: retried)
    if r.canceled_time is not None:
        raise Refused(f"task {job.id}.{task_id} is already Canceled; nothing to cancel")
    if job.state is JobState.CANCELING:
        raise Refused(lifecycle.being_canceled(job.id))
    ahead = task_id != r.first_id + r.cursor  # (one at the cursor only moves it)
    if ahead and len(r.created_ahead) >= MAX_CREATED_AHEAD:
        raise Refused(
            f"task {job.id}.{task_id} is Queued in a sweep the scheduler has not reached, which "
            f"has {MAX_CREATED_AHEAD:,} such tasks canceled already (the most one range of "
            f"it keeps): cancel it with hpc task cancel {job.id} {task_id} (POST "
            f"/api/jobs/{job.id}/tasks/cancel, which cuts the range there), the whole job "
            f"(hpc job cancel {job.id}), or the task once started"
        )
    now = deps.clock()
    task = r.task(task_id)
    change = lifecycle.cancel(task, now, reason)
    if change is None or change.new is not TaskState.CANCELED:  # (a Queued task ends now)
        raise Refused(f"task {job.id}.{task_id} is {task.state}; nothing to cancel")
    r.create_ahead(task_id)
    job.count(change.old, change.new, name=task.name)
    settled = lifecycle.settle_job(job, now)
    deps.store.commit(job=job, tasks=[task], ranges=[r])
    if not settled:
        settle(deps, job.id)  # others' ends, committed beside ours, may have made it due
    return task


def requeue_unborn(deps: Deps, job: Job, task_id: int, *, priority: int) -> Task | None:
    """Requeue a task of a range canceled alone (:mod:`shared.domain.rangecut`) that was never
    created: it is created now, Queued as a new attempt, in one commit with its job (reopened
    if it had ended) and its range listing it as created; as :func:`cancel_unborn`, bounded
    by MAX_CREATED_AHEAD. None if no such range holds it (the caller says why it cannot)."""
    r = next((r for r in deps.store.get_ranges(job.id) if r.contains(task_id)), None)
    if r is None or r.canceled_time is None or not r.canceled_alone:
        return None
    if task_id != r.first_id + r.cursor and len(r.created_ahead) >= MAX_CREATED_AHEAD:
        raise Refused(
            f"task {job.id}.{task_id} was canceled with {MAX_CREATED_AHEAD:,} or more others "
            f"of its sweep requeued alone since: requeue the job once it has ended "
            f"(hpc job requeue {job.id})"
        )
    now = deps.clock()
    task = r.task(task_id)
    change = lifecycle.rerun(task, now, priority=priority)
    if change is None:
        return None
    r.create_ahead(task_id)
    lifecycle.reopen_job(job, now)
    job.count(change.old, change.new, name=task.name)
    deps.store.commit(job=job, tasks=[task], ranges=[r])
    return task


def first_queued(deps: Deps, job_id: int) -> Task | None:
    """The job's first queued task (lowest id), stored or not created yet."""
    found = list_tasks(deps, job_id, states=[TaskState.QUEUED], limit=1)
    return found[0] if found else None


def _shown(r: TaskRange, states: Collection[TaskState] | None) -> bool:
    """The range's tasks not created yet are in one of ``states``."""
    state = TaskState.CANCELED if r.canceled_time is not None else TaskState.QUEUED
    return states is None or state in states


def _unborn_ids(r: TaskRange, after: int) -> Iterator[tuple[int, Task | TaskRange]]:
    return ((i, r) for i in r.unborn_ids(after))
