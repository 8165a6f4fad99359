"""Cancel many tasks of one job at once (``POST /api/jobs/{id}/tasks/cancel``, ``hpc task
cancel 39 100-1100``, Slurm's ``scancel 39_[100-1100]``), each as one task's cancel would
(:func:`shared.usecases.task_actions.cancel_task`), in a few commits instead of one
request and one commit per task.

- Tasks of a sweep not created yet are canceled first, so the scheduler creates none of
  them meanwhile: runs of them are cut off their range as canceled ranges, short runs
  created Canceled (:mod:`shared.domain.rangecut`), as many per commit as one transactional
  batch holds (100 documents, 2 MB), each commit planned from a fresh read.
- Stored tasks follow, 99 and their job per commit: a queued one ends Canceled, a running
  one is marked canceled and its agent is sent a CancelTask naming its attempt and its
  node's incarnation (docs/exactly-once.md), after the commit, as one task's cancel does.
- A task already ended, or not placed yet, is refused alone (its own 409 and message, as
  the one-task route says it); the others go on. Every commit is whole: a request cut short
  (a crash, a job busy for longer than ``Backoff.busy_s``) leaves each task canceled or not,
  never half, and sending it again cancels the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from shared.domain import lifecycle, rangecut
from shared.domain.messages import CancelTask
from shared.domain.models import Job
from shared.domain.states import TASK_TERMINAL, JobState, TaskState
from shared.domain.taskspans import Span
from shared.errors import Conflict, NotFound, Refused
from shared.ports.store import MAX_BATCH, MAX_BATCH_BYTES, size_bound, stored_size
from shared.usecases import sweeps
from shared.usecases.deps import Deps, chunks
from shared.usecases.settling import settle
from shared.usecases.task_actions import cancel_dependents

PAGE = 1000
"""Stored tasks read at a time (a Cosmos DB query names at most 1,000 ids)."""


@dataclass(frozen=True)
class Outcome:
    """One task's answer: its state now (Canceled, or still Running until its agent killed
    it), or why it was not canceled (``error``, with the HTTP ``status`` it would get alone)."""

    id: int
    state: TaskState | None
    sweep_index: int | None = None
    error: str | None = None
    status: int | None = None


def cancel_tasks(
    deps: Deps, job_id: int, spans: Sequence[Span], *, by: str | None = None
) -> list[Outcome]:
    """Cancel the tasks ``spans`` name (ascending, disjoint: :func:`taskspans.spans`); each
    one's outcome, in id order. NotFound (404) naming them if some are not the job's,
    Refused (409) if the job is being canceled; nothing is written then."""
    reason = lifecycle.canceled_by(by)
    job = deps.store.get_job(job_id)
    refuse_outside(job, spans, done="canceled")
    if job.state is JobState.CANCELING:
        raise Refused(lifecycle.being_canceled(job_id))
    out: dict[int, Outcome] = {}
    cancels: list[tuple[str, CancelTask]] = []
    with deps.turn(job_id):  # cancels of one sweep's tasks all write its ranges
        for r in deps.store.get_ranges(job_id):
            if r.canceled_time is not None:  # (those canceled already, as first read)
                for i in _named(spans, r.first_id + r.cursor, r.first_id + r.count - 1):
                    if r.contains(i):
                        out[i] = _refusal(job_id, i, f"is already {TaskState.CANCELED}")
        stop = _cut_unborn(deps, job_id, spans, reason, out)
        left = [i for first, last in spans for i in range(first, last + 1) if i not in out]
        for page in (left[i : i + PAGE] for i in range(0, len(left), PAGE)):
            for chunk in chunks(deps.store.get_tasks(job_id, page)):  # (99, and by bytes)
                cancels += _cancel_stored(deps, job_id, [t.id for t in chunk], reason, out)
            for i in page:
                if i not in out:
                    out[i] = _unreached(deps, job_id, i, stop)
    deps.send_to_nodes(cancels)
    if any(o.state is TaskState.CANCELED for o in out.values()):
        settle(deps, job_id)  # others' ends, committed beside ours, may have made it due
        cancel_dependents(deps, job_id)
    return [out[i] for i in sorted(out)]


def refuse_outside(job: Job, spans: Sequence[Span], *, done: str) -> None:
    """NotFound (404) naming the ids beyond the job's tasks (``done``: what was not done)."""
    beyond = [(max(first, job.task_count + 1), last) for first, last in spans]
    beyond = [(first, last) for first, last in beyond if first <= last]
    if beyond:
        named = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in beyond[:5])
        more = f" and {len(beyond) - 5} more" if len(beyond) > 5 else ""
        raise NotFound(
            f"job {job.id} has tasks 1 to {job.task_count:,}; it has no task {named}{more}: "
            f"give ids in that range (nothing was {done})",
            taskCount=job.task_count,
        )


def _named(spans: Sequence[Span], low: int, high: int) -> Iterator[int]:
    """The ids of ``spans`` from ``low`` to ``high``."""
    for first, last in spans:
        yield from range(max(first, low), min(last, high) + 1)


def _cut_unborn(
    deps: Deps, job_id: int, spans: Sequence[Span], reason: str | None, out: dict[int, Outcome]
) -> str | None:
    """Cancel the named tasks of its sweeps not created yet, a commit at a time, until none
    is left; why it stopped early (the job is being canceled, or was too busy), else None."""

    def once() -> rangecut.Cut:
        job = deps.store.get_job(job_id)
        if job.state is JobState.CANCELING:
            raise Refused(lifecycle.being_canceled(job_id))
        cut = rangecut.plan(
            deps.store.get_ranges(job_id),
            spans,
            now=deps.clock(),
            reason=reason,
            max_docs=MAX_BATCH - 1,
            max_bytes=MAX_BATCH_BYTES - stored_size(job),
            size=size_bound,
        )
        if not cut.empty:
            for name, n in cut.moves:
                job.count(TaskState.QUEUED, TaskState.CANCELED, n, name=name)
            deps.store.commit(job=job, tasks=cut.tasks, ranges=cut.ranges)
        return cut

    return commit_runs(deps, once, _busy(job_id), TaskState.CANCELED, out)


def commit_runs(
    deps: Deps,
    once: Callable[[], rangecut.Cut],
    busy: str,
    state: TaskState,
    out: dict[int, Outcome],
) -> str | None:
    """Plan and commit (``once``) until a plan is empty, each task of its runs said as
    ``state`` in ``out``; why it stopped early (the job being canceled, or too busy: the
    rest is then said task by task), else None. A range cancel's and a range requeue's."""
    while True:
        try:
            cut = deps.retry_busy(once, busy=busy)
        except Conflict as e:  # (Refused too)
            return str(e)
        if cut.empty:
            return None
        for run in cut.runs:
            for k, i in enumerate(range(run.first, run.last + 1)):
                out[i] = Outcome(i, state, run.index + k * run.step)


def _cancel_stored(
    deps: Deps,
    job_id: int,
    ids: list[int],
    reason: str | None,
    out: dict[int, Outcome],
) -> list[tuple[str, CancelTask]]:
    """Cancel these stored tasks in one commit; the CancelTasks to send once it is stored."""

    def once() -> tuple[dict[int, Outcome], list[tuple[str, CancelTask]]]:
        job = deps.store.get_job(job_id)
        if job.state is JobState.CANCELING:
            raise Refused(lifecycle.being_canceled(job_id))
        now = deps.clock()
        found: dict[int, Outcome] = {}
        changed, cancels = [], []
        for task in deps.store.get_tasks(job_id, ids):
            if task.state in TASK_TERMINAL:
                found[task.id] = _refusal(job_id, task.id, f"is already {task.state}")
                continue
            change = lifecycle.cancel(task, now, reason)
            if change is None:  # active, but not placed: nothing to kill yet
                found[task.id] = _refusal(
                    job_id, task.id, f"is {task.state}", then="try again in a moment"
                )
                continue
            if change.old is not change.new:
                job.count(change.old, change.new, name=task.name)
            changed.append(task)
            cancels += change.cancels
            found[task.id] = Outcome(task.id, task.state, task.sweep_index)
        if changed:
            deps.store.commit(job=job, tasks=changed)
        return found, cancels

    try:
        found, cancels = deps.retry_busy(once, busy=_busy(job_id))
    except Conflict as e:
        found, cancels = {i: Outcome(i, None, error=str(e), status=409) for i in ids}, []
    out.update(found)
    return cancels


def _unreached(deps: Deps, job_id: int, task_id: int, stop: str | None) -> Outcome:
    """A named task neither stored nor cut: canceled meanwhile with its range, or left Queued
    when the cuts stopped early (``stop`` says why)."""
    try:
        task = sweeps.get_task(deps, job_id, task_id)
    except NotFound as e:
        return Outcome(task_id, None, error=str(e), status=404)
    if task.state is TaskState.QUEUED:
        why = stop or f"task {job_id}.{task_id} was not canceled: retry in a moment"
        return Outcome(task_id, None, error=why, status=409)
    return _refusal(job_id, task_id, f"is already {task.state}")


def _refusal(job_id: int, task_id: int, what: str, then: str = "nothing to cancel") -> Outcome:
    """As the one-task route refuses it (409)."""
    return Outcome(task_id, None, error=f"task {job_id}.{task_id} {what}; {then}", status=409)


def _busy(job_id: int) -> str:
    return (
        f"job {job_id} was busy (other changes to it were being saved at the same time), so "
        "these tasks were not canceled: retry in a moment"
    )
