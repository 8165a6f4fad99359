"""The Store contract for a range cut in three (``hpc task cancel 39 100-1100`` of a sweep not
created yet, :mod:`shared.domain.rangecut`): one commit replaces the range and creates the
canceled range and the one after it (a range whose etag is None is created). Every adapter
lists them by first id, queues only the open ones in scheduling order, refuses a range that
exists (nothing written), and lets only one of that commit and a dispatch's commit of the
same read through (SQLite, and Cosmos on the local stand-in)."""

from __future__ import annotations

import pytest

from shared.domain import rangecut
from shared.domain.states import TaskState
from shared.errors import Conflict
from shared.ports.store import Store, size_bound
from tests.contract.store_fixtures import T0
from tests.contract.test_store_ranges import sweep_job


def cut(store: Store, job_id: int, first: int, last: int) -> rangecut.Cut:
    """What the cancel use case commits for tasks ``first``..``last``, planned, not committed."""
    job = store.get_job(job_id)
    planned = rangecut.plan(
        store.get_ranges(job_id), [(first, last)], now=T0, reason="canceled by ann",
        max_docs=99, max_bytes=1_500_000, size=size_bound,
    )  # fmt: skip
    for name, n in planned.moves:
        job.count(TaskState.QUEUED, TaskState.CANCELED, n, name=name)
    store.commit(job=job, tasks=planned.tasks, ranges=planned.ranges)
    return planned


def test_a_commit_creates_the_ranges_cut_off_beside_the_one_it_replaces(store: Store) -> None:
    job, _, _ = sweep_job(store, 50_000)
    cut(store, job.id, 100, 1100)
    ranges = store.get_ranges(job.id)
    assert [(r.first_id, r.count, r.open, r.canceled_alone) for r in ranges] == [
        (1, 99, True, False),
        (100, 1001, False, True),
        (1101, 48_900, True, False),
    ]
    assert all(r.etag for r in ranges)
    assert ranges[1].task(100).state is TaskState.CANCELED
    assert ranges[1].task(100).error == "canceled by ann"
    assert ranges[2].task(1101).sweep_index == ranges[0].task(1).sweep_index + 1100
    assert [r.first_id for r in store.open_ranges(limit=10)] == [1, 1101]
    assert store.get_job(job.id).task_counts == {TaskState.QUEUED: 48_999, TaskState.CANCELED: 1001}
    assert store.list_tasks(job.id) == []  # no task document


def test_a_created_range_can_be_written_again_under_its_etag(store: Store) -> None:
    job, _, _ = sweep_job(store, 100)
    cut(store, job.id, 20, 30)
    tail = store.get_ranges(job.id)[-1]
    tail.cursor = 1
    store.commit(ranges=[tail])
    assert store.get_ranges(job.id)[-1].cursor == 1


def test_creating_a_range_that_exists_is_a_conflict_and_writes_nothing(store: Store) -> None:
    job, _, r = sweep_job(store, 100)
    cut(store, job.id, 20, 30)
    again = store.get_ranges(job.id)[1].model_copy(update={"etag": None})
    head = store.get_ranges(job.id)[0]
    head.cursor = 1
    with pytest.raises(Conflict):
        store.commit(ranges=[head, again])
    assert store.get_ranges(job.id)[0].cursor == 0


def test_a_cut_and_a_dispatch_from_the_same_read_do_not_both_commit(store: Store) -> None:
    job, _, _ = sweep_job(store, 50)
    (other,) = store.get_ranges(job.id)  # the dispatch's read
    cut(store, job.id, 1, 10)  # its first ten, from the cursor
    born = other.task(1)
    born.state, born.node = TaskState.DISPATCHING, "n1"
    other.advance()
    with pytest.raises(Conflict):
        store.commit(job=store.get_job(job.id), tasks=[born], ranges=[other])
    assert store.list_tasks(job.id) == []
    assert [r.first_id for r in store.open_ranges(limit=10)] == [11]
