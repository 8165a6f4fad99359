"""A canceled task or job says who canceled it (HPC Pack's "canceled by user", Slurm's
"CANCELLED by"), or why the cluster did: the lifecycle keeps the reason while the agent
kills a running task, and a requeue clears it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain import lifecycle
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.usecases.cancel import cancel_job
from shared.usecases.control_plane import ControlPlane
from tests.test_control import Clock, make_cp, register, sweep

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def cp(tmp_path) -> ControlPlane:
    return make_cp(tmp_path, Clock())


@pytest.mark.parametrize(
    ("state", "reason", "error_now"),
    [
        (TaskState.QUEUED, "canceled by ann", "canceled by ann"),
        (TaskState.QUEUED, None, None),
        (TaskState.RUNNING, "canceled by ann", "canceled by ann"),
        (TaskState.RUNNING, None, None),
    ],
)
def test_cancel_records_its_reason(state, reason, error_now):
    task = Task(job_id=1, id=1, command="x", state=state, node="n1", incarnation=1)
    assert lifecycle.cancel(task, T0, reason) is not None
    assert task.error == error_now


def test_a_running_task_keeps_who_canceled_it_once_its_agent_killed_it(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit({"tasks": [{"command": "sleep 60"}]})
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    cp.cancel_task(job.id, 1, by="ann")
    n1.send(n1.ended(run, exit_code=-15, canceled=True))
    task = cp.get_task(job.id, 1)
    assert (task.state, task.error) == (TaskState.CANCELED, "canceled by ann")
    requeued = cp.requeue_task(job.id, 1).task
    assert (requeued.state, requeued.error) == (TaskState.QUEUED, None)


def test_a_task_that_ends_on_its_own_before_the_kill_has_no_cancel_reason(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit({"tasks": [{"command": "false"}]})
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    cp.cancel_task(job.id, 1, by="ann")
    n1.send(n1.ended(run, exit_code=1))
    task = cp.get_task(job.id, 1)
    assert task.state is TaskState.FAILED
    assert task.error == "exit code 1 is not 0 (validExitCodes)"


def test_a_canceled_job_and_its_tasks_say_who_canceled_it(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(5))
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    cp.cancel_task(job.id, 4, by="bob")  # a sweep's task not created yet
    assert cp.get_task(job.id, 4).error == "canceled by bob"
    cp.cancel_job(job.id, by="ann")
    n1.send(n1.ended(run, exit_code=-15, canceled=True))
    final = cp.get_job(job.id)
    assert final.error == "canceled by ann"
    assert cp.get_task(job.id, 1).error == f"job {job.id} canceled by ann"
    assert cp.get_task(job.id, 4).error == "canceled by bob"
    assert cp.get_task(job.id, 5).error == f"job {job.id} canceled by ann"  # never created
    cp.requeue_job(job.id)
    assert cp.get_task(job.id, 5).error is None  # Queued again: no reason left


def test_a_job_the_cluster_canceled_gives_its_tasks_the_reason(cp):
    register(cp, "n1", cores=1)
    job = cp.submit({"tasks": [{"command": "a"}, {"command": "b"}]})
    cancel_job(cp.deps, job.id, reason="job runtime limit 0:01:00 exceeded")
    assert cp.get_job(job.id).error == "job runtime limit 0:01:00 exceeded"
    assert cp.get_task(job.id, 2).error == (
        f"job {job.id} canceled: job runtime limit 0:01:00 exceeded"
    )


@pytest.mark.parametrize(
    ("job_state", "job_error", "task_state", "task_error", "after"),
    [
        (JobState.CANCELING, "canceled by ann", TaskState.CANCELED, None, "job 7 canceled by ann"),
        (JobState.CANCELING, "over", TaskState.CANCELED, None, "job 7 canceled: over"),
        (JobState.CANCELING, None, TaskState.CANCELED, None, None),
        (
            JobState.CANCELING,
            "canceled by ann",
            TaskState.CANCELED,
            "canceled by bob",
            "canceled by bob",
        ),
        (JobState.CANCELING, "canceled by ann", TaskState.FINISHED, None, None),
        (JobState.RUNNING, None, TaskState.CANCELED, None, None),
    ],
)
def test_a_task_killed_by_its_jobs_cancel_says_so(
    job_state, job_error, task_state, task_error, after
):
    job = Job(id=7, state=job_state, error=job_error)
    task = Task(job_id=7, id=1, command="x", state=task_state, error=task_error)
    lifecycle.explain_cancel(task, job)
    assert task.error == after
