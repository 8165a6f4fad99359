"""Job counts move as deltas (Store.commit): the decisions the job's etag used to serialize.

Task events commit their job's counts without checking the job's etag, so two last task
ends may commit side by side from the same stale read; the job must still close, once
(shared.usecases.settling), and the reconciler closes any the use cases missed. A dispatch
decided from a read taken before a cancel must not leave a task running.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.messages import RunTask
from shared.domain.models import Job
from shared.domain.states import JobState, TaskState
from shared.ports.store import Store
from shared.usecases import cancel, settling
from tests.test_control import Clock, make_cp, register


class StaleJobs:
    """The store, except that get_job returns a copy of ``stale`` (a read taken before) for
    as many calls as ``plan`` says True, in turn; every commit that writes the job's own
    fields is recorded."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.stale: Job | None = None
        self.plan: list[bool] = []
        self.job_writes: list[JobState] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def get_job(self, job_id: int) -> Job:
        if self.plan and self.plan.pop(0) and self.stale is not None:
            return self.stale.model_copy(deep=True)
        return self.store.get_job(job_id)

    def commit(self, *, job: Job | None = None, **kw: Any) -> None:
        full = job is not None and not job.counts_only()
        self.store.commit(job=job, **kw)
        if full and job is not None:
            self.job_writes.append(job.state)


@pytest.fixture
def cp(tmp_path):
    return make_cp(tmp_path, Clock())


def _two_running(cp: Any) -> tuple[Any, Job, list[RunTask], StaleJobs]:
    n1 = register(cp, "n1", cores=2)
    job = cp.submit({"name": "j", "tasks": [{"command": "a"}, {"command": "b"}]})
    cp.schedule_pass()
    runs = n1.runs()
    n1.send(*[n1.started(r) for r in runs])
    stale = StaleJobs(cp.deps.store)
    cp.deps.store = stale
    stale.stale = stale.store.get_job(job.id)  # both tasks Running, as both units will read
    return n1, job, runs, stale


def test_two_last_task_ends_from_the_same_stale_read_both_commit_and_the_job_finishes_once(
    cp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n1, job, runs, stale = _two_running(cp)
    deferred: list[int] = []
    settle = settling.settle
    monkeypatch.setattr(settling, "settle", lambda _deps, job_id: deferred.append(job_id))
    stale.plan = [True, True]  # each unit reads the job with the other task still running
    n1.send(n1.ended(runs[0]))
    n1.send(n1.ended(runs[1]))
    assert [t.state for t in cp.store.list_tasks(job.id)] == [TaskState.FINISHED] * 2
    fresh = cp.store.get_job(job.id)
    assert (fresh.state, fresh.task_counts) == (JobState.RUNNING, {TaskState.FINISHED: 2})
    assert deferred == [job.id, job.id]  # neither could settle from its own read
    for job_id in deferred:  # both settle afterwards, in turn: the second finds it closed
        settle(cp.deps, job_id)
    assert cp.store.get_job(job.id).state is JobState.FINISHED
    assert stale.job_writes == [JobState.FINISHED]


def test_a_task_end_settles_the_job_from_a_fresh_read(cp: Any) -> None:
    n1, job, runs, stale = _two_running(cp)
    stale.plan = [True, False, True, False]  # each unit's read is stale, settling's fresh
    n1.send(n1.ended(runs[0]))
    n1.send(n1.ended(runs[1]))  # its stale read says task 1 runs; the re-read says not
    assert cp.store.get_job(job.id).state is JobState.FINISHED
    assert stale.job_writes == [JobState.FINISHED]


def test_the_reconciler_settles_a_job_whose_counts_say_every_task_ended(
    cp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    n1, job, runs, stale = _two_running(cp)
    monkeypatch.setattr(settling, "settle", lambda *_a: None)  # a crash before settling
    stale.plan = [True, True]
    n1.send(n1.ended(runs[0]))
    n1.send(n1.ended(runs[1], exit_code=3))
    assert cp.store.get_job(job.id).state is JobState.RUNNING
    cp.reconcile()
    settled = cp.store.get_job(job.id)
    assert settled.state is JobState.FAILED
    assert settled.error == "1 of 2 tasks failed"
    cp.reconcile()
    assert stale.job_writes == [JobState.FAILED]


def test_a_dispatch_decided_before_a_cancel_leaves_no_task_running(cp: Any) -> None:
    n1 = register(cp, "n1", cores=2)
    job = cp.submit({"name": "j", "tasks": [{"command": "a"}, {"command": "b", "sweep": "1-3"}]})
    store = cp.deps.store

    class CancelMidPass(StaleJobs):
        armed = True

        def get_job(self, job_id: int) -> Job:
            read = self.store.get_job(job_id)
            if self.armed:  # the pass read the job; a cancel lands before its commit
                self.armed = False
                cancel.cancel_job(cp.deps, job_id)
            return read

    cp.deps.store = CancelMidPass(store)
    cp.schedule_pass()
    cp.deps.store = store
    sent = n1.assignments()
    started = {(a.job_id, a.task_id) for a in sent if isinstance(a, RunTask)}
    assert started == set()
    tasks = cp.list_tasks(job.id)
    assert {t.state for t in tasks} == {TaskState.CANCELED}
    assert cp.store.get_job(job.id).state is JobState.CANCELED
