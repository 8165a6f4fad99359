"""The Store contract for a sweep task canceled alone before the scheduler reached it: one
commit creates the task (Canceled), moves the job's counts and writes its range with the id
listed ahead of the cursor. Every adapter keeps the list, closes the range when nothing is
left to create, and lets only one of that commit and a dispatch's commit of the same read
through (SQLite, and Cosmos on the local stand-in)."""

from __future__ import annotations

import pytest

from shared.domain.models import Job, Task
from shared.domain.states import TaskState
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict
from shared.ports.store import Store
from tests.contract.store_fixtures import T0
from tests.contract.test_store_ranges import sweep_job


def cancel_ahead(job: Job, r: TaskRange, task_id: int) -> Task:
    """What the cancel use case commits: the task created Canceled, the range told."""
    task = r.task(task_id)
    task.move_to(TaskState.CANCELED, now=T0)
    r.create_ahead(task_id)
    job.count(TaskState.QUEUED, TaskState.CANCELED, name=task.name)
    return task


def test_a_task_created_ahead_is_kept_with_its_range(store: Store) -> None:
    job, _, r = sweep_job(store, 5)
    task = cancel_ahead(job, r, 3)
    store.commit(job=job, tasks=[task], ranges=[r])
    (stored,) = store.get_ranges(job.id)
    assert (stored.cursor, stored.created_ahead, stored.left, stored.open) == (0, [3], 4, True)
    assert [(t.id, t.state) for t in store.list_tasks(job.id)] == [(3, TaskState.CANCELED)]
    assert store.get_job(job.id).task_counts == {TaskState.QUEUED: 4, TaskState.CANCELED: 1}
    assert [x.first_id for x in store.open_ranges(limit=10)] == [1]


def test_the_range_closes_when_its_last_task_to_create_is_canceled(store: Store) -> None:
    job, _, r = sweep_job(store, 2)
    first = cancel_ahead(job, r, 2)
    store.commit(job=job, tasks=[first], ranges=[r])
    job, (r,) = store.get_job(job.id), store.get_ranges(job.id)
    last = cancel_ahead(job, r, 1)
    store.commit(job=job, tasks=[last], ranges=[r])
    (stored,) = store.get_ranges(job.id)
    assert (stored.cursor, stored.created_ahead, stored.open) == (2, [], False)
    assert store.open_ranges(limit=10) == []


def test_a_cancel_and_a_dispatch_from_the_same_read_do_not_both_commit(store: Store) -> None:
    job, _, r = sweep_job(store, 5)
    (other,) = store.get_ranges(job.id)  # the dispatch's read
    canceled = cancel_ahead(job, r, 1)
    store.commit(job=job, tasks=[canceled], ranges=[r])
    born = other.task(1)
    born.state, born.node = TaskState.DISPATCHING, "n1"
    other.advance()
    with pytest.raises(Conflict):
        store.commit(tasks=[born], ranges=[other])
    assert [(t.id, t.state) for t in store.list_tasks(job.id)] == [(1, TaskState.CANCELED)]
    assert store.active_tasks(node="n1") == []
    (stored,) = store.get_ranges(job.id)
    assert stored.cursor == 1
