"""The Store contract for sweep ranges: a sweep is stored as one range document and its tasks
are created by ``commit`` as they are dispatched. Every adapter passes this (the fixtures of
``store_fixtures.py``: SQLite, and Cosmos on the local stand-in)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict
from shared.ports.store import Store
from tests.contract.store_fixtures import T0, add_job, keys


def sweep_job(
    store: Store, count: int, *, priority: int = 2000, singles: int = 0, when=T0
) -> tuple[Job, list[Task], TaskRange]:
    """A job of ``singles`` stored tasks (ids 1..singles) and one sweep range after them."""
    job = Job(
        id=store.next_job_id(),
        state=JobState.QUEUED,
        priority=priority,
        submit_time=when,
        task_count=singles + count,
        task_counts={TaskState.QUEUED: singles + count},
    )
    tasks = [
        Task(job_id=job.id, id=i, command="one", priority=priority, submit_time=when)
        for i in range(1, singles + 1)
    ]
    template = Task(
        job_id=job.id,
        id=singles + 1,
        command="run *",
        sweep_index=0,
        priority=priority,
        submit_time=when,
    )
    r = TaskRange(job_id=job.id, first_id=singles + 1, count=count, start=0, template=template)
    store.add_job(job, tasks, [r])
    return job, tasks, r


def test_a_million_task_sweep_is_one_range_document(store: Store) -> None:
    job, _, r = sweep_job(store, 1_000_000)
    assert r.etag is not None
    (stored,) = store.get_ranges(job.id)
    assert (stored.first_id, stored.count, stored.cursor, stored.left) == (1, 1_000_000, 0, 10**6)
    assert store.list_tasks(job.id) == [] and store.queued_tasks(limit=10) == []
    assert [x.job_id for x in store.open_ranges(limit=10)] == [job.id]


def test_commit_creates_a_ranges_tasks_with_its_cursor_atomically(store: Store) -> None:
    job, _, r = sweep_job(store, 5)
    born = [r.task(1), r.task(2)]
    for t in born:
        t.state = TaskState.DISPATCHING
        t.node = "n1"
    r.cursor = 2
    job.count(TaskState.QUEUED, TaskState.DISPATCHING, 2)
    store.commit(job=job, tasks=born, ranges=[r])
    assert all(t.etag for t in born) and r.etag is not None
    assert [(t.id, t.sweep_index, t.state) for t in store.list_tasks(job.id)] == [
        (1, 0, TaskState.DISPATCHING),
        (2, 1, TaskState.DISPATCHING),
    ]
    assert keys(store.active_tasks(node="n1")) == [(job.id, 1), (job.id, 2)]
    assert store.get_ranges(job.id)[0].cursor == 2


def test_a_stale_range_creates_nothing(store: Store) -> None:
    job, _, r = sweep_job(store, 5)
    first = store.get_ranges(job.id)[0]
    second = store.get_ranges(job.id)[0]
    first.cursor = 1
    store.commit(ranges=[first], tasks=[first.task(1)])
    second.cursor = 1
    with pytest.raises(Conflict):
        store.commit(ranges=[second], tasks=[second.task(2)])
    assert [t.id for t in store.list_tasks(job.id)] == [1]
    assert store.get_ranges(job.id)[0].cursor == 1


def test_creating_a_task_that_exists_is_a_conflict_and_writes_nothing(store: Store) -> None:
    job, (one,), r = sweep_job(store, 3, singles=1)
    r.cursor = 1
    again = Task(job_id=job.id, id=1, command="dup")  # no etag: a create of an existing id
    with pytest.raises(Conflict):
        store.commit(job=job, tasks=[again], ranges=[r])
    assert store.get_ranges(job.id)[0].cursor == 0
    assert store.get_task(job.id, 1).command == "one"


def test_a_finished_or_canceled_range_is_no_longer_open(store: Store) -> None:
    a, _, ra = sweep_job(store, 2)
    b, _, rb = sweep_job(store, 2)
    ra.cursor = 2
    store.commit(ranges=[ra], tasks=[ra.task(1), ra.task(2)])
    rb.canceled_time = T0
    store.commit(ranges=[rb])
    assert store.open_ranges(limit=10) == []
    assert store.get_ranges(b.id)[0].canceled_time == T0


def test_a_range_canceled_for_a_prerequisite_keeps_its_name_until_reopened(store: Store) -> None:
    """What a task's requeue reads and writes to bring back a sweep canceled because its
    prerequisite failed (shared/usecases/dependents.py): the prerequisite's name on the
    range and on a stored task, then both queued again with their job in one commit."""
    job, [task], r = sweep_job(store, 1000, singles=1)
    job = store.get_job(job.id)
    task.move_to(TaskState.CANCELED)
    task.canceled_for = "prep"
    r.canceled_time, r.canceled_reason, r.canceled_for = T0, "dependency 'prep' failed", "prep"
    job.count(TaskState.QUEUED, TaskState.CANCELED, 1001)
    store.commit(job=job, tasks=[task], ranges=[r])
    [stored] = store.get_ranges(job.id)
    assert (stored.canceled_for, stored.left, stored.open) == ("prep", 1000, False)
    assert store.get_task(job.id, 1).canceled_for == "prep"
    job, task = store.get_job(job.id), store.get_task(job.id, 1)
    task.move_to(TaskState.QUEUED)
    task.canceled_for = None
    stored.canceled_time = stored.canceled_reason = stored.canceled_for = None
    job.count(TaskState.CANCELED, TaskState.QUEUED, 1001)
    store.commit(job=job, tasks=[task], ranges=[stored])
    assert store.get_ranges(job.id)[0].canceled_for is None
    assert [x.job_id for x in store.open_ranges(limit=10)] == [job.id]
    assert store.get_job(job.id).task_counts == {TaskState.QUEUED: 1001}
    assert store.get_task(job.id, 1).canceled_for is None


def test_open_ranges_come_in_scheduling_order_and_skip_excluded_jobs(store: Store) -> None:
    low, _, _ = sweep_job(store, 3, priority=1000)
    late, _, _ = sweep_job(store, 3, when=T0 + timedelta(seconds=1))
    early, _, _ = sweep_job(store, 3)
    high, _, _ = sweep_job(store, 3, priority=4000)
    assert [r.job_id for r in store.open_ranges(limit=10)] == [high.id, early.id, late.id, low.id]
    assert [r.job_id for r in store.open_ranges(limit=2)] == [high.id, early.id]
    skipped = store.open_ranges(limit=10, exclude_jobs=[high.id, late.id])
    assert [r.job_id for r in skipped] == [early.id, low.id]


def test_queued_tasks_skip_excluded_jobs(store: Store) -> None:
    a, _ = add_job(store, 2)
    b, _ = add_job(store, 2)
    assert keys(store.queued_tasks(limit=10, exclude_jobs=[a.id])) == [(b.id, 1), (b.id, 2)]
    assert keys(store.queued_tasks(limit=10, exclude_jobs=[])) == [
        (a.id, 1),
        (a.id, 2),
        (b.id, 1),
        (b.id, 2),
    ]


def test_list_tasks_pages_after_an_id(store: Store) -> None:
    job, _ = add_job(store, 5)
    assert [t.id for t in store.list_tasks(job.id, after=2, limit=2)] == [3, 4]
    assert [t.id for t in store.list_tasks(job.id, after=5)] == []


def test_a_range_of_another_job_is_refused(store: Store) -> None:
    job, _, r = sweep_job(store, 2)
    other = r.model_copy(update={"job_id": job.id + 1})
    with pytest.raises(ValueError, match="one job"):
        store.commit(job=job, ranges=[other])
