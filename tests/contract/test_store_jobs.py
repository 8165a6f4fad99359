"""The Store contract, jobs: job ids, ``add_job``, and reading jobs and tasks back.

Every adapter of :class:`shared.ports.store.Store` passes the tests/contract/test_store_*.py
suites (the adapters are listed in tests/contract/store_fixtures.py).
"""

from __future__ import annotations

import multiprocessing
import threading
from datetime import timedelta

import pytest

from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, NotFound
from shared.ports.store import Store
from tests.contract.store_fixtures import T0, OpenStore, add_job, keys, same_document

# --- job ids ----------------------------------------------------------------


def test_next_job_id_counts_up_from_one(store: Store) -> None:
    assert [store.next_job_id() for _ in range(3)] == [1, 2, 3]


def test_next_job_id_is_unique_across_threads(store: Store) -> None:
    ids: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [store.next_job_id() for _ in range(50)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(ids) == list(range(1, 401))


def test_next_job_id_is_unique_across_store_instances(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    ids = [store.next_job_id() for _ in range(20) for store in (first, second)]
    assert ids == list(range(1, 41))


def _take_job_ids(open_store: OpenStore, count: int, results: multiprocessing.Queue) -> None:
    store = open_store()
    results.put([store.next_job_id() for _ in range(count)])
    store.close()


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork to share the fixture"
)
def test_next_job_id_is_unique_across_processes(open_store: OpenStore) -> None:
    open_store()  # storage created before the children start
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()
    children = [
        context.Process(target=_take_job_ids, args=(open_store, 50, results)) for _ in range(3)
    ]
    for child in children:
        child.start()
    ids = [i for _ in children for i in results.get(timeout=30)]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    assert sorted(ids) == list(range(1, 151))


# --- add_job, get, list ------------------------------------------------------


def test_add_job_stores_the_job_and_its_tasks(store: Store) -> None:
    job, tasks = add_job(store, 3)
    assert same_document(store.get_job(job.id), job)
    assert [same_document(a, b) for a, b in zip(store.list_tasks(job.id), tasks, strict=True)] == [
        True
    ] * 3


def test_add_job_sets_the_etags_it_stored(store: Store) -> None:
    job, tasks = add_job(store, 2)
    assert job.etag is not None
    assert store.get_job(job.id).etag == job.etag
    for task in tasks:
        assert task.etag is not None
        assert store.get_task(task.job_id, task.id).etag == task.etag


def test_add_job_keeps_every_field(store: Store) -> None:
    job = Job(
        id=store.next_job_id(),
        name="sweep",
        owner="alice",
        state=JobState.RUNNING,
        priority=3000,
        node_groups=["AzureNodes", "OnPremNodes"],
        max_retries=5,
        task_count=1,
        task_counts={TaskState.RUNNING: 1},
        submit_time=T0,
        start_time=T0 + timedelta(seconds=1),
        error="none",
    )
    task = Task(
        job_id=job.id,
        id=1,
        name="t1",
        command="python run.py 7",
        cores=4,
        sweep_index=7,
        work_dir="/tmp",
        env={"A": "1"},
        state=TaskState.RUNNING,
        priority=3000,
        node_groups=["AzureNodes"],
        submit_time=T0,
        node="az-1",
        attempt=2,
        requeue_count=1,
        output="tail",
        start_time=T0 + timedelta(microseconds=1),
    )
    store.add_job(job, [task])
    assert same_document(store.get_job(job.id), job)
    assert same_document(store.get_task(job.id, 1), task)


def test_add_job_takes_a_job_without_tasks(store: Store) -> None:
    job, _ = add_job(store, 0)
    assert store.get_job(job.id).task_count == 0
    assert store.list_tasks(job.id) == []


def test_add_job_with_an_existing_id_conflicts_and_changes_nothing(store: Store) -> None:
    job, tasks = add_job(store, 2)
    again = Job(id=job.id, name="other")
    more = [Task(job_id=job.id, id=i, command="other") for i in (3, 4)]
    with pytest.raises(Conflict):
        store.add_job(again, more)
    assert store.get_job(job.id).name == "job"
    assert keys(store.list_tasks(job.id)) == keys(tasks)
    assert again.etag is None


def test_add_job_is_all_or_nothing(store: Store) -> None:
    job_id = store.next_job_id()
    tasks = [Task(job_id=job_id, id=i, command="x") for i in range(1, 51)]
    tasks.append(Task(job_id=job_id + 1000, id=51, command="of another job"))
    with pytest.raises(ValueError):
        store.add_job(Job(id=job_id), tasks)
    with pytest.raises(NotFound):
        store.get_job(job_id)
    assert store.list_tasks(job_id) == []
    assert store.queued_tasks(limit=100) == []


def test_add_job_refuses_repeated_task_ids(store: Store) -> None:
    job_id = store.next_job_id()
    tasks = [Task(job_id=job_id, id=i, command="x") for i in (1, 2, 2)]
    with pytest.raises(ValueError):
        store.add_job(Job(id=job_id), tasks)
    with pytest.raises(NotFound):
        store.get_job(job_id)
    assert store.list_tasks(job_id) == []


def test_get_job_of_unknown_id_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_job(42)


def test_get_task_of_unknown_job_or_task_raises_not_found(store: Store) -> None:
    job, _ = add_job(store, 1)
    with pytest.raises(NotFound):
        store.get_task(job.id, 2)
    with pytest.raises(NotFound):
        store.get_task(job.id + 1, 1)


def test_list_jobs_is_newest_first_and_limited(store: Store) -> None:
    ids = [add_job(store, 0, submit_time=T0 + timedelta(seconds=i))[0].id for i in range(5)]
    assert [j.id for j in store.list_jobs()] == ids[::-1]
    assert [j.id for j in store.list_jobs(limit=2)] == ids[:-3:-1]


def test_list_jobs_filters_by_state(store: Store) -> None:
    queued, _ = add_job(store, 0, state=JobState.QUEUED)
    running, _ = add_job(store, 0, state=JobState.RUNNING)
    add_job(store, 0, state=JobState.FINISHED)
    assert [j.id for j in store.list_jobs(states={JobState.QUEUED})] == [queued.id]
    both = store.list_jobs(states=[JobState.QUEUED, JobState.RUNNING])
    assert [j.id for j in both] == [running.id, queued.id]
    assert store.list_jobs(states=[]) == []


def test_list_tasks_are_in_task_id_order_with_offset_and_limit(store: Store) -> None:
    job, _ = add_job(store, task_ids=[5, 3, 1, 4, 2])
    assert [t.id for t in store.list_tasks(job.id)] == [1, 2, 3, 4, 5]
    assert [t.id for t in store.list_tasks(job.id, offset=1, limit=3)] == [2, 3, 4]
    assert store.list_tasks(job.id, offset=5) == []


def test_list_tasks_filters_by_state(store: Store) -> None:
    job, tasks = add_job(store, 4)
    for task in tasks[1:3]:
        task.move_to(TaskState.CANCELED)
    store.commit(tasks=tasks[1:3])
    assert [t.id for t in store.list_tasks(job.id, states={TaskState.CANCELED})] == [2, 3]
    assert [t.id for t in store.list_tasks(job.id, states=[TaskState.QUEUED])] == [1, 4]
    assert [
        t.id
        for t in store.list_tasks(job.id, states=[TaskState.QUEUED, TaskState.CANCELED], offset=1)
    ] == [2, 3, 4]


def test_list_tasks_of_unknown_job_is_empty(store: Store) -> None:
    assert store.list_tasks(7) == []


def test_a_job_with_many_tasks_is_stored_whole(store: Store) -> None:
    """1,250 tasks: 13 of Cosmos's 100-document batches (the stand-in writes them one by one,
    with their queue pointers, so more would only slow the suite)."""
    job, _ = add_job(store, 1250)
    assert [t.id for t in store.list_tasks(job.id, offset=1240, limit=100)] == list(
        range(1241, 1251)
    )
    assert len(store.queued_tasks(limit=10_000)) == 1250
