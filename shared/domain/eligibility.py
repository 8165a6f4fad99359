"""Whether a job's queued tasks may be scheduled now, and if not, why. Pure.

A job past its whole runtime limit (``jobRuntimeLimit``) starts no more tasks and is
canceled by the reconciler (:func:`over_time`). Three things hold a job back, whatever the
free cores: a hold (``hpc job hold``, or a ``holdUntil`` time not reached), prerequisite
jobs (``dependsOn``) that have not Finished, and its ``maxConcurrent`` cap on tasks running
at once (Slurm's ``%N``).
A prerequisite that ended otherwise (Failed, Canceled) dooms its dependents: they are
canceled with that reason, unless the job sets ``runDependentsOnFailure``. A requeue of the
prerequisite does not bring such a job back (:func:`left_canceled`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from shared.domain.durations import format_duration
from shared.domain.models import Job
from shared.domain.states import JOB_TERMINAL, JobState


def over_time(job: Job, now: datetime) -> str | None:
    """Why the job must end now: its ``jobRuntimeLimit`` has run out since its first task
    started (HPC Pack cancels a job past its RunTime; Slurm ends it TIMEOUT). None: it
    has no limit, has not started, has ended, or has time left."""
    limit = job.job_runtime_limit
    if limit is None or job.start_time is None or job.state in JOB_TERMINAL:
        return None
    if now - job.start_time < timedelta(seconds=limit):
        return None
    return f"job runtime limit {format_duration(limit)} exceeded"


def held(job: Job, now: datetime) -> str | None:
    """What the job's own settings hold it back by: its time up (the reconciler cancels it),
    a hold, or a ``holdUntil`` not reached. The scheduler's queue and dispatch's last check
    read this one rule."""
    over = over_time(job, now)
    if over:
        return f"{over}: the job is being canceled"
    if job.held:
        return f"held (hpc job release {job.id})"
    if job.hold_until is not None and job.hold_until > now:
        return f"held until {job.hold_until:%Y-%m-%d %H:%M:%S} UTC"
    return None


def blocked(
    job: Job, *, now: datetime, prerequisites: Mapping[int, JobState | None], active: int
) -> str | None:
    """Why none of the job's queued tasks may start now (None: they may, as cores allow).
    ``prerequisites`` maps each ``dependsOn`` job id to its state (None: it does not exist);
    ``active`` is how many of the job's tasks are Dispatching or Running."""
    return held_back(job, now=now, prerequisites=prerequisites) or at_cap(job, active)


def held_back(
    job: Job, *, now: datetime, prerequisites: Mapping[int, JobState | None]
) -> str | None:
    """Its time up, a hold or a prerequisite job: what holds the job back whatever its tasks
    wait for."""
    reason = held(job, now)
    if reason:
        return reason
    for dep in job.depends_on:
        state = prerequisites.get(dep)
        if state is JobState.FINISHED:
            continue
        if state in JOB_TERMINAL:
            if job.run_dependents_on_failure:
                continue
            # it never Finishes: the job is canceled at the next pass
            return f"dependency job {dep} ended {state.value}; this job will be canceled"
        return f"dependency job {dep} not finished ({state.value if state else 'unknown'})"
    return None


def at_cap(job: Job, active: int) -> str | None:
    """``maxConcurrent`` reached: no more of its tasks may start until one ends. A task that
    also waits for a prerequisite task says that instead (it would wait below the cap too)."""
    if job.max_concurrent is not None and active >= job.max_concurrent:
        return f"maxConcurrent {job.max_concurrent} reached"
    return None


def doomed(job: Job, prerequisites: Mapping[int, JobState | None]) -> str | None:
    """Why the job can never run (a prerequisite ended other than Finished, or does not exist),
    so it is canceled; None if it still can."""
    if job.run_dependents_on_failure:
        return None
    for dep in job.depends_on:
        state = prerequisites.get(dep, None)
        if dep not in prerequisites:
            continue
        if state is None:
            return f"dependency job {dep} does not exist"
        if state in JOB_TERMINAL and state is not JobState.FINISHED:
            return f"dependency job {dep} ended {state.value}"
    return None


def ended_prerequisite(job: Job, prerequisites: Mapping[int, JobState | None]) -> int | None:
    """The prerequisite whose end other than Finished dooms the job (:func:`doomed`), kept on
    it as ``Job.canceled_for``; None if none did (or one does not exist)."""
    if job.run_dependents_on_failure:
        return None
    for dep in job.depends_on:
        state = prerequisites.get(dep)
        if state in JOB_TERMINAL and state is not JobState.FINISHED:
            return dep
    return None


def slots(job: Job, active: int) -> int | None:
    """How many more of its tasks may start now under maxConcurrent (None: no cap)."""
    return None if job.max_concurrent is None else max(job.max_concurrent - active, 0)


_ENDED = re.compile(r"dependency job (\d+) ended ")
"""How :func:`doomed`'s reason names the prerequisite job that did not finish: read only for
a job canceled before ``Job.canceled_for`` was kept (its error is all it has)."""


def canceled_for(job: Job) -> int | None:
    """The prerequisite job whose end (Failed or Canceled) canceled this Canceled job
    (``Job.canceled_for``; for a job canceled before that field, as its error says); None if
    it was canceled otherwise."""
    if job.state is not JobState.CANCELED:
        return None
    dep = job.canceled_for
    if dep is None:
        found = _ENDED.match(job.error or "")
        dep = int(found.group(1)) if found else None
    return dep if dep in job.depends_on else None


def left_canceled(job_id: int, canceled: Iterable[Job]) -> list[int]:
    """The jobs among ``canceled`` that were canceled because job ``job_id`` did not finish,
    directly or through one another (a chain ``a <- b <- c``), in id order: the order in
    which ``hpc job requeue`` takes them back (a prerequisite first).

    Such jobs stay Canceled when ``job_id`` is requeued, as Slurm leaves a job that its
    ``kill_invalid_depend`` canceled: each is another submission, maybe another user's,
    that its owner requeues (once its prerequisite is queued again, it waits for it)."""
    out: list[int] = []
    reached = {job_id}
    for job in sorted(canceled, key=lambda j: j.id):  # a dependent's id is above its own
        dep = canceled_for(job)
        if dep is not None and dep in reached:
            out.append(job.id)
            reached.add(job.id)
    return out
