"""The Store contract for a range requeue (``hpc task requeue 39 200-1199`` of tasks a range
cut canceled, :mod:`shared.domain.rangerequeue`): one commit replaces the canceled range and
creates the open one and the canceled rest (etag None), or reopens the canceled range itself
from its cursor. Every adapter then queues the reopened ids in scheduling order, makes their
tasks from the new attempt's template, and lets only one of two commits of the same read
through (SQLite, and Cosmos on the local stand-in)."""

from __future__ import annotations

import pytest

from shared.domain import rangerequeue
from shared.domain.states import TaskState
from shared.errors import Conflict
from shared.ports.store import Store, size_bound
from tests.contract.store_fixtures import T0
from tests.contract.test_store_range_cut import cut
from tests.contract.test_store_ranges import sweep_job


def requeue(store: Store, job_id: int, first: int, last: int) -> rangerequeue.Cut:
    """What the requeue use case commits for tasks ``first``..``last``."""
    job = store.get_job(job_id)
    planned = rangerequeue.plan(
        store.get_ranges(job_id), [(first, last)], now=T0, priority=job.priority,
        max_docs=99, max_bytes=1_500_000, size=size_bound,
    )  # fmt: skip
    for name, n in planned.moves:
        job.count(TaskState.CANCELED, TaskState.QUEUED, n, name=name)
    store.commit(job=job, tasks=planned.tasks, ranges=planned.ranges)
    return planned


def test_a_requeued_run_is_an_open_range_between_canceled_ones(store: Store) -> None:
    job, _, _ = sweep_job(store, 50_000)
    cut(store, job.id, 100, 1100)
    requeue(store, job.id, 200, 1099)
    ranges = store.get_ranges(job.id)
    assert [(r.first_id, r.count, r.open, r.canceled_alone) for r in ranges] == [
        (1, 99, True, False),
        (100, 100, False, True),
        (200, 900, True, False),
        (1100, 1, False, True),
        (1101, 48_900, True, False),
    ]
    assert all(r.etag for r in ranges)
    task = ranges[2].task(200)
    assert (task.state, task.attempt, task.error) == (TaskState.QUEUED, 1, None)
    assert task.sweep_index == ranges[0].task(1).sweep_index + 199
    assert [r.first_id for r in store.open_ranges(limit=10)] == [1, 200, 1101]
    assert store.get_job(job.id).task_counts == {TaskState.QUEUED: 49_899, TaskState.CANCELED: 101}
    assert store.list_tasks(job.id) == []  # no task document


def test_a_canceled_range_reopens_itself_from_its_first_id(store: Store) -> None:
    job, _, _ = sweep_job(store, 100)
    cut(store, job.id, 20, 40)
    requeue(store, job.id, 20, 30)
    ranges = store.get_ranges(job.id)
    assert [(r.first_id, r.count, r.open) for r in ranges] == [
        (1, 19, True), (20, 11, True), (31, 10, False), (41, 60, True),
    ]  # fmt: skip
    assert [r.first_id for r in store.open_ranges(limit=10)] == [1, 20, 41]
    requeue(store, job.id, 33, 35)  # a short run: created Queued, as one task's requeue
    assert [t.id for t in store.list_tasks(job.id)] == [33, 34, 35]
    assert store.get_job(job.id).task_counts == {TaskState.QUEUED: 93, TaskState.CANCELED: 7}


def test_two_requeues_of_the_same_read_commit_once(store: Store) -> None:
    job, _, _ = sweep_job(store, 100)
    cut(store, job.id, 20, 60)
    read = store.get_ranges(job.id)
    first = store.get_job(job.id)
    planned = rangerequeue.plan(
        read, [(30, 40)], now=T0, priority=0, max_docs=99, max_bytes=1_500_000, size=size_bound
    )
    for name, n in planned.moves:
        first.count(TaskState.CANCELED, TaskState.QUEUED, n, name=name)
    requeue(store, job.id, 30, 40)
    with pytest.raises(Conflict):
        store.commit(job=first, tasks=planned.tasks, ranges=planned.ranges)
    assert store.get_job(job.id).task_counts == {TaskState.QUEUED: 70, TaskState.CANCELED: 30}
