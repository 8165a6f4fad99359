"""Requeue many tasks of one job at once (``POST /api/jobs/{id}/tasks/requeue``, ``hpc task
requeue 39 200-1199``), each as one task's requeue would
(:func:`shared.usecases.task_actions.requeue_task`), in a few commits instead of one request
and one commit per task: the twin of :mod:`shared.usecases.task_cancels`.

- Tasks of ranges canceled alone (``hpc task cancel 39 100-1100``) that were never created
  are requeued first: a run of them is cut out of its canceled range as an open range whose
  template is their new attempt, a short run created Queued
  (:mod:`shared.domain.rangerequeue`), as many per commit as one transactional batch holds,
  each commit planned from a fresh read.
- Stored tasks follow, 99 and their job per commit: a Failed or Canceled one is Queued as a
  new attempt (``lifecycle.rerun``: a late event of its old attempt changes nothing,
  docs/exactly-once.md) with a fresh retry budget, at the job's priority now.
- The job, if it had ended Failed or Canceled, is reopened by the first commit that requeues.
- A task not Failed or Canceled, one whose prerequisite (task or job) did not finish, one of
  a Finished job, or one of a sweep not created yet that is requeued with its job, is refused
  alone (its own 409 and message, as the one-task route says it); the others go on.
- Then the tasks canceled only because requeued ones did not finish come back, once for the
  whole request (:func:`shared.usecases.dependents.bring_back_after`); how many, together.

Every commit is whole: a request cut short (a crash, a job busy for longer than
``Backoff.busy_s``) leaves each task requeued or not, never half, and sending it again
requeues the rest (those requeued already are Queued then, refused as such).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.domain import lifecycle, rangerequeue, taskgraph
from shared.domain.models import Job, Task
from shared.domain.rangecut import Cut
from shared.domain.states import JOB_TERMINAL, JobState, TaskState
from shared.domain.taskspans import Span
from shared.errors import Conflict, Refused
from shared.ports.store import MAX_BATCH, MAX_BATCH_BYTES, size_bound, stored_size
from shared.usecases import dependents, taskdeps
from shared.usecases.cancel import prerequisite_refusal
from shared.usecases.deps import Deps, chunks
from shared.usecases.task_actions import (
    REQUEUEABLE,
    doomed_refusal,
    ended_job_refusal,
    not_requeueable,
    requeue_while_canceling,
    unborn_refusal,
)
from shared.usecases.task_cancels import PAGE, Outcome, commit_runs, refuse_outside


@dataclass(frozen=True)
class Requeues:
    """A request's answer: each task's outcome in id order (``state`` Queued, or the refusal),
    and how many dependents came back with them, together."""

    outcomes: list[Outcome]
    dependents: int = 0


@dataclass
class _Request:
    """One request's state: the answers so far, the requeued tasks' names (for their
    dependents), and what dooms its tasks (a prerequisite job, read once)."""

    deps: Deps
    job_id: int
    out: dict[int, Outcome] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    job_refusal: str | None = None
    failed: dict[str, int] | None = None

    def doomed(self, job: Job, task: Task) -> str | None:
        """Why ``task`` queued again would be canceled at once (as the one-task route says)."""
        inside = taskgraph.doomed(task.depends_on, job.steps, job)
        if inside:  # said again with how its prerequisite ended (failed or canceled)
            if self.failed is None:
                self.failed = taskdeps.failed_counts(self.deps, job)
            inside = taskgraph.doomed(task.depends_on, job.steps, job, self.failed)
        return doomed_refusal(job, task, self.job_refusal, inside)

    def refuse(self, task_id: int, error: str, status: int = 409) -> None:
        self.out[task_id] = Outcome(task_id, None, error=error, status=status)


def requeue_tasks(deps: Deps, job_id: int, spans: Sequence[Span]) -> Requeues:
    """Requeue the tasks ``spans`` name (ascending, disjoint: :func:`taskspans.spans`).
    NotFound (404) naming them if some are not the job's, Refused (409) if the job is being
    canceled; nothing is written then."""
    job = deps.store.get_job(job_id)
    refuse_outside(job, spans, done="requeued")
    if job.state is JobState.CANCELING:
        raise Refused(requeue_while_canceling(job_id))
    req = _Request(deps, job_id, job_refusal=prerequisite_refusal(deps, job))
    with deps.turn(job_id):  # requeues of one sweep's tasks all write its ranges
        stop = None if req.job_refusal else _requeue_unborn(req, spans)
        left = [i for first, last in spans for i in range(first, last + 1) if i not in req.out]
        for page in (left[i : i + PAGE] for i in range(0, len(left), PAGE)):
            for chunk in chunks(deps.store.get_tasks(job_id, page)):  # (99, and by bytes)
                _requeue_stored(req, [t.id for t in chunk])
        _refuse_unreached(req, spans, stop)
    back = dependents.bring_back_after(deps, job_id, req.names) if req.names else 0
    if req.names:
        deps.kick()
    return Requeues([req.out[i] for i in sorted(req.out)], back)


def _requeue_unborn(req: _Request, spans: Sequence[Span]) -> str | None:
    """Requeue the named tasks of ranges canceled alone, never created, a commit at a time
    until none is left; why it stopped early (the job is being canceled or was too busy),
    else None. Ranges whose tasks a prerequisite dooms are left to be refused."""
    deps, job_id = req.deps, req.job_id

    def once() -> Cut:
        job = deps.store.get_job(job_id)
        if job.state is JobState.CANCELING:
            raise Refused(requeue_while_canceling(job_id))
        if job.state in JOB_TERMINAL and job.state not in REQUEUEABLE:
            return Cut()  # (a Finished job: each task is refused so)
        ranges = [
            r
            for r in deps.store.get_ranges(job_id)
            if not taskgraph.doomed(r.template.depends_on, job.steps, job)
        ]
        now = deps.clock()
        cut = rangerequeue.plan(
            ranges,
            spans,
            now=now,
            priority=job.priority,
            max_docs=MAX_BATCH - 1,
            max_bytes=MAX_BATCH_BYTES - stored_size(job),
            size=size_bound,
        )
        if not cut.empty:
            for name, n in cut.moves:
                job.count(TaskState.CANCELED, TaskState.QUEUED, n, name=name)
            lifecycle.reopen_job(job, now)
            deps.store.commit(job=job, tasks=cut.tasks, ranges=cut.ranges)
            req.names.update(name for name, _n in cut.moves)  # (a retried once: the same)
        return cut

    return commit_runs(deps, once, _busy(job_id), TaskState.QUEUED, req.out)


def _requeue_stored(req: _Request, ids: list[int]) -> None:
    """Requeue these stored tasks in one commit (with their job, reopened if it had ended)."""
    deps, job_id = req.deps, req.job_id

    def once() -> tuple[dict[int, Outcome], set[str]]:
        job = deps.store.get_job(job_id)
        if job.state is JobState.CANCELING:
            raise Refused(requeue_while_canceling(job_id))
        now = deps.clock()
        found: dict[int, Outcome] = {}
        changed: list[Task] = []
        for task in deps.store.get_tasks(job_id, ids):
            why = _refusal(req, job, task)
            change = None if why else lifecycle.rerun(task, now, priority=job.priority)
            if change is None:
                error = why or not_requeueable(job_id, task)
                found[task.id] = Outcome(task.id, None, error=error, status=409)
                continue
            job.count(change.old, change.new, name=task.name)
            changed.append(task)
            found[task.id] = Outcome(task.id, task.state, task.sweep_index)
        if changed:
            lifecycle.reopen_job(job, now)  # as the job's requeue: its limit counts anew
            deps.store.commit(job=job, tasks=changed)
        return found, {t.name for t in changed}

    try:
        found, names = deps.retry_busy(once, busy=_busy(job_id))
    except Conflict as e:
        found, names = {i: Outcome(i, None, error=str(e), status=409) for i in ids}, set()
    req.out.update(found)
    req.names |= names


def _refusal(req: _Request, job: Job, task: Task) -> str | None:
    """Why the one-task route would refuse this stored task before trying it, if it would."""
    ended = ended_job_refusal(job, task)
    if ended:
        return ended
    return req.doomed(job, task) if task.state in REQUEUEABLE else None


def _refuse_unreached(req: _Request, spans: Sequence[Span], stop: str | None) -> None:
    """Say why each named task neither stored nor requeued was not: of a sweep not created
    yet (Queued, or canceled with its job, or doomed), or gone (404), as the one-task route
    says it; ``stop``: why the requeue of ranges stopped early, if it did."""
    deps, job_id = req.deps, req.job_id
    missing = [i for first, last in spans for i in range(first, last + 1) if i not in req.out]
    if not missing:
        return
    job = deps.store.get_job(job_id)
    ranges = sorted(deps.store.get_ranges(job_id), key=lambda r: r.first_id)
    firsts = [r.first_id for r in ranges]
    ahead = [set(r.created_ahead) for r in ranges]
    for i in missing:
        k = bisect_right(firsts, i) - 1  # (a job's ranges hold disjoint ids)
        r = ranges[k] if k >= 0 else None
        if r is not None and (i < r.first_id + r.cursor or i >= r.first_id + r.count):
            r = None
        if r is not None and i in ahead[k]:
            r = None
        if r is None:  # created meanwhile, or no such task
            stored = deps.store.get_tasks(job_id, [i])
            if not stored:
                why = f"task {job_id}.{i} does not exist; job {job_id} has tasks 1 to "
                req.refuse(i, f"{why}{job.task_count}", 404)
            else:
                req.refuse(i, f"task {job_id}.{i} changed meanwhile: retry in a moment")
            continue
        task = r.task(i)
        if task.state is TaskState.QUEUED:
            req.refuse(i, not_requeueable(job_id, task))
        elif ended := ended_job_refusal(job, task):
            req.refuse(i, ended)
        elif doom := req.doomed(job, task):
            req.refuse(i, doom)
        elif r.canceled_alone:
            req.refuse(i, stop or f"task {job_id}.{i} was not requeued: retry in a moment")
        else:
            req.refuse(i, unborn_refusal(job, i, task.state))


def _busy(job_id: int) -> str:
    return (
        f"job {job_id} was busy (other changes to it were being saved at the same time), so "
        "these tasks were not requeued: retry in a moment"
    )
