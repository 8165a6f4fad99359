"""Cancel a job, and requeue a Failed or Canceled one."""

from __future__ import annotations

from shared.domain import lifecycle
from shared.domain.models import Job
from shared.domain.states import JOB_TERMINAL, TASK_ACTIVE, JobState, TaskState
from shared.errors import Conflict
from shared.usecases.deps import Deps, chunks

_ALL = 1 << 30


def cancel_job(deps: Deps, job_id: int, *, reason: str | None = None) -> Job:
    """Queued tasks are canceled now; running ones get a CancelTask and end as Canceled when
    their agent has killed them. The job is Canceling until then. ``reason`` (why the cluster
    canceled it) is kept as the job's error."""

    def attempt() -> Job:
        job = deps.store.get_job(job_id)
        if job.state in JOB_TERMINAL:
            raise Conflict(f"job {job_id} is already {job.state}; nothing to cancel")
        now = deps.clock()
        if job.state is not JobState.CANCELING:
            job.move_to(JobState.CANCELING, now=now)
            job.error = reason or job.error
            deps.store.commit(job=job)
        return job

    deps.retry(attempt)
    queued = deps.store.list_tasks(job_id, states=[TaskState.QUEUED], limit=_ALL)
    for chunk in chunks(queued):
        deps.retry(_cancel_chunk, deps, job_id, [t.id for t in chunk])
    active = deps.store.list_tasks(job_id, states=TASK_ACTIVE, limit=_ALL)
    cancels = []
    for task in active:
        change = lifecycle.cancel(task, deps.clock())
        if change is not None:
            cancels += change.cancels
    deps.send_to_nodes(cancels)
    return deps.retry(_settle, deps, job_id)


def _cancel_chunk(deps: Deps, job_id: int, task_ids: list[int]) -> None:
    job = deps.store.get_job(job_id)
    now = deps.clock()
    changed = []
    for task in deps.store.get_tasks(job_id, task_ids):
        change = lifecycle.cancel(task, now)
        if change is not None and change.old is not change.new:
            job.count(change.old, change.new)
            changed.append(task)
    if changed:
        deps.store.commit(job=job, tasks=changed)


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
    redo = deps.store.list_tasks(job_id, states=[TaskState.FAILED, TaskState.CANCELED], limit=_ALL)
    for chunk in chunks(redo):
        deps.retry(_rerun_chunk, deps, job_id, [t.id for t in chunk])
    deps.kick()
    return deps.store.get_job(job_id)


def _rerun_chunk(deps: Deps, job_id: int, task_ids: list[int]) -> None:
    """Reruns some tasks; the first chunk also reopens the job, in the same transaction."""
    job = deps.store.get_job(job_id)
    now = deps.clock()
    if job.state in (JobState.FAILED, JobState.CANCELED):
        job.move_to(JobState.QUEUED, now=now)
        job.error = None
    changed = []
    for task in deps.store.get_tasks(job_id, task_ids):
        change = lifecycle.rerun(task, now)
        if change is not None:
            job.count(change.old, change.new)
            changed.append(task)
    if changed:
        deps.store.commit(job=job, tasks=changed)
