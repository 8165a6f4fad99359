"""Cancel or requeue one task of a job (HPC Pack's ``task cancel`` / ``task requeue``).

A job's cancel and requeue act on all its tasks (:mod:`shared.usecases.cancel`); these act
on one, with the same lifecycle rules (``lifecycle.cancel``, ``lifecycle.rerun``), so a
task canceled here ends exactly as one canceled with its job: a queued task at once, a
running one when its agent reports it killed (the CancelTask names its attempt and its
node's incarnation, so a stale or repeated cancel kills nothing else).

- Cancel: the job goes on. Its dependents that need this task are canceled with the
  reason (unless the job runs dependents on failure), and a job whose last task this was
  ends Failed (a canceled task is not a success), as it would after a failed task.
- Requeue: a Failed or Canceled task runs again (a new attempt, a fresh retry budget); a
  job that had ended Failed or Canceled is Queued again. The tasks canceled only because it
  did not finish come back with it, transitively, and run once it Finishes
  (:mod:`shared.usecases.dependents`); tasks a user canceled, or that ended on their own,
  stay as they are (``hpc job requeue`` reruns every failed and canceled task).

A Queued task of a sweep that the scheduler has not created yet (it creates them as it
dispatches) is canceled by creating it then, Canceled, in the commit that tells its range
to skip it (:func:`shared.usecases.sweeps.cancel_unborn`). Creating it, rather than keeping
a list of canceled ids in the range, keeps one rule: a task that ever left Queued is a
stored record, so its requeue, listing, counts and dependents take the paths of any
stored task, and the range only has to skip ids, never to undo a cancel. Requeueing a task
not created yet (Queued, or Canceled with its job's range) is refused with what to do.
"""

from __future__ import annotations

import logging

from shared.domain import lifecycle, taskgraph
from shared.domain.messages import CancelTask
from shared.domain.models import Job, Step, Task
from shared.domain.states import JOB_TERMINAL, TASK_TERMINAL, JobState, TaskState
from shared.errors import Conflict, NotFound, Refused
from shared.usecases import dependents, sweeps, taskdeps
from shared.usecases.cancel import prerequisite_refusal
from shared.usecases.dependents import Requeued
from shared.usecases.deps import Deps
from shared.usecases.settling import commit_settling

log = logging.getLogger(__name__)


def cancel_task(deps: Deps, job_id: int, task_id: int, *, by: str | None = None) -> Task:
    """Cancel one task; returns it as stored (still Running until its agent killed it).
    ``by``: the user who asked, named in the task's error ("canceled by alice")."""

    def attempt() -> tuple[Task, list[tuple[str, CancelTask]]]:
        with deps.turn(job_id):  # cancels of one sweep's tasks all write its range
            return attempt_once()

    def attempt_once() -> tuple[Task, list[tuple[str, CancelTask]]]:
        job = deps.store.get_job(job_id)
        try:
            task = deps.store.get_task(job_id, task_id)
        except NotFound:  # a sweep's task not created yet (or none: NotFound)
            return sweeps.cancel_unborn(deps, job, task_id, reason=lifecycle.canceled_by(by)), []
        if task.state in TASK_TERMINAL:
            raise Refused(f"task {job_id}.{task_id} is already {task.state}; nothing to cancel")
        if job.state is JobState.CANCELING:
            raise Refused(lifecycle.being_canceled(job_id))
        now = deps.clock()
        change = lifecycle.cancel(task, now, lifecycle.canceled_by(by))
        if change is None:  # active, but not placed: nothing to kill yet
            raise Refused(f"task {job_id}.{task_id} is {task.state}; try again in a moment")
        if change.old is not change.new:
            job.count(change.old, change.new, name=task.name)
            commit_settling(deps, job, [task], ended=True, now=now)
        else:  # stored before the kill is sent: an attempt given up first ends Canceled too
            deps.store.commit(tasks=[task])
        return task, change.cancels

    task, cancels = deps.retry_busy(attempt, busy=_busy(job_id, task_id, "canceled"))
    deps.send_to_nodes(cancels)
    if task.state is TaskState.CANCELED:
        cancel_dependents(deps, job_id)
    return task


def requeue_task(deps: Deps, job_id: int, task_id: int) -> Requeued:
    """Run a Failed or Canceled task again; reopens its job if the job had ended; brings
    back the dependents canceled only because it did not finish (how many: the answer's)."""

    def attempt() -> tuple[Task, dict[str, Step]]:
        job = deps.store.get_job(job_id)
        steps = {name: step.model_copy() for name, step in job.steps.items()}
        task = _stored(deps, job, task_id)
        if job.state is JobState.CANCELING:
            raise Refused(requeue_while_canceling(job_id))
        ended = ended_job_refusal(job, task)
        if ended:
            raise Refused(ended)
        if task.state in REQUEUEABLE:
            _refuse_if_doomed(deps, job, task)
        if task.etag is None:  # never created: of a range canceled alone (_stored)
            born = sweeps.requeue_unborn(deps, job, task_id, priority=job.priority)
            if born is None:
                raise Conflict(f"task {job_id}.{task_id} changed meanwhile")  # (retried)
            return born, steps
        now = deps.clock()
        change = lifecycle.rerun(task, now, priority=job.priority)
        if change is None:
            raise Refused(not_requeueable(job_id, task))
        job.count(change.old, change.new, name=task.name)
        lifecycle.reopen_job(job, now)  # as the job's requeue: its limit counts anew
        deps.store.commit(job=job, tasks=[task])
        return task, steps

    task, steps = deps.retry_busy(attempt, busy=_busy(job_id, task_id, "requeued"))
    back = dependents.bring_back(deps, job_id, steps, task)
    deps.kick()
    return Requeued(task, back)


def _busy(job_id: int, task_id: int, done: str) -> str:
    """What a user is told when a task's write kept meeting others' writes to its job."""
    return (
        f"job {job_id} was busy (other changes to it were being saved at the same time), so "
        f"task {job_id}.{task_id} was not {done}: retry in a moment"
    )


def _refuse_if_doomed(deps: Deps, job: Job, task: Task) -> None:
    """Refused (409) if the task, queued again, would be canceled again at once: its job's
    prerequisite job, or a task it depends on, did not finish (said with how it ended)."""
    inside = taskgraph.doomed(task.depends_on, job.steps, job)
    if inside:  # said again with how its prerequisite ended (failed or canceled)
        inside = taskgraph.doomed(
            task.depends_on, job.steps, job, taskdeps.failed_counts(deps, job)
        )
    doomed = doomed_refusal(job, task, prerequisite_refusal(deps, job), inside)
    if doomed:
        raise Refused(doomed)


# --- a requeue's refusals, in the words both the one-task route and the route for many say

REQUEUEABLE = (TaskState.FAILED, TaskState.CANCELED)
"""The states a task is requeued from (and a job reopened from)."""


def requeue_while_canceling(job_id: int) -> str:
    return f"job {job_id} is being canceled; requeue it once it is Canceled"


def ended_job_refusal(job: Job, task: Task) -> str | None:
    """Why no task of a job that ended otherwise than Failed or Canceled is requeued."""
    if job.state not in JOB_TERMINAL or job.state in REQUEUEABLE:
        return None
    if task.state not in REQUEUEABLE:  # the task's own state
        return (
            f"task {job.id}.{task.id} is {task.state} (its job {job.id} is {job.state}); "
            "only a Failed or Canceled task can be requeued"
        )
    return f"job {job.id} is {job.state}; nothing of it can run again"


def not_requeueable(job_id: int, task: Task) -> str:
    """Why a task ``lifecycle.rerun`` leaves as it is was not requeued."""
    if task.cancel_requested:  # its agent is still killing it
        return (
            f"task {job_id}.{task.id} is being canceled (its agent gives it "
            "HPC_TASK_GRACE_S to end); requeue it once it is Canceled"
        )
    return (
        f"task {job_id}.{task.id} is {task.state}; only a Failed or Canceled task can be requeued"
    )


def doomed_refusal(job: Job, task: Task, job_refusal: str | None, inside: str | None) -> str | None:
    """Why the task, queued again, would be canceled again at once: its job's prerequisite
    job (``job_refusal``) or a task it depends on (``inside``) did not finish."""
    if not (job_refusal or inside):
        return None
    return f"task {job.id}.{task.id} would be canceled again at once: " + (
        job_refusal or f"{inside}; requeue that first (or the whole job: hpc job requeue {job.id})"
    )


def unborn_refusal(job: Job, task_id: int, state: TaskState) -> str:
    """Why a task of a sweep not created yet (canceled with its job, or Queued) is requeued
    only with its job."""
    when = "" if job.state in JOB_TERMINAL else " once the job has ended"
    return (
        f"task {job.id}.{task_id} is {state} in a sweep the scheduler has not reached "
        "(it creates a sweep's tasks as it dispatches them), so it is requeued with its job: "
        f"hpc job requeue {job.id}{when}"
    )


def _stored(deps: Deps, job: Job, task_id: int) -> Task:
    """The stored task to requeue; NotFound (404) if the job has no such task, Conflict
    (409) saying what can be done if it is a sweep's task not created yet: first whether a
    prerequisite dooms it (a probe was told of the scheduler's workings instead)."""
    job_id = job.id
    try:
        return deps.store.get_task(job_id, task_id)
    except NotFound:
        task = sweeps.get_task(deps, job_id, task_id)  # NotFound if there is no such task
        if task.etag is not None:  # created meanwhile
            return task
        if task.state is TaskState.QUEUED:
            raise Refused(not_requeueable(job_id, task)) from None
        if any(r.canceled_alone and r.contains(task_id) for r in deps.store.get_ranges(job_id)):
            return task  # canceled alone (hpc task cancel J FIRST-LAST): requeued alone
        _refuse_if_doomed(deps, job, task)
        raise Refused(unborn_refusal(job, task_id, task.state)) from None


def cancel_dependents(deps: Deps, job_id: int) -> None:
    """Cancel the job's tasks that its canceled tasks doom (logged if it fails: the
    reconciler's next run does it, level-triggered)."""
    try:
        job = deps.store.get_job(job_id)
        if taskdeps.has_doomed(job):
            taskdeps.cancel_doomed_tasks(deps, job_id)
    except Exception:  # the reconciler's next run does it (level-triggered)
        log.exception("canceling the dependents of a canceled task of job %d failed", job_id)
