"""Cancel a job, and requeue a Failed or Canceled one."""

from __future__ import annotations

from collections.abc import Collection, Iterator

from shared.domain import eligibility, lifecycle
from shared.domain.models import Job, Task
from shared.domain.states import JOB_TERMINAL, TASK_ACTIVE, JobState, TaskState
from shared.errors import Conflict, NotFound, Refused
from shared.usecases.deps import Deps, chunks
from shared.usecases.queries import job_states

PAGE = 1000
"""Tasks read per page when a use case walks all the tasks of a job in some states."""


def task_pages(deps: Deps, job_id: int, states: Collection[TaskState]) -> Iterator[list[Task]]:
    """The job's stored tasks in these states, a page at a time, each page continuing after
    the last id of the previous one (no offset; changing a page's tasks does not shift the
    next one)."""
    after = 0
    while page := deps.store.list_tasks(job_id, states=states, after=after, limit=PAGE):
        yield page
        after = page[-1].id


def cancel_job(
    deps: Deps,
    job_id: int,
    *,
    reason: str | None = None,
    by: str | None = None,
    canceled_for: int | None = None,
) -> Job:
    """Queued tasks are canceled now; running ones get a CancelTask and end as Canceled when
    their agent has killed them. The job is Canceling until then. ``reason`` (why the cluster
    canceled it) or ``by`` (the user who asked: "canceled by alice") is kept as the job's
    error, and its tasks say it (:func:`lifecycle.job_cancel_reason`); ``canceled_for``, the
    prerequisite job whose end canceled it (the reconciler's), is kept as ``Job.canceled_for``."""
    reason = reason or lifecycle.canceled_by(by)

    def attempt() -> Job:
        job = deps.store.get_job(job_id)
        if job.state in JOB_TERMINAL:
            raise Refused(f"job {job_id} is already {job.state}; nothing to cancel")
        now = deps.clock()
        if job.state is not JobState.CANCELING:
            job.move_to(JobState.CANCELING, now=now)
            job.error = reason or job.error
            job.canceled_for = canceled_for
            deps.store.commit(job=job)
        return job

    why = lifecycle.job_cancel_reason(deps.retry(attempt))
    deps.retry(_cancel_ranges, deps, job_id, why)  # first, so the scheduler creates no more
    for queued in task_pages(deps, job_id, [TaskState.QUEUED]):
        for chunk in chunks(queued):
            deps.retry(_cancel_chunk, deps, job_id, [t.id for t in chunk], why)
    cancels = []
    for active in task_pages(deps, job_id, TASK_ACTIVE):
        for task in active:
            change = lifecycle.cancel(task, deps.clock())  # (not stored: its end says why,
            if change is not None:  # lifecycle.explain_cancel)
                cancels += change.cancels
    deps.send_to_nodes(cancels)
    return deps.retry(_settle, deps, job_id)


def _cancel_chunk(deps: Deps, job_id: int, task_ids: list[int], why: str | None) -> None:
    job = deps.store.get_job(job_id)
    now = deps.clock()
    changed = []
    for task in deps.store.get_tasks(job_id, task_ids):
        change = lifecycle.cancel(task, now, why)
        if change is not None and change.old is not change.new:
            job.count(change.old, change.new, name=task.name)
            changed.append(task)
    if changed:
        deps.store.commit(job=job, tasks=changed)


def _cancel_ranges(deps: Deps, job_id: int, why: str | None) -> None:
    """The tasks of its sweeps not created yet are Canceled: one write per 99 ranges."""
    for chunk in chunks([r for r in deps.store.get_ranges(job_id) if r.open]):
        job = deps.store.get_job(job_id)
        now = deps.clock()
        for r in chunk:
            r.canceled_time = now
            r.canceled_reason = why  # what its tasks not created yet say (a probe: null)
            job.count(TaskState.QUEUED, TaskState.CANCELED, r.left, name=r.template.name)
        deps.store.commit(job=job, ranges=chunk)


def _settle(deps: Deps, job_id: int) -> Job:
    job = deps.store.get_job(job_id)
    if lifecycle.settle_job(job, deps.clock()):
        deps.store.commit(job=job)
    return job


def requeue_job(deps: Deps, job_id: int) -> Job:
    """A Failed or Canceled job goes back to Queued with its failed and canceled tasks."""

    job = deps.store.get_job(job_id)
    if job.state not in (JobState.FAILED, JobState.CANCELED):
        raise Conflict(f"job {job_id} is {job.state}; only Failed or Canceled jobs can be requeued")
    if not (job.task_counts.get(TaskState.FAILED) or job.task_counts.get(TaskState.CANCELED)):
        raise Conflict(f"job {job_id} has no failed or canceled tasks to requeue")
    doomed = prerequisite_refusal(deps, job)
    if doomed:  # queued again, it would be canceled at the next pass, for the same reason
        raise Refused(f"job {job_id} would be canceled again at once: {doomed}")
    for redo in task_pages(deps, job_id, [TaskState.FAILED, TaskState.CANCELED]):
        for chunk in chunks(redo):
            deps.retry(_rerun_chunk, deps, job_id, [t.id for t in chunk])
    deps.retry(_reopen_ranges, deps, job_id)
    deps.kick()
    return deps.store.get_job(job_id)


def prerequisite_refusal(deps: Deps, job: Job) -> str | None:
    """Why ``job`` queued again would be canceled at once (a prerequisite job that ended
    other than Finished, or is gone), and what to do first; None if it could run. The job
    and task requeues both say it: a requeue the next pass undoes is no requeue."""
    states = job_states(deps, set(job.depends_on))
    for dep in job.depends_on:  # the rule's own words, per prerequisite, to name it
        why = eligibility.doomed(job, {dep: states[dep]})
        if why is None:
            continue
        if states[dep] is None:
            return f"{why}, so it can never run: submit it again without it"
        return f"{why}; {requeue_first(deps, dep, job.owner)}, then this one"
    return None


def requeue_first(deps: Deps, dep: int, owner: str | None) -> str:
    """What to do first of a prerequisite ``dep`` that did not finish: requeue it, or, if it
    is another user's, ask them or an admin (a probe's user was told to run a requeue that
    was then refused him: "job 30 belongs to alice")."""
    try:
        theirs = deps.store.get_job(dep).owner
    except NotFound:
        theirs = None
    if theirs is not None and owner is not None and theirs != owner:
        return f"ask {theirs} or an admin to requeue job {dep} first (hpc job requeue {dep})"
    return f"requeue job {dep} first (hpc job requeue {dep})"


def _reopen_ranges(deps: Deps, job_id: int) -> None:
    """The canceled, never created tasks of its sweeps are Queued again (and the job reopened,
    in the same write, if no stored task did it)."""
    canceled = [r for r in deps.store.get_ranges(job_id) if r.canceled_time and r.left]
    for chunk in chunks(canceled):
        job = deps.store.get_job(job_id)
        lifecycle.reopen_job(job, deps.clock())
        for r in chunk:
            r.canceled_time = r.canceled_reason = r.canceled_for = None
            r.canceled_alone = False
            job.count(TaskState.CANCELED, TaskState.QUEUED, r.left, name=r.template.name)
        deps.store.commit(job=job, ranges=chunk)


def _rerun_chunk(deps: Deps, job_id: int, task_ids: list[int]) -> None:
    """Reruns some tasks; the first chunk also reopens the job, in the same transaction."""
    job = deps.store.get_job(job_id)
    now = deps.clock()
    lifecycle.reopen_job(job, now)
    changed = []
    for task in deps.store.get_tasks(job_id, task_ids):
        change = lifecycle.rerun(task, now, priority=job.priority)
        if change is not None:
            job.count(change.old, change.new, name=task.name)
            changed.append(task)
    if changed:
        deps.store.commit(job=job, tasks=changed)
