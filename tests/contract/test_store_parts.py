"""The Store contract for writes Cosmos DB cannot make in one request, on every adapter (the
fixtures of ``store_fixtures.py``: SQLite, and Cosmos on the local stand-in):

- ``add_job`` in parts: a job is visible only after its final write; a crash between the
  parts (the ``add_job_fault`` switch) leaves nothing any read returns, and
  ``purge_unfinished_jobs`` deletes what it left.
- Byte budgets: a document over MAX_DOCUMENT_BYTES, or a commit over MAX_BATCH_BYTES, is
  refused with ValueError and nothing is written; ``add_job`` splits by bytes as well.
- Times sort as times whatever their precision or UTC offset.
- ``list_jobs`` pages with a continuation (``before``), not an offset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.domain.cluster import Meta
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict, NotFound
from shared.ports.store import MAX_BATCH_BYTES, MAX_DOCUMENT_BYTES, Store, stored_size
from tests.contract.store_fixtures import T0, add_job, keys


class Crash(BaseException):
    """A process dying mid-call: not an Exception, so no clean-up code catches it."""


def big_job(store: Store, n_tasks: int = 250, *, priority: int = 4000) -> tuple[Job, list, list]:
    """An unsaved job of ``n_tasks`` queued tasks and one sweep range after them."""
    job = Job(
        id=store.next_job_id(),
        state=JobState.QUEUED,
        priority=priority,
        submit_time=T0,
        task_count=n_tasks + 10,
        task_counts={TaskState.QUEUED: n_tasks + 10},
    )
    tasks = [
        Task(job_id=job.id, id=i, command=f"echo {i}", priority=priority, submit_time=T0)
        for i in range(1, n_tasks + 1)
    ]
    template = Task(
        job_id=job.id, id=n_tasks + 1, command="run *", priority=priority, submit_time=T0
    )
    ranges = [TaskRange(job_id=job.id, first_id=n_tasks + 1, count=10, start=0, template=template)]
    return job, tasks, ranges


def crash_at(call: int, error: BaseException | None = None):
    """A fault switch that raises on its ``call``-th call (1 = after the first part)."""
    calls = []

    def fault(written: int) -> None:
        calls.append(written)
        if len(calls) == call:
            raise error if error is not None else Crash(f"crashed after {written} documents")

    return fault


def assert_nothing_seen(store: Store, job_id: int) -> None:
    with pytest.raises(NotFound):
        store.get_job(job_id)
    assert job_id not in [j.id for j in store.list_jobs(limit=1000)]
    assert job_id not in [t.job_id for t in store.queued_tasks(limit=1000)]
    assert job_id not in [r.job_id for r in store.open_ranges(limit=1000)]
    assert job_id not in [t.job_id for t in store.active_tasks()]


@pytest.mark.parametrize("call", [1, 2])
def test_a_crash_between_the_parts_of_add_job_is_never_seen_and_is_purged(
    store: Store, call: int
) -> None:
    visible, _ = add_job(store, 2, priority=1000)
    job, tasks, ranges = big_job(store)
    store.add_job_fault = crash_at(call)
    with pytest.raises(Crash):
        store.add_job(job, tasks, ranges)
    store.add_job_fault = None
    assert_nothing_seen(store, job.id)
    # The crashed job's 250 high-priority tasks do not crowd the window out either.
    assert keys(store.queued_tasks(limit=2)) == [(visible.id, 1), (visible.id, 2)]
    assert store.open_ranges(limit=1) == []
    store.purge_unfinished_jobs(T0 + timedelta(hours=1))
    assert store.list_tasks(job.id) == [] and store.get_ranges(job.id) == []
    store.add_job(job, tasks, ranges)  # the id is free again: nothing of it was left
    assert store.get_job(job.id).task_count == 260
    assert [j.id for j in store.list_jobs()] == [job.id, visible.id]
    assert store.purge_unfinished_jobs(T0 + timedelta(hours=1)) == 0  # visible jobs stay
    assert len(store.list_tasks(job.id)) == 250


def test_an_error_between_the_parts_of_add_job_stores_nothing(store: Store) -> None:
    job, tasks, ranges = big_job(store)
    store.add_job_fault = crash_at(1, RuntimeError("the network went away"))
    with pytest.raises(RuntimeError, match="network"):
        store.add_job(job, tasks, ranges)
    store.add_job_fault = None
    assert_nothing_seen(store, job.id)
    assert store.list_tasks(job.id) == [] and store.get_ranges(job.id) == []
    store.add_job(job, tasks, ranges)  # cleaned up at once: no purge needed
    assert len(store.list_tasks(job.id)) == 250


def test_add_job_calls_its_fault_switch_between_parts(store: Store) -> None:
    job, tasks, ranges = big_job(store)
    seen: list[int] = []
    store.add_job_fault = seen.append
    store.add_job(job, tasks, ranges)
    assert seen and seen == sorted(seen) and seen[-1] <= 252


# --- byte budgets ------------------------------------------------------------------


def test_a_document_over_the_size_limit_is_refused_and_nothing_is_written(store: Store) -> None:
    job = Job(id=store.next_job_id(), state=JobState.QUEUED, submit_time=T0, task_count=2)
    huge = Task(job_id=job.id, id=2, command="x" * MAX_DOCUMENT_BYTES)
    with pytest.raises(ValueError, match=r"task \d+\.2 would be .* at most 2,000,000"):
        store.add_job(job, [Task(job_id=job.id, id=1, command="ok"), huge])
    assert_nothing_seen(store, job.id)
    assert store.list_tasks(job.id) == []
    with pytest.raises(ValueError, match="at most 2,000,000"):
        store.put_meta(Meta(key="big", data={"log": "x" * MAX_DOCUMENT_BYTES}))
    with pytest.raises(NotFound):
        store.get_meta("big")


def test_commit_refuses_a_document_over_the_size_limit(store: Store) -> None:
    job, (task, *_) = add_job(store, 1)
    task.command = "é" * (MAX_DOCUMENT_BYTES // 6)  # short in characters, not in bytes
    with pytest.raises(ValueError, match="would be"):
        store.commit(job=job, tasks=[task])
    assert store.get_task(job.id, task.id).command == "echo 1"


def test_a_commit_over_the_byte_budget_is_refused_and_nothing_is_written(store: Store) -> None:
    job, tasks = add_job(store, 3)
    before = [t.etag for t in tasks]
    for task in tasks:
        task.command = "y" * (MAX_BATCH_BYTES // 3 + 1000)
    with pytest.raises(ValueError, match="commit writes at most 2,000,000 bytes"):
        store.commit(job=job, tasks=tasks)
    assert [t.command for t in store.list_tasks(job.id)] == ["echo 1", "echo 2", "echo 3"]
    assert [t.etag for t in tasks] == before
    store.commit(tasks=tasks[:2])  # two fit
    assert store.get_task(job.id, 2).command == tasks[1].command


def test_add_job_of_more_bytes_than_a_batch_is_stored_whole(store: Store) -> None:
    job = Job(id=store.next_job_id(), state=JobState.QUEUED, submit_time=T0, task_count=4)
    tasks = [Task(job_id=job.id, id=i, command=str(i) * 700_000) for i in range(1, 5)]
    assert sum(stored_size(t) for t in tasks) > MAX_BATCH_BYTES
    store.add_job(job, tasks)
    assert [len(t.command) for t in store.list_tasks(job.id)] == [700_000] * 4


def test_stored_size_counts_non_ascii_characters_as_their_escapes() -> None:
    ascii_task = Task(job_id=1, id=1, command="ab")
    other = Task(job_id=1, id=1, command="aé")  # é is \u00e9: 6 bytes where a is 1
    far = Task(job_id=1, id=1, command="a\U0001f600")  # a surrogate pair: 12 bytes
    assert stored_size(other) == stored_size(ascii_task) + 5
    assert stored_size(far) == stored_size(ascii_task) + 11


# --- times ---------------------------------------------------------------------------


def test_times_of_mixed_precision_and_offset_sort_as_times(store: Store) -> None:
    """ISO strings would put 12:00:00Z after 12:00:00.5Z ('.' < 'Z') and misplace +02:00."""
    plus2 = timezone(timedelta(hours=2))
    times = [
        T0 + timedelta(seconds=1),  # 12:00:01Z (no fraction)
        T0 + timedelta(microseconds=123456),  # 12:00:00.123456Z
        datetime(2025, 1, 1, 14, 0, 0, 900000, tzinfo=plus2),  # 12:00:00.9Z
        T0,  # 12:00:00Z
        T0 + timedelta(milliseconds=500),  # 12:00:00.5Z
    ]
    jobs = [add_job(store, 1, submit_time=t)[0] for t in times]
    expected = [jobs[i].id for i in (3, 1, 4, 2, 0)]
    assert [t.job_id for t in store.queued_tasks(limit=10)] == expected
    for job, when in zip(jobs, times, strict=True):
        assert store.get_job(job.id).submit_time == when
        assert store.get_task(job.id, 1).submit_time.astimezone(UTC) == when.astimezone(UTC)


def test_open_ranges_sort_by_time_whatever_the_precision(store: Store) -> None:
    order = []
    for when in (T0 + timedelta(seconds=1), T0 + timedelta(microseconds=1), T0):
        job = Job(id=store.next_job_id(), state=JobState.QUEUED, submit_time=when)
        template = Task(job_id=job.id, id=1, command="run *", submit_time=when)
        store.add_job(
            job, [], [TaskRange(job_id=job.id, first_id=1, count=2, start=0, template=template)]
        )
        order.append(job.id)
    assert [r.job_id for r in store.open_ranges(limit=10)] == order[::-1]


# --- paging ---------------------------------------------------------------------------


def test_list_jobs_pages_with_a_continuation(store: Store) -> None:
    ids = [add_job(store, 0, state=s)[0].id for s in [JobState.QUEUED, JobState.RUNNING] * 3]
    assert [j.id for j in store.list_jobs(limit=4)] == ids[::-1][:4]
    assert [j.id for j in store.list_jobs(limit=4, before=ids[2])] == [ids[1], ids[0]]
    assert store.list_jobs(limit=4, before=ids[0]) == []
    queued = store.list_jobs(states=[JobState.QUEUED], limit=2, before=ids[4])
    assert [j.id for j in queued] == [ids[2], ids[0]]


def test_an_add_job_of_an_existing_id_still_conflicts(store: Store) -> None:
    job, tasks = add_job(store, 2)
    with pytest.raises(Conflict):
        store.add_job(job.model_copy(update={"etag": None}), [])
    assert store.get_job(job.id).task_count == 2
