"""The Store contract, ``commit``: atomic and optimistic (etags), and reads that are copies."""

from __future__ import annotations

import pytest

from shared.domain.cluster import Node
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, NotFound
from shared.ports.store import MAX_BATCH, Store
from tests.contract.store_fixtures import add_job, same_document

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
