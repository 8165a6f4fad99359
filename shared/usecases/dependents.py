"""What a requeue does to the dependents of what it requeues.

- Task dependencies (one job): ``hpc task requeue`` of a task that Failed or was Canceled
  also requeues the tasks canceled only because it did not finish, transitively
  (:func:`bring_back`; the rule: :mod:`shared.domain.lifecycle.dependents`), so they run once
  it Finishes. Tasks a user canceled, or that ended on their own, stay as they are.
- Job dependencies (``dependsOn`` jobs): a job canceled because its prerequisite job did not
  finish stays Canceled when that job (or a task of it) is requeued, as Slurm leaves one its
  ``kill_invalid_depend`` canceled; the requeue's answer names them (:func:`left_canceled`)
  so that their owner can requeue them (:func:`shared.domain.eligibility.left_canceled`).

Writes: the prerequisite's rerun is committed first (by its use case); then the dependents,
in task-id order (a prerequisite's id is below its dependents'), a chunk of at most
``CHUNK`` tasks or ranges with their job per transaction. Each chunk re-reads its job and
requeues a task only if its prerequisites hold no failure then, with the counts of the
chunk's earlier tasks applied: so every committed prefix is a state the doom rule
(:mod:`shared.usecases.taskdeps`) leaves as it is, and a prerequisite that failed again
meanwhile keeps its dependents canceled. A sweep's tasks not created yet come back as their
range (one document), never made one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from shared.domain import eligibility, lifecycle, taskgraph
from shared.domain.lifecycle import Doomed, group_of
from shared.domain.models import Job, Step, Task
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import TaskRange
from shared.usecases.cancel import task_pages
from shared.usecases.deps import JOB_PAGE, Deps, chunks

log = logging.getLogger(__name__)

SCAN_JOBS = 10 * JOB_PAGE
"""Canceled jobs newer than a requeued one read at most to name its dependents left
Canceled (newest first: a dependent's id is above its prerequisite's)."""


@dataclass(frozen=True)
class Requeued:
    """A task's requeue: the task as stored, and how many of its dependents came back."""

    task: Task
    dependents: int = 0


def bring_back(deps: Deps, job_id: int, steps: dict[str, Step], requeued: Task) -> int:
    """Requeue the tasks of ``job_id`` canceled only because ``requeued`` did not finish
    (it was just requeued; ``steps``: the job's steps as read before that). Returns how many
    came back (a range counts its tasks not created yet)."""
    if requeued.name not in steps:  # nothing depends on it
        return 0
    failed = lifecycle.failed_after(steps, requeued.name)
    job = deps.store.get_job(job_id)
    done = _bring_back(deps, job, failed, {requeued.name})
    if done:
        log.info("job %d: %d dependent task(s) requeued with task %d", job_id, done, requeued.id)
    return done


def bring_back_after(deps: Deps, job_id: int, names: set[str]) -> int:
    """:func:`bring_back` for many tasks requeued at once (``hpc task requeue 39 1-500``),
    of the names ``names``: called once they are all committed (the job's steps count them
    then). Returns how many came back, together."""
    job = deps.store.get_job(job_id)
    names = {name for name in names if name in job.steps}
    if not names:  # nothing depends on them
        return 0
    failed = {name: step.failed for name, step in job.steps.items()}
    done = _bring_back(deps, job, failed, names)
    if done:
        log.info("job %d: %d dependent task(s) requeued with %d names", job_id, done, len(names))
    return done


def _bring_back(deps: Deps, job: Job, failed: dict[str, int], names: set[str]) -> int:
    job_id = job.id
    groups: dict[Doomed, int] = {}
    parts: dict[Doomed, list[Task | TaskRange]] = {}
    for r in deps.store.get_ranges(job_id):
        if r.canceled_time is not None and r.canceled_for is not None and r.left:
            group = group_of(r.template.name, r.template.depends_on)
            groups[group] = groups.get(group, 0) + r.left
            parts.setdefault(group, []).append(r)
    for page in task_pages(deps, job_id, [TaskState.CANCELED]):
        for task in page:
            if task.canceled_for is not None:
                group = group_of(task.name, task.depends_on)
                groups[group] = groups.get(group, 0) + 1
                parts.setdefault(group, []).append(task)
    back = lifecycle.revived_after(
        failed, names, groups, run_dependents_on_failure=job.run_dependents_on_failure
    )
    todo = sorted((p for g in back for p in parts[g]), key=lambda p: p.id)
    return sum(deps.retry(_chunk, deps, job_id, chunk) for chunk in chunks(todo))


def _chunk(deps: Deps, job_id: int, part: Sequence[Task | TaskRange]) -> int:
    """Requeue one chunk's tasks and ranges still canceled as doomed, whose prerequisites
    hold no failure (the chunk's own earlier ones counted); how many tasks came back."""
    ids = [p.id for p in part if isinstance(p, Task)]
    stored = {t.id: t for t in deps.store.get_tasks(job_id, ids)}
    ranges = {r.first_id: r for r in deps.store.get_ranges(job_id)}
    job = deps.store.get_job(job_id)
    now = deps.clock()
    tasks: list[Task] = []
    reopened: list[TaskRange] = []
    done = 0
    for p in part:
        if isinstance(p, Task):
            task = stored.get(p.id)
            if task is None or task.canceled_for is None or _doomed(task.depends_on, job):
                continue
            change = lifecycle.rerun(task, now, priority=job.priority)
            if change is None:
                continue
            job.count(change.old, change.new, name=task.name)
            tasks.append(task)
            done += 1
            continue
        r = ranges.get(p.id)
        if r is None or r.canceled_time is None or r.canceled_for is None or not r.left:
            continue
        if _doomed(r.template.depends_on, job):
            continue
        r.canceled_time = None
        r.canceled_reason = r.canceled_for = None
        job.count(TaskState.CANCELED, TaskState.QUEUED, r.left, name=r.template.name)
        reopened.append(r)
        done += r.left
    if done:
        lifecycle.reopen_job(job, now)  # (reopened by the prerequisite's requeue already)
        deps.store.commit(job=job, tasks=tasks, ranges=reopened)
    return done


def _doomed(depends_on: Sequence[str], job: Job) -> bool:
    return taskgraph.doomed(depends_on, job.steps, job) is not None


def left_canceled(deps: Deps, job_id: int) -> list[int]:
    """The jobs canceled because job ``job_id`` did not finish (transitively), in the order
    to requeue them; they stay Canceled when it is requeued
    (:func:`shared.domain.eligibility.left_canceled`). Reads the Canceled jobs newer than it,
    at most :data:`SCAN_JOBS`."""
    newer: list[Job] = []
    before: int | None = None
    while len(newer) < SCAN_JOBS:
        page = deps.store.list_jobs(states=[JobState.CANCELED], limit=JOB_PAGE, before=before)
        newer += [j for j in page if j.id > job_id]
        if len(page) < JOB_PAGE or page[-1].id <= job_id:
            break
        before = page[-1].id
    return eligibility.left_canceled(job_id, newer)
