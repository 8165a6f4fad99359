"""Cancel the queued tasks of a job whose prerequisite tasks failed (shared.domain.taskgraph).

Called after task events end a task other than Finished, and by the reconciler (level-
triggered: whatever a crash between the two writes left undone is done on its next run).
Each cancel is one commit of the job and a chunk of its tasks or ranges, so a dependent
canceled here makes its own dependents doomed in the next round, until nothing changes.
"""

from __future__ import annotations

import logging

from shared.domain import lifecycle, taskgraph
from shared.domain.models import Job
from shared.domain.states import JobState, TaskState
from shared.errors import NotFound
from shared.usecases.deps import Deps, chunks
from shared.usecases.settling import settle

log = logging.getLogger(__name__)

PAGE = 1000


def has_doomed(job: Job) -> bool:
    """Some of its tasks may be doomed: a depended-on step failed and the job does not run
    dependents anyway."""
    return (
        not job.run_dependents_on_failure
        and job.state in (JobState.QUEUED, JobState.RUNNING)
        and any(step.failed for step in job.steps.values())
    )


def cancel_doomed_tasks(deps: Deps, job_id: int) -> int:
    """Cancel, with the reason, every queued task of the job whose prerequisite failed
    (transitively); returns how many were canceled."""
    total = 0
    while True:
        canceled = deps.retry(_round, deps, job_id)
        if not canceled:
            return total
        total += canceled


def _round(deps: Deps, job_id: int) -> int:
    try:
        job = deps.store.get_job(job_id)
    except NotFound:
        return 0
    if not has_doomed(job):
        return 0
    done = 0
    doomed_ranges = [
        r
        for r in deps.store.get_ranges(job_id)
        if r.open and taskgraph.doomed(r.template.depends_on, job.steps, job)
    ]
    for ranges in chunks(doomed_ranges):
        job = deps.store.get_job(job_id)
        now = deps.clock()
        for r in ranges:
            r.canceled_time = now
            r.canceled_reason = taskgraph.doomed(r.template.depends_on, job.steps, job)
            job.count(TaskState.QUEUED, TaskState.CANCELED, r.left, name=r.template.name)
            done += r.left
        lifecycle.settle_job(job, now)
        deps.store.commit(job=job, ranges=ranges)
    after = 0
    while page := deps.store.list_tasks(job_id, states=[TaskState.QUEUED], after=after, limit=PAGE):
        after = page[-1].id
        doomed = [t for t in page if taskgraph.doomed(t.depends_on, job.steps, job)]
        for chunk in chunks(doomed):
            job = deps.store.get_job(job_id)
            now = deps.clock()
            changed = []
            for task in deps.store.get_tasks(job_id, [t.id for t in chunk]):
                reason = taskgraph.doomed(task.depends_on, job.steps, job)
                change = lifecycle.cancel(task, now) if reason else None
                if change is not None and change.old is not change.new:
                    task.error = reason
                    job.count(change.old, change.new, name=task.name)
                    changed.append(task)
            if changed:
                lifecycle.settle_job(job, now)
                deps.store.commit(job=job, tasks=changed)
                done += len(changed)
    if done:
        log.info("job %d: %d dependent task(s) canceled: a prerequisite failed", job_id, done)
        settle(deps, job_id)  # (its cancels were counts-only commits: see usecases.settling)
    return done
