"""The job rules: a job closes when none of its tasks is left to run, and is Queued again when
every task it started was requeued; a canceled job's tasks say who canceled it.

Part of :mod:`shared.domain.lifecycle` (its docstring states the guarantees). Pure.
"""

from __future__ import annotations

from datetime import datetime

from shared.domain.models import Job, Task
from shared.domain.states import (
    JOB_TERMINAL,
    TASK_TERMINAL,
    JobState,
    TaskState,
    can_transition,
)


def all_ended(job: Job) -> bool:
    """Its counts say every task ended (whatever the job's own state)."""
    return sum(n for s, n in job.task_counts.items() if s in TASK_TERMINAL) >= job.task_count


def unstarted(job: Job) -> bool:
    """A Running job whose every task is Queued again: none runs and none ran to an end (each
    attempt was lost with its node, an eviction, an admin's offline, or requeued)."""
    queued = job.task_counts.get(TaskState.QUEUED, 0)
    return job.state is JobState.RUNNING and job.task_count > 0 and queued >= job.task_count


def settle_job(job: Job, now: datetime) -> bool:
    """Bring the job's state in line with its counts; True if it changed. It closes when none
    of its tasks is left to run. A Running job whose every task is Queued again is Queued
    again, as Slurm puts a requeued job back to PENDING (a probe: an evicted VM's only task
    left its job Running, missing from ``hpc job list --state Queued``): its start, and with
    it its jobRuntimeLimit, count from the next run's first task, as :func:`reopen_job`'s."""
    if unstarted(job):
        return reopen_job(job, now)
    if not all_ended(job) or job.state in JOB_TERMINAL:
        return False
    canceled = job.task_counts.get(TaskState.CANCELED, 0)
    failed = job.task_counts.get(TaskState.FAILED, 0)
    if job.state is JobState.CANCELING:
        job.move_to(JobState.CANCELED, now=now)
    elif canceled >= job.task_count and can_transition(job.state, JobState.CANCELED):
        # every task canceled one by one (hpc task cancel, or a canceled prerequisite's
        # dependents): nothing ran to an end or failed, as Slurm says of such an array
        if not job.error:
            job.error = f"all {job.task_count} tasks canceled"
        job.move_to(JobState.CANCELED, now=now)
    elif failed or canceled:
        if failed:
            job.error = f"{failed} of {job.task_count} tasks failed"
        elif not job.error:  # a task canceled alone (hpc task cancel), nothing failed
            job.error = f"{canceled} of {job.task_count} tasks canceled"
        job.move_to(JobState.FAILED, now=now)
    else:
        job.move_to(JobState.FINISHED, now=now)
    return True


def reopen_job(job: Job, now: datetime) -> bool:
    """A requeue (the job's or some tasks', called after its counts moved) opens the job for
    a new run: a Failed or Canceled job, or a Running one whose every task is Queued again
    (:func:`unstarted`), is Queued. Its start, and with it its jobRuntimeLimit, counts from the
    new run's first task, as Slurm's requeue does (a probe: a task requeue left the old start,
    and the limit canceled the job before the task ran). False if it was not so."""
    if job.state not in (JobState.FAILED, JobState.CANCELED) and not unstarted(job):
        return False
    job.move_to(JobState.QUEUED, now=now)
    job.error = job.canceled_for = None
    job.start_time = None
    return True


def canceled_by(user: str | None) -> str | None:
    """A user's cancel as a task or job shows it (HPC Pack's "canceled by user", Slurm's
    "CANCELLED by")."""
    return f"canceled by {user}" if user else None


def being_canceled(job_id: int) -> str:
    """Why a task cancel of a job being canceled is refused (409): its tasks end so anyway."""
    return f"job {job_id} is being canceled: its tasks end Canceled already"


def job_cancel_reason(job: Job) -> str | None:
    """What a task of a canceled job says: who canceled the job, or why the cluster did
    (its error, e.g. its runtime limit); None when neither is known."""
    if not job.error:
        return None
    if job.error.startswith("canceled by "):
        return f"job {job.id} {job.error}"
    return f"job {job.id} canceled: {job.error}"


def explain_cancel(task: Task, job: Job) -> None:
    """A task that ended Canceled with no reason of its own while its job is Canceling was
    killed by the job's cancel: it says so (a user's task cancel names the user itself)."""
    if task.state is TaskState.CANCELED and task.error is None and job.state is JobState.CANCELING:
        task.error = job_cancel_reason(job)
