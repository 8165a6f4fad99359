"""What the Store contract suites share: the ``open_store`` and ``store`` fixtures (registered
by tests/contract/conftest.py) and helpers to add jobs and compare documents.

``open_store`` is the one place that knows the adapters: it is parametrized by backend
name and opens a Store on fresh, empty storage (more than one instance on the same
storage when a test asks twice). A new adapter is one more entry in ``BACKENDS``; every
test of the tests/contract/test_store_*.py suites then runs against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters.sqlite_store import SqliteStore
from shared.domain.cluster import Node, NodeGroup
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.ports.store import Store
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
