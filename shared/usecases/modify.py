"""Change a job that has not ended: its priority, name, maxConcurrent and jobRuntimeLimit, a
hold, a release."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.domain.durations import MAX_LIMIT_S
from shared.domain.jobspec import MAX_CONCURRENT, MAX_JOB_NAME, check_name, priority_value
from shared.domain.models import Job
from shared.domain.states import JOB_TERMINAL, JobState, TaskState
from shared.domain.templates import job_limit_refusal, priority_label
from shared.errors import InvalidRequest, NotFound, Refused
from shared.usecases import templates
from shared.usecases.cancel import task_pages
from shared.usecases.deps import Deps, chunks


def _open_job(deps: Deps, job_id: int, what: str, *, canceling: bool = False) -> Job:
    """The job, if it may be changed so (409 otherwise: an answer, not a race). A Canceling
    job is refused a hold or a priority unless ``canceling``: nothing of it will start again,
    so a 200 would say the change took effect (a probe saw both answered 200)."""
    job = deps.store.get_job(job_id)
    if job.state in JOB_TERMINAL:
        raise Refused(f"job {job_id} is {job.state}; only a job that has not ended can be {what}")
    if job.state is JobState.CANCELING and not canceling:
        raise Refused(
            f"job {job_id} is Canceling: none of its tasks will start again, so it cannot be "
            f"{what}; once it is Canceled, requeue it (hpc job requeue {job_id}) and then "
            "change it"
        )
    return job


def hold(deps: Deps, job_id: int, *, until: datetime | None = None) -> Job:
    """No task of the job starts until it is released (or ``until`` passes); what runs goes on.

    An ``until`` already past is refused, not taken as "no hold": asked to hold, the cluster
    must not start the job at once, nor lift a hold it had (a typo, a zone slip)."""

    def write() -> Job:
        job = _open_job(deps, job_id, "held")
        if until is not None and until <= deps.clock():
            raise InvalidRequest(
                f"until {until:%Y-%m-%d %H:%M:%S} UTC is in the past: give a later time, "
                f"or no until to hold the job until released (hpc job release {job_id})"
            )
        if until is None:
            job.held = True
        else:  # a job held until released stays so (a probe's timed hold lifted an admin's)
            job.hold_until = until
        deps.store.commit(job=job)
        return job

    return deps.retry(write)


def release(deps: Deps, job_id: int) -> Job:
    """Lift the job's hold (``hpc job hold``); a job held until a time (``--begin``, ``hold
    --until``) and not otherwise is released from that time instead. One at a time: a probe's
    ``--begin 23:30`` job, held and released, started at once, its begin time lost with the
    hold; now it waits for 23:30 again, and a second release starts it now."""

    def write() -> Job:
        job = _open_job(deps, job_id, "released", canceling=True)  # (a requeue keeps holds)
        if not job.held and job.hold_until is None:
            raise Refused(f"job {job_id} is not held")
        if job.held:
            job.held = False
        else:
            job.hold_until = None
        deps.store.commit(job=job)
        return job

    job = deps.retry(write)
    deps.kick()
    return job


def set_priority(deps: Deps, job_id: int, value: object, *, admin: bool = False) -> Job:
    """A new priority for the job and its queued tasks (which carry a copy the scheduler
    orders by); tasks already running are not affected. ``value`` is as sent (any JSON):
    only a name or an integer 0-4000 is taken. ``admin``: past the template's maxPriority
    (Slurm's operators set any priority)."""
    try:
        priority = priority_value(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if not admin:
        _check_template_priority(deps, _open_job(deps, job_id, "modified"), priority)

    def write_job() -> Job:
        job = _open_job(deps, job_id, "modified")
        job.priority = priority
        deps.store.commit(job=job)
        return job

    deps.retry(write_job)
    deps.retry(_reprioritize_ranges, deps, job_id, priority)
    for queued in task_pages(deps, job_id, [TaskState.QUEUED]):
        for chunk in chunks(queued):
            deps.retry(_reprioritize, deps, job_id, [t.id for t in chunk], priority)
    deps.kick()
    return deps.store.get_job(job_id)


CHANGES = ("priority", "name", "maxConcurrent", "jobRuntimeLimit")
"""What ``PATCH /api/jobs/{id}`` (``hpc job modify``) changes, as the API spells it."""


def modify(deps: Deps, job_id: int, changes: dict[str, Any], *, admin: bool = False) -> Job:
    """``changes`` (some of :data:`CHANGES`, as sent) applied, each checked first: a bad
    value changes nothing. A lower maxConcurrent stops no running task; fewer start. A
    jobRuntimeLimit counts from the job's start, as at submit: one already run out cancels
    the job at the reconciler's next run (Slurm's scontrol update TimeLimit). ``admin``:
    the template's maxPriority and maxJobRuntimeLimit do not bind (an operator's override)."""
    name, cap = changes.get("name"), changes.get("maxConcurrent")
    limit = changes.get("jobRuntimeLimit")
    if "name" in changes and (not isinstance(name, str) or not 1 <= len(name) <= MAX_JOB_NAME):
        raise InvalidRequest(f"name is text of 1 to {MAX_JOB_NAME} characters")
    if "name" in changes:
        try:
            check_name(str(name))
        except ValueError as e:
            raise InvalidRequest(f"name: {e}") from None
    if "maxConcurrent" in changes and not _whole_or_null(cap, MAX_CONCURRENT):
        raise InvalidRequest(
            f"maxConcurrent is a whole number from 1 to {MAX_CONCURRENT:,}, or null for no cap"
        )
    if "jobRuntimeLimit" in changes and not _whole_or_null(limit, MAX_LIMIT_S):
        raise InvalidRequest(
            f"jobRuntimeLimit is whole seconds from 1 to {MAX_LIMIT_S:,}, or null for none"
        )
    if "jobRuntimeLimit" in changes and not admin:
        _check_template_job_limit(deps, _open_job(deps, job_id, "modified", canceling=True), limit)
    if "priority" in changes:
        set_priority(deps, job_id, changes["priority"], admin=admin)

    def write() -> Job:  # (a name, cap or limit of a Canceling job is taken, as documented)
        job = _open_job(deps, job_id, "modified", canceling=True)
        if "name" in changes:
            job.name = str(name)
        if "maxConcurrent" in changes:
            job.max_concurrent = cap
        if "jobRuntimeLimit" in changes:
            job.job_runtime_limit = limit
        deps.store.commit(job=job)
        return job

    job = deps.retry(write) if {"name", "maxConcurrent", "jobRuntimeLimit"} & set(changes) else None
    deps.kick()  # a higher cap lets more start
    return job or deps.store.get_job(job_id)


def _check_template_priority(deps: Deps, job: Job, priority: int) -> None:
    """The job's template's maxPriority holds after submit too: its current one, or the one
    it had at submit if it was deleted since. A move down is always taken (a probe's owner
    could not lower a job the template's lowered limit left above it)."""
    if job.template is None:
        return
    try:
        most, which = templates.get(deps, job.template).template.max_priority, "allows"
    except NotFound:
        most, which = job.max_priority, "was deleted since; it allowed"
    if most is not None and priority > most and priority > job.priority:
        raise InvalidRequest(
            f"job {job.id} uses template {job.template!r}, which {which} priority at most "
            f"{priority_label(most)}; asked for {priority_label(priority)} (an admin may "
            "set any)"
        )


def _whole_or_null(value: object, most: int) -> bool:
    """``null``, or a JSON integer from 1 to ``most`` (not true, 8.0 or "8")."""
    if value is None:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= most


def _check_template_job_limit(deps: Deps, job: Job, limit: int | None) -> None:
    """The job's template's maxJobRuntimeLimit holds after submit too (a deleted template's
    no longer does: jobs keep only the maxPriority they were submitted under)."""
    if job.template is None:
        return
    try:
        template = templates.get(deps, job.template).template
    except NotFound:
        return
    refusal = job_limit_refusal(template, limit)
    if refusal:
        raise InvalidRequest(f"job {job.id}: {refusal}")


def _reprioritize_ranges(deps: Deps, job_id: int, priority: int) -> None:
    """Tasks its sweeps create from now on carry the new priority."""
    stale = [r for r in deps.store.get_ranges(job_id) if r.template.priority != priority]
    for chunk in chunks(stale):
        for r in chunk:
            r.template.priority = priority
        deps.store.commit(ranges=chunk)


def _reprioritize(deps: Deps, job_id: int, task_ids: list[int], priority: int) -> None:
    changed = []
    for task in deps.store.get_tasks(job_id, task_ids):
        if task.state is TaskState.QUEUED and task.priority != priority:
            task.priority = priority
            changed.append(task)
    if changed:
        deps.store.commit(tasks=changed)
