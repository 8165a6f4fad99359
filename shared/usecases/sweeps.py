"""A job's tasks as users see them: its stored tasks together with the tasks of its sweeps
that do not exist yet (:class:`~shared.domain.models.TaskRange`), which are shown Queued
(Canceled once the job was canceled) until the scheduler creates them.

Listing merges the two by task id without making more than the page: a page of a
1,000,000-task sweep costs one stored-task query, one range query and the page itself.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Iterator

from shared.domain.models import Task, TaskRange
from shared.domain.states import TaskState
from shared.errors import NotFound
from shared.usecases.deps import Deps


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
    page = itertools.islice(entries, offset, offset + limit)
    return [e.task(i) if isinstance(e, TaskRange) else e for i, e in page]


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


def first_queued(deps: Deps, job_id: int) -> Task | None:
    """The job's first queued task (lowest id), stored or not created yet."""
    found = list_tasks(deps, job_id, states=[TaskState.QUEUED], limit=1)
    return found[0] if found else None


def _shown(r: TaskRange, states: Collection[TaskState] | None) -> bool:
    """The range's tasks not created yet are in one of ``states``."""
    state = TaskState.CANCELED if r.canceled_time is not None else TaskState.QUEUED
    return states is None or state in states


def _unborn_ids(r: TaskRange, after: int) -> Iterator[tuple[int, Task | TaskRange]]:
    first = max(r.first_id + r.cursor, after + 1)
    return ((i, r) for i in range(first, r.first_id + r.count))
