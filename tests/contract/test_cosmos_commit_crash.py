"""A kill -9 mid-commit on the Cosmos stand-in (no transactional batch): the fallback writes
one document at a time, so a crash after any write must leave a state that the next commit
of the job, or the reconciler, completes or undoes as a whole. A probe lost a sweep task
for good: its range's cursor and the job's counts had moved, the task was never created.

The crash is a wrapped container that raises after its k-th write (every k), with an
exception no handler catches (as a killed process runs none)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters import cosmos_intent as intent
from shared.adapters.cosmos_store import CosmosStore
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import TaskRange
from tests.contract.store_fixtures import T0
from tests.contract.test_store_ranges import sweep_job
from tests.emulators import COSMOS_KEY, cosmos_database_name, drop_cosmos_database

pytestmark = pytest.mark.cosmos

SWEEP, TAKEN = 6, 3
Q, D = TaskState.QUEUED, TaskState.DISPATCHING


class Killed(BaseException):
    """The process died here (no except clause of the store catches it)."""


class Dying:
    """The jobs container, dying after ``writes`` writes."""

    def __init__(self, real: Any, writes: int) -> None:
        self._real, self._left, self.written = real, writes, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in ("create_item", "replace_item", "upsert_item", "delete_item"):
            return attr

        def write(*args: Any, **kwargs: Any) -> Any:
            if self._left == 0:
                raise Killed
            self._left -= 1
            self.written += 1
            return attr(*args, **kwargs)

        return write


@pytest.fixture
def open_cosmos(cosmos_endpoint: str, tmp_path: Path) -> Iterator[Any]:
    opened: list[CosmosStore] = []

    def open_() -> CosmosStore:
        store = CosmosStore(cosmos_endpoint, COSMOS_KEY, cosmos_database_name(tmp_path))
        assert store.batch is False  # the stand-in: the fallback is what is tested
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    drop_cosmos_database(tmp_path)


def take(store: CosmosStore, job_id: int, n: int, node: str) -> tuple[Job, list[Task], TaskRange]:
    """What a scheduler pass commits: n tasks created from the range's cursor, Dispatching,
    the range advanced, the job Running with its counts moved."""
    job, (r,) = store.get_job(job_id), store.get_ranges(job_id)
    tasks = []
    for _ in range(n):
        task = r.task(r.first_id + r.cursor)
        task.move_to(D, now=T0)
        task.node = node
        r.advance()
        job.count(Q, D, name=task.name)
        tasks.append(task)
    if job.state is JobState.QUEUED:
        job.move_to(JobState.RUNNING, now=T0)
    return job, tasks, r


def assert_whole(store: CosmosStore, job_id: int) -> None:
    """Every task exists once or is still the range's; the counts say what the tasks are."""
    job, (r,) = store.get_job(job_id), store.get_ranges(job_id)
    stored = store.list_tasks(job_id, limit=1000)
    ids = [t.id for t in stored]
    assert ids == list(range(r.first_id, r.first_id + r.cursor)), (ids, r.cursor)
    assert len(ids) + r.left == SWEEP
    want = {Q: r.left} if r.left else {}
    for task in stored:
        want[task.state] = want.get(task.state, 0) + 1
    assert {s: n for s, n in job.task_counts.items() if n} == want
    assert (job.state is JobState.RUNNING) == bool(stored)


def crash_at(open_cosmos: Any, k: int, *, first: bool) -> tuple[CosmosStore, int, bool]:
    """Add a sweep, commit a take of TAKEN tasks that dies after k writes; the job and
    whether the commit got through."""
    store = open_cosmos()
    job, _, _ = sweep_job(store, SWEEP)
    if not first:  # a commit of a job that is already Running (counts only: a tally)
        running, born, r = take(store, job.id, 1, "n0")
        store.commit(job=running, tasks=born, ranges=[r])
    job, tasks, r = take(store, job.id, TAKEN, "n1")
    dying = Dying(store._jobs, k)
    store._jobs = dying  # type: ignore[assignment]
    try:
        store.commit(job=job, tasks=tasks, ranges=[r])
        done = True
    except Killed:
        done = False
    store._jobs = dying._real
    store.close()
    return open_cosmos(), job.id, done


@pytest.mark.parametrize("first", [True, False], ids=["job-replaced", "counts-only"])
def test_a_crash_after_any_write_of_a_commit_is_finished_by_the_reconciler(
    open_cosmos: Any, first: bool
) -> None:
    for k in range(0, 20):
        store, job_id, done = crash_at(open_cosmos, k, first=first)
        finished = store.finish_commits(older_than_s=0)
        assert_whole(store, job_id)
        assert finished == (0 if done else int(k > 0)), k  # (k = 0: died before its record)
        assert store.finish_commits(older_than_s=0) == 0
        if done:
            return
    raise AssertionError("the commit never got through 20 writes")


def test_a_crash_mid_commit_is_finished_by_the_next_commit_and_nothing_is_lost(
    open_cosmos: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's case: the next scheduler pass takes more tasks from the range."""
    monkeypatch.setattr(intent, "STALE_S", 0.0)
    for k in range(1, 5):  # after the record and 0..3 of the commit's writes
        store, job_id, done = crash_at(open_cosmos, k, first=True)
        assert not done
        job, tasks, r = take(store, job_id, 2, "n2")  # reads the half-done state
        try:
            store.commit(job=job, tasks=tasks, ranges=[r])
        except Exception:  # (it read the half-done state: it conflicts, and reads again)
            job, tasks, r = take(store, job_id, 2, "n2")
            store.commit(job=job, tasks=tasks, ranges=[r])
        assert_whole(store, job_id)
        everything = [t.id for t in store.list_tasks(job_id, limit=1000)]
        assert len(everything) in (2, 2 + TAKEN) and len(set(everything)) == len(everything)
