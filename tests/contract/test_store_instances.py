"""The Store contract, sharing: several instances on one storage, many threads on one."""

from __future__ import annotations

import threading

import pytest

from shared.domain.states import TaskState
from shared.errors import Conflict
from shared.ports.store import Store
from tests.contract.store_fixtures import OpenStore, add_job, same_document

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
