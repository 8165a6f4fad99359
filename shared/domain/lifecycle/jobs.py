"""The job rule: a job closes when none of its tasks is left to run.

Part of :mod:`shared.domain.lifecycle` (its docstring states the guarantees). Pure.
"""

from __future__ import annotations

from datetime import datetime

from shared.domain.models import Job
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


def settle_job(job: Job, now: datetime) -> bool:
    """Close the job when none of its tasks is left to run; True if it did."""
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
