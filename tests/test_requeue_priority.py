"""A task back in the queue takes its job's priority now, and a requeue of a task reopens its
ended job as the job's own requeue does (a probe: after `hpc job modify --priority Lowest`, a
requeued task kept Normal and started before a Normal job's; a task requeue left the ended
job's old start, so its jobRuntimeLimit canceled the job before the task ran)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import lifecycle
from shared.domain.lifecycle.tasks import requeued_priority
from shared.domain.messages import AssignmentRefused
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LOWEST, NORMAL, HIGHEST = 0, 2000, 4000


def task(state: TaskState, priority: int = NORMAL) -> Task:
    active = state in (TaskState.DISPATCHING, TaskState.RUNNING)
    return Task(
        job_id=1,
        id=1,
        command="x",
        state=state,
        attempt=1,
        priority=priority,
        node="n1" if active else None,
        incarnation=3 if active else None,
    )


@pytest.mark.parametrize(
    ("copy", "job", "expected"),
    [
        (NORMAL, LOWEST, LOWEST),  # the job was lowered while the task ran
        (NORMAL, HIGHEST, HIGHEST),  # raised
        (NORMAL, NORMAL, NORMAL),
        (LOWEST, None, LOWEST),  # the job's is not known here: the copy stays
    ],
)
def test_the_rule(copy: int, job: int | None, expected: int) -> None:
    assert requeued_priority(task(TaskState.RUNNING, copy), job) == expected


@pytest.mark.parametrize("state", [TaskState.FAILED, TaskState.CANCELED])
def test_a_rerun_takes_the_jobs_priority(state: TaskState) -> None:
    t = task(state, NORMAL)
    assert lifecycle.rerun(t, NOW, priority=LOWEST) is not None
    assert t.state is TaskState.QUEUED and t.priority == LOWEST


@pytest.mark.parametrize("state", [TaskState.DISPATCHING, TaskState.RUNNING])
def test_a_lost_attempts_requeue_takes_the_jobs_priority(state: TaskState) -> None:
    t = task(state, NORMAL)
    change = lifecycle.lose_attempt(
        t, max_retries=3, canceling=False, reason="lost", count=True, now=NOW, priority=LOWEST
    )
    assert change is not None and t.state is TaskState.QUEUED and t.priority == LOWEST


def test_a_lost_attempt_that_fails_or_is_canceled_keeps_its_priority() -> None:
    """Only a task back in the queue is reordered: an ended one shows what it ran at."""
    failed = task(TaskState.RUNNING, NORMAL)
    lifecycle.lose_attempt(
        failed, max_retries=0, canceling=False, reason="lost", count=True, now=NOW, priority=0
    )
    canceled = task(TaskState.RUNNING, NORMAL)
    lifecycle.lose_attempt(
        canceled, max_retries=3, canceling=True, reason="lost", count=True, now=NOW, priority=0
    )
    assert (failed.state, failed.priority) == (TaskState.FAILED, NORMAL)
    assert (canceled.state, canceled.priority) == (TaskState.CANCELED, NORMAL)


def test_a_refused_assignments_requeue_takes_the_jobs_priority() -> None:
    t = task(TaskState.DISPATCHING, NORMAL)
    refused = AssignmentRefused(
        node="n1", incarnation=4, job_id=1, task_id=1, attempt=1, meant_for=3, reason="old"
    )
    assert lifecycle.assignment_refused(t, refused, NOW, priority=HIGHEST) is not None
    assert t.state is TaskState.QUEUED and t.priority == HIGHEST


def job(state: JobState) -> Job:
    j = Job(id=1, name="j", owner="u", state=state, submit_time=NOW - timedelta(hours=1))
    j.start_time = NOW - timedelta(minutes=30)
    j.error = "job runtime limit 0:00:10 exceeded" if state is JobState.CANCELED else None
    return j


@pytest.mark.parametrize(
    ("state", "reopened"),
    [
        (JobState.FAILED, True),
        (JobState.CANCELED, True),
        (JobState.RUNNING, False),  # not ended: nothing to reopen, its start stays
        (JobState.QUEUED, False),
        (JobState.FINISHED, False),  # nothing of it runs again
    ],
)
def test_reopening_a_job_clears_its_start(state: JobState, reopened: bool) -> None:
    j = job(state)
    assert lifecycle.reopen_job(j, NOW) is reopened
    assert (j.start_time is None) is reopened
    assert (j.state is JobState.QUEUED) is (reopened or state is JobState.QUEUED)
    if reopened:
        assert j.error is None


# --- through the control plane (embedded store and bus, an agent double, a hand clock) ----

from tests.test_control import clock, cp, register  # noqa: E402,F401 - fixtures


def test_a_task_requeued_after_its_job_was_lowered_waits_behind_a_normal_job(cp, clock):  # noqa: F811
    """The probe's steps: X lowered to Lowest while its task 1 was Canceled; the task
    requeued; a Normal job Y submitted. Y must start first."""
    agent = register(cp, "n1", cores=1)
    x = cp.submit({"command": "w", "sweep": "1-2", "nodeGroups": ["OnPremNodes"]})
    cp.cancel_task(x.id, 1)
    cp.set_priority(x.id, "Lowest")
    requeued = cp.requeue_task(x.id, 1).task
    assert requeued.priority == LOWEST
    y = cp.submit({"command": "w", "nodeGroups": ["OnPremNodes"]})
    assert cp.schedule_pass() == 1
    assert [(r.job_id, r.task_id) for r in agent.runs()] == [(y.id, 1)]


def test_tasks_requeued_from_an_offline_node_take_the_jobs_new_priority(cp, clock):  # noqa: F811
    agent = register(cp, "n1", cores=2)
    x = cp.submit({"command": "w", "sweep": "1-2", "nodeGroups": ["OnPremNodes"]})
    assert cp.schedule_pass() == 2
    for run in agent.runs():
        agent.send(agent.started(run))
    cp.set_priority(x.id, "Lowest")  # both run: neither was reordered
    assert {t.priority for t in cp.list_tasks(x.id)} == {NORMAL}
    cp.node_action("offline", ["n1"])
    queued = [t for t in cp.list_tasks(x.id) if t.state is TaskState.QUEUED]
    assert len(queued) == 2 and {t.priority for t in queued} == {LOWEST}


def test_a_task_requeue_reopens_its_job_with_its_runtime_limit_from_the_new_start(cp, clock):  # noqa: F811
    """The probe's steps: a job with jobRuntimeLimit 10 s Failed (one task failed), then
    `hpc task requeue` of that task: the job was canceled for the old start's limit at the
    reconciler's next run, the task never run."""
    agent = register(cp, "n1", cores=2)
    job = cp.submit(
        {"command": "w", "sweep": "1-2", "nodeGroups": ["OnPremNodes"], "jobRuntimeLimit": 10}
    )
    assert cp.schedule_pass() == 2
    one, two = agent.runs()
    for run in (one, two):
        agent.send(agent.started(run))
    clock.advance(3)
    agent.send(agent.ended(one, exit_code=0))
    agent.send(agent.ended(two, exit_code=5))
    assert cp.get_job(job.id).state is JobState.FAILED
    clock.advance(60)
    cp.requeue_task(job.id, two.task_id)
    reopened = cp.get_job(job.id)
    assert reopened.state is JobState.QUEUED and reopened.start_time is None
    cp.reconcile()
    assert cp.get_job(job.id).state is JobState.QUEUED  # not canceled for the old run
    assert cp.schedule_pass() == 1
    [again] = agent.runs()
    agent.send(agent.started(again))
    agent.send(agent.ended(again, exit_code=0))
    assert cp.get_job(job.id).state is JobState.FINISHED
