"""The Store contract: every adapter of :class:`shared.ports.store.Store` passes this suite.

The ``open_store`` fixture is the one place that knows the adapters: it is
parametrized by backend name and opens a Store on fresh, empty storage (more
than one instance on the same storage when a test asks twice). A new adapter
(Cosmos DB) is one more param there; every test below then runs against it.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.sqlite_store import SqliteStore
from shared.domain.models import DEFAULT_GROUPS, Job, Node, NodeGroup, Principal, Task
from shared.domain.states import JobState, NodeState, TaskState
from shared.errors import Conflict, NotFound
from shared.ports.store import MAX_BATCH, Store
from tests.emulators import drop_cosmos_database, open_cosmos_store

OpenStore = Callable[[], Store]

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _open_sqlite(storage: Path) -> Store:
    return SqliteStore(storage / "store.db")


def _open_cosmos(storage: Path) -> Store:
    """A CosmosStore on the stand-in (tests/emulators.py), one database per test."""
    return open_cosmos_store(storage)


BACKENDS: dict[str, Callable[[Path], Store]] = {"sqlite": _open_sqlite, "cosmos": _open_cosmos}


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.cosmos] if name == "cosmos" else [])
        for name in sorted(BACKENDS)
    ]
)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens Store instances that all share one fresh, empty storage."""
    if request.param == "cosmos":
        request.getfixturevalue("cosmos_endpoint")  # starts the stand-in (skips without Node.js)
    opened: list[Store] = []

    def open_() -> Store:
        store = BACKENDS[request.param](tmp_path)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    if request.param == "cosmos" and opened:
        drop_cosmos_database(tmp_path)


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    return open_store()


def add_job(
    store: Store,
    n_tasks: int = 3,
    *,
    priority: int = 2000,
    submit_time: datetime = T0,
    state: JobState = JobState.QUEUED,
    task_ids: list[int] | None = None,
    job_id: int | None = None,
) -> tuple[Job, list[Task]]:
    """Store a job with ``n_tasks`` queued tasks (ids 1..n, or ``task_ids``)."""
    job = Job(
        id=job_id if job_id is not None else store.next_job_id(),
        name="job",
        state=state,
        priority=priority,
        submit_time=submit_time,
        task_count=n_tasks,
        task_counts={TaskState.QUEUED: n_tasks},
    )
    tasks = [
        Task(
            job_id=job.id,
            id=task_id,
            command=f"echo {task_id}",
            priority=priority,
            submit_time=submit_time,
        )
        for task_id in (task_ids or range(1, n_tasks + 1))
    ]
    store.add_job(job, tasks)
    return job, tasks


def keys(tasks: list[Task]) -> list[tuple[int, int]]:
    return [(t.job_id, t.id) for t in tasks]


def same_document(a: Job | Task | Node | NodeGroup, b: Job | Task | Node | NodeGroup) -> bool:
    return a.model_dump(exclude={"etag"}) == b.model_dump(exclude={"etag"})


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
    job, _ = add_job(store, 5000)
    assert [t.id for t in store.list_tasks(job.id, offset=4990, limit=100)] == list(
        range(4991, 5001)
    )
    assert len(store.queued_tasks(limit=10_000)) == 5000


# --- scheduling queries -----------------------------------------------------


def test_queued_tasks_come_in_priority_then_submit_order(store: Store) -> None:
    late_normal, _ = add_job(store, 2, priority=2000, submit_time=T0 + timedelta(seconds=2))
    high, _ = add_job(store, 2, priority=4000, submit_time=T0 + timedelta(seconds=3))
    # Same priority and submit time: the lower job id first, though stored second.
    early_a_id = store.next_job_id()
    early_b, _ = add_job(store, 2, priority=2000, submit_time=T0 + timedelta(microseconds=1))
    early_a, _ = add_job(
        store, 2, priority=2000, submit_time=T0 + timedelta(microseconds=1), job_id=early_a_id
    )
    earliest, _ = add_job(store, 1, priority=2000, submit_time=T0)
    low, _ = add_job(store, 1, priority=0, submit_time=T0 - timedelta(days=1))
    # Task ids stored out of order, to rule out insertion order.
    reversed_ids, _ = add_job(
        store, priority=4000, submit_time=T0 + timedelta(seconds=3), task_ids=[2, 1]
    )
    expected = [
        (high.id, 1), (high.id, 2),
        (reversed_ids.id, 1), (reversed_ids.id, 2),
        (earliest.id, 1),
        (early_a.id, 1), (early_a.id, 2),
        (early_b.id, 1), (early_b.id, 2),
        (late_normal.id, 1), (late_normal.id, 2),
        (low.id, 1),
    ]  # fmt: skip
    assert keys(store.queued_tasks(limit=100)) == expected
    assert keys(store.queued_tasks(limit=3)) == expected[:3]
    assert store.queued_tasks(limit=0) == []


def test_queued_tasks_skip_tasks_in_other_states(store: Store) -> None:
    job, tasks = add_job(store, 3)
    tasks[0].move_to(TaskState.DISPATCHING)
    tasks[0].node = "n1"
    tasks[2].move_to(TaskState.CANCELED)
    store.commit(tasks=[tasks[0], tasks[2]])
    assert keys(store.queued_tasks(limit=10)) == [(job.id, 2)]


def test_queued_tasks_follow_priority_changes_made_by_commit(store: Store) -> None:
    first, _ = add_job(store, 1, priority=2000)
    second, second_tasks = add_job(store, 1, priority=2000)
    second_tasks[0].priority = 4000
    store.commit(tasks=second_tasks)
    assert keys(store.queued_tasks(limit=10)) == [(second.id, 1), (first.id, 1)]


def test_requeued_task_is_queued_again(store: Store) -> None:
    job, tasks = add_job(store, 1)
    tasks[0].move_to(TaskState.DISPATCHING)
    tasks[0].node = "n1"
    store.commit(tasks=tasks)
    assert store.queued_tasks(limit=10) == []
    tasks[0].move_to(TaskState.QUEUED)
    store.commit(tasks=tasks)
    assert keys(store.queued_tasks(limit=10)) == [(job.id, 1)]
    assert store.active_tasks() == []


def test_active_tasks_are_the_dispatching_and_running_tasks_of_a_node(store: Store) -> None:
    job, tasks = add_job(store, 5)
    placements = {1: ("n1", TaskState.DISPATCHING), 2: ("n1", TaskState.RUNNING),
                  3: ("n2", TaskState.RUNNING), 4: ("n1", TaskState.FINISHED)}  # fmt: skip
    for task in tasks:
        if task.id in placements:
            node, state = placements[task.id]
            task.node = node
            task.move_to(TaskState.DISPATCHING)
            if state is not TaskState.DISPATCHING:
                task.move_to(state)
    store.commit(tasks=tasks)
    assert sorted(keys(store.active_tasks(node="n1"))) == [(job.id, 1), (job.id, 2)]
    assert keys(store.active_tasks(node="n2")) == [(job.id, 3)]
    assert store.active_tasks(node="n3") == []
    assert sorted(keys(store.active_tasks())) == [(job.id, 1), (job.id, 2), (job.id, 3)]


def test_finished_task_no_longer_holds_cores(store: Store) -> None:
    job, tasks = add_job(store, 1)
    tasks[0].node = "n1"
    tasks[0].move_to(TaskState.DISPATCHING)
    store.commit(tasks=tasks)
    tasks[0].move_to(TaskState.FINISHED)
    store.commit(tasks=tasks)
    assert store.active_tasks(node="n1") == []


# --- commit: atomic, optimistic ---------------------------------------------


def test_commit_writes_the_job_and_its_tasks_together(store: Store) -> None:
    job, tasks = add_job(store, 2)
    old_etags = [job.etag, *(t.etag for t in tasks)]
    tasks[0].move_to(TaskState.DISPATCHING)
    tasks[0].node = "n1"
    job.move_to(JobState.RUNNING)
    job.count(TaskState.QUEUED, TaskState.DISPATCHING)
    store.commit(job=job, tasks=[tasks[0]])
    assert same_document(store.get_job(job.id), job)
    assert same_document(store.get_task(job.id, 1), tasks[0])
    assert store.get_job(job.id).etag == job.etag != old_etags[0]
    assert store.get_task(job.id, 1).etag == tasks[0].etag != old_etags[1]
    assert tasks[1].etag == old_etags[2]


def test_commit_of_tasks_alone_or_job_alone(store: Store) -> None:
    job, tasks = add_job(store, 2)
    tasks[1].name = "renamed"
    store.commit(tasks=[tasks[1]])
    job.name = "renamed"
    store.commit(job=job)
    assert store.get_task(job.id, 2).name == "renamed"
    assert store.get_job(job.id).name == "renamed"


def test_commit_of_nothing_does_nothing(store: Store) -> None:
    job, _ = add_job(store, 1)
    store.commit()
    assert store.get_job(job.id).etag == job.etag


def test_every_write_gives_a_new_etag(store: Store) -> None:
    job, _ = add_job(store, 0)
    seen = {job.etag}
    for i in range(3):
        job.name = f"v{i}"
        store.commit(job=job)
        assert job.etag not in seen
        seen.add(job.etag)


def test_commit_with_stale_etag_changes_nothing(store: Store) -> None:
    job, tasks = add_job(store, 2)
    rival = store.get_job(job.id)
    rival.name = "rival"
    store.commit(job=rival)
    before = [store.get_job(job.id), *store.list_tasks(job.id)]
    etags = [job.etag, *(t.etag for t in tasks)]

    job.move_to(JobState.RUNNING)
    for task in tasks:
        task.move_to(TaskState.DISPATCHING)
    with pytest.raises(Conflict):
        store.commit(job=job, tasks=tasks)

    after = [store.get_job(job.id), *store.list_tasks(job.id)]
    assert [a.model_dump() for a in after] == [b.model_dump() for b in before]
    assert [job.etag, *(t.etag for t in tasks)] == etags


def test_commit_with_one_stale_task_changes_nothing(store: Store) -> None:
    job, tasks = add_job(store, 3)
    rival = store.get_task(job.id, 3)
    rival.move_to(TaskState.CANCELED)
    store.commit(tasks=[rival])

    job.move_to(JobState.RUNNING)
    for task in tasks:
        task.move_to(TaskState.DISPATCHING)
    with pytest.raises(Conflict):
        store.commit(job=job, tasks=tasks)  # the stale task is the last one written

    assert store.get_job(job.id).state is JobState.QUEUED
    assert [t.state for t in store.list_tasks(job.id)] == [
        TaskState.QUEUED,
        TaskState.QUEUED,
        TaskState.CANCELED,
    ]


def test_second_of_two_writers_with_the_same_copy_loses(store: Store) -> None:
    job, _ = add_job(store, 1)
    mine, theirs = store.get_task(job.id, 1), store.get_task(job.id, 1)
    mine.move_to(TaskState.DISPATCHING)
    mine.node = "n1"
    store.commit(tasks=[mine])
    theirs.move_to(TaskState.CANCELED)
    with pytest.raises(Conflict):
        store.commit(tasks=[theirs])
    assert store.get_task(job.id, 1).state is TaskState.DISPATCHING


def test_commit_of_a_missing_task_conflicts(store: Store) -> None:
    job, tasks = add_job(store, 1)
    ghost = tasks[0].model_copy(update={"id": 2})
    job.name = "changed"
    with pytest.raises(Conflict):
        store.commit(job=job, tasks=[ghost])
    assert store.get_job(job.id).name == "job"


def test_commit_of_a_missing_job_conflicts(store: Store) -> None:
    with pytest.raises(Conflict):
        store.commit(job=Job(id=99, etag="made-up"))
    with pytest.raises(NotFound):
        store.get_job(99)


def test_commit_of_a_record_never_read_conflicts(store: Store) -> None:
    job, _ = add_job(store, 1)
    unread = Task(job_id=job.id, id=1, command="echo 1")
    with pytest.raises(Conflict):
        store.commit(tasks=[unread])


def test_commit_refuses_tasks_of_another_job(store: Store) -> None:
    first, _ = add_job(store, 1)
    _, second_tasks = add_job(store, 1)
    with pytest.raises(ValueError):
        store.commit(job=first, tasks=second_tasks)
    with pytest.raises(ValueError):
        store.commit(tasks=[*store.list_tasks(first.id), *second_tasks])


def test_commit_refuses_more_than_max_batch_documents(store: Store) -> None:
    job, tasks = add_job(store, MAX_BATCH)
    for task in tasks:
        task.name = "renamed"
    with pytest.raises(ValueError):
        store.commit(job=job, tasks=tasks)
    assert {t.name for t in store.list_tasks(job.id)} == {""}
    store.commit(tasks=tasks)  # exactly MAX_BATCH is fine
    assert {t.name for t in store.list_tasks(job.id)} == {"renamed"}


def test_commit_refuses_the_same_task_twice(store: Store) -> None:
    job, tasks = add_job(store, 1)
    with pytest.raises(ValueError):
        store.commit(tasks=[tasks[0], tasks[0]])


# --- copies -------------------------------------------------------------------


def test_returned_records_are_copies(store: Store) -> None:
    job, _ = add_job(store, 1)
    store.put_node(Node(name="n1", cores=4))

    got_job = store.get_job(job.id)
    got_job.name = "changed"
    got_job.node_groups.append("AzureNodes")
    got_task = store.get_task(job.id, 1)
    got_task.env["X"] = "1"
    store.list_tasks(job.id)[0].command = "rm -rf /"
    store.queued_tasks(limit=1)[0].priority = 0
    store.list_jobs()[0].name = "changed"
    node = store.get_node("n1")
    node.cores = 64
    store.list_nodes()[0].groups.append("x")
    store.list_groups()[0].max_nodes = 99

    assert store.get_job(job.id).name == "job"
    assert store.get_job(job.id).node_groups == []
    assert store.get_task(job.id, 1).env == {}
    assert store.get_task(job.id, 1).command == "echo 1"
    assert store.get_task(job.id, 1).priority == 2000
    assert store.get_node("n1").cores == 4
    assert store.get_node("n1").groups == []
    assert all(g.max_nodes == 0 for g in store.list_groups())
    assert store.get_job(job.id) is not store.get_job(job.id)


def test_changing_a_written_record_changes_nothing_stored(store: Store) -> None:
    job, tasks = add_job(store, 1)
    node = Node(name="n1")
    store.put_node(node)
    job.name = tasks[0].command = node.state_reason = "changed after writing"
    assert store.get_job(job.id).name == "job"
    assert store.get_task(job.id, 1).command == "echo 1"
    assert store.get_node("n1").state_reason is None


# --- nodes ------------------------------------------------------------------


def test_put_node_creates_a_node(store: Store) -> None:
    node = Node(name="n1", groups=["OnPremNodes"], cores=8, last_heartbeat=T0)
    store.put_node(node)
    assert node.etag is not None
    got = store.get_node("n1")
    assert same_document(got, node)
    assert got.etag == node.etag


def test_put_node_with_an_existing_name_conflicts(store: Store) -> None:
    store.put_node(Node(name="n1", cores=2))
    duplicate = Node(name="n1", cores=99)
    with pytest.raises(Conflict):
        store.put_node(duplicate)
    assert store.get_node("n1").cores == 2
    assert duplicate.etag is None


def test_put_node_replaces_with_a_matching_etag(store: Store) -> None:
    store.put_node(Node(name="n1"))
    node = store.get_node("n1")
    old_etag = node.etag
    node.move_to(NodeState.ONLINE, reason="heartbeat")
    store.put_node(node)
    assert node.etag != old_etag
    assert store.get_node("n1").state is NodeState.ONLINE
    assert store.get_node("n1").etag == node.etag


def test_put_node_with_stale_etag_changes_nothing(store: Store) -> None:
    store.put_node(Node(name="n1"))
    mine, theirs = store.get_node("n1"), store.get_node("n1")
    theirs.move_to(NodeState.STARTING)
    store.put_node(theirs)
    mine.move_to(NodeState.ONLINE)
    stale_etag = mine.etag
    with pytest.raises(Conflict):
        store.put_node(mine)
    assert store.get_node("n1").state is NodeState.STARTING
    assert mine.etag == stale_etag


def test_put_node_of_a_deleted_node_conflicts(store: Store) -> None:
    store.put_node(Node(name="n1"))
    node = store.get_node("n1")
    store.delete_node(store.get_node("n1"))
    with pytest.raises(Conflict):
        store.put_node(node)
    with pytest.raises(NotFound):
        store.get_node("n1")


def test_get_node_of_unknown_name_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_node("nope")


def test_list_nodes_is_by_name(store: Store) -> None:
    for name in ("b", "c", "a"):
        store.put_node(Node(name=name))
    assert [n.name for n in store.list_nodes()] == ["a", "b", "c"]


def test_delete_node_removes_it(store: Store) -> None:
    store.put_node(Node(name="n1"))
    store.put_node(Node(name="n2"))
    store.delete_node(store.get_node("n1"))
    assert [n.name for n in store.list_nodes()] == ["n2"]


def test_delete_node_with_stale_etag_conflicts_and_keeps_it(store: Store) -> None:
    store.put_node(Node(name="n1"))
    stale = store.get_node("n1")
    fresh = store.get_node("n1")
    fresh.cores = 2
    store.put_node(fresh)
    with pytest.raises(Conflict):
        store.delete_node(stale)
    assert store.get_node("n1").cores == 2


def test_delete_node_of_unknown_name_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.delete_node(Node(name="nope", etag="made-up"))


# --- node groups ------------------------------------------------------------


def test_default_groups_exist_from_the_start(store: Store) -> None:
    assert [g.name for g in store.list_groups()] == sorted(g.name for g in DEFAULT_GROUPS)
    assert all(g.etag is not None for g in store.list_groups())


def test_default_groups_are_created_once(open_store: OpenStore) -> None:
    first = open_store()
    azure = next(g for g in first.list_groups() if g.name == "AzureNodes")
    azure.max_nodes = 10
    first.put_group(azure)
    second = open_store()
    assert [g.name for g in second.list_groups()] == ["AzureNodes", "OnPremNodes"]
    assert next(g for g in second.list_groups() if g.name == "AzureNodes").max_nodes == 10


def test_put_group_creates_and_lists_groups_by_name(store: Store) -> None:
    group = NodeGroup(name="Gpu", min_nodes=1, max_nodes=4)
    store.put_group(group)
    assert group.etag is not None
    assert [g.name for g in store.list_groups()] == ["AzureNodes", "Gpu", "OnPremNodes"]
    got = next(g for g in store.list_groups() if g.name == "Gpu")
    assert same_document(got, group)
    assert got.etag == group.etag


def test_put_group_with_an_existing_name_conflicts(store: Store) -> None:
    with pytest.raises(Conflict):
        store.put_group(NodeGroup(name="AzureNodes", max_nodes=5))
    assert all(g.max_nodes == 0 for g in store.list_groups())


def test_put_group_with_stale_etag_changes_nothing(store: Store) -> None:
    mine = next(g for g in store.list_groups() if g.name == "AzureNodes")
    theirs = mine.model_copy()
    theirs.max_nodes = 3
    store.put_group(theirs)
    mine.max_nodes = 7
    with pytest.raises(Conflict):
        store.put_group(mine)
    assert next(g for g in store.list_groups() if g.name == "AzureNodes").max_nodes == 3
    mine = next(g for g in store.list_groups() if g.name == "AzureNodes")
    mine.max_nodes = 7
    store.put_group(mine)
    assert next(g for g in store.list_groups() if g.name == "AzureNodes").max_nodes == 7


# --- tokens -------------------------------------------------------------------


def test_token_is_found_by_its_digest(store: Store) -> None:
    digest = "ab" * 32
    store.add_token(digest, Principal(name="alice", role="user"))
    assert store.find_token(digest) == Principal(name="alice", role="user")


def test_unknown_token_finds_nobody(store: Store) -> None:
    store.add_token("ab" * 32, Principal(name="alice"))
    assert store.find_token("cd" * 32) is None


# --- several instances --------------------------------------------------------


def test_a_second_instance_sees_writes_and_checks_the_same_etags(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    job, tasks = add_job(first, 1)
    assert same_document(second.get_task(job.id, 1), tasks[0])
    theirs = second.get_job(job.id)
    theirs.name = "second"
    second.commit(job=theirs)
    job.name = "first"
    with pytest.raises(Conflict):
        first.commit(job=job)
    assert first.get_job(job.id).name == "second"


def test_a_store_is_usable_from_many_threads(store: Store) -> None:
    job, _ = add_job(store, 8)
    errors: list[BaseException] = []

    def work(task_id: int) -> None:
        try:
            task = store.get_task(job.id, task_id)
            task.node = f"n{task_id}"
            task.move_to(TaskState.DISPATCHING)
            store.commit(tasks=[task])
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.active_tasks()) == 8


# --- SQLite adapter only: the scheduler's queries are index scans -------------


def test_sqlite_scheduler_queries_use_their_indexes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    con = store._con()  # the adapter's own connection, to capture its SQL
    statements: list[str] = []
    con.set_trace_callback(statements.append)
    store.queued_tasks(limit=10)
    store.active_tasks(node="n1")
    store.active_tasks()
    con.set_trace_callback(None)
    assert len(statements) == 3
    for sql in statements:
        plan = " | ".join(row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX tasks_" in plan, (sql, plan)
        assert "TEMP B-TREE" not in plan, (sql, plan)
    store.close()
