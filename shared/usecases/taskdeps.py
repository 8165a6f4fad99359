"""Cancel the queued tasks of a job whose prerequisite tasks failed or were canceled
(shared.domain.taskgraph).

Called after task events end a task other than Finished, and by the reconciler (level-
triggered: whatever a crash between the two writes left undone is done on its next run).
Each cancel is one commit of the job and a chunk of its tasks or ranges, so a dependent
canceled here makes its own dependents doomed in the next round, until nothing changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shared.domain import lifecycle, taskgraph
from shared.domain.models import Job
from shared.domain.states import JobState, TaskState
from shared.errors import NotFound
from shared.usecases.cancel import task_pages
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


@dataclass
class _Ends:
    """How the tasks of each depended-on name that did not finish ended. A :class:`Step`
    counts Failed and Canceled together; so that a dependent's reason tells a failed
    prerequisite from a canceled one (a probe saw "failed" said of a canceled one), the
    job's Failed tasks are counted by name, once per round and only if something is doomed
    (Failed tasks are few beside what a round reads; a sweep's canceled ranges are never
    Failed). A step that moved since, other than by this round's own cancels, is not known:
    its reason then uses words that fit both."""

    deps: Deps
    seen: dict[str, int] | None = None
    """Each step's ``failed`` in the job read before counting (None: not counted yet)."""
    failed: dict[str, int] = field(default_factory=dict)
    ours: dict[str, int] = field(default_factory=dict)
    """Tasks this round canceled since, per name (Canceled: none of them Failed)."""

    def known(self, job: Job) -> dict[str, int]:
        """Failed tasks per name, for the names whose step is as counted; counts them from
        the store at the first call (``job`` then as read, with no change of this round)."""
        if self.seen is None:
            self.seen = {name: step.failed for name, step in job.steps.items()}
            for page in task_pages(self.deps, job.id, [TaskState.FAILED]):
                for task in page:
                    if task.name in self.seen:
                        self.failed[task.name] = self.failed.get(task.name, 0) + 1
        return {
            name: self.failed.get(name, 0)
            for name, n in self.seen.items()
            if name in job.steps and job.steps[name].failed == n + self.ours.get(name, 0)
        }

    def canceled(self, name: str, n: int) -> None:
        """This round canceled ``n`` tasks named ``name`` (after :meth:`known` was asked)."""
        if self.seen is not None and name in self.seen:
            self.ours[name] = self.ours.get(name, 0) + n


def failed_counts(deps: Deps, job: Job) -> dict[str, int]:
    """How many tasks of each depended-on name of ``job`` (as read) ended Failed."""
    return _Ends(deps).known(job)


def _round(deps: Deps, job_id: int) -> int:
    try:
        job = deps.store.get_job(job_id)
    except NotFound:
        return 0
    if not has_doomed(job):
        return 0
    done = 0
    ends = _Ends(deps)
    doomed_ranges = [
        r
        for r in deps.store.get_ranges(job_id)
        if r.open and taskgraph.doomed(r.template.depends_on, job.steps, job)
    ]
    for ranges in chunks(doomed_ranges):
        job = deps.store.get_job(job_id)  # read after the ranges: see the tasks' chunks below
        now = deps.clock()
        canceled = []
        for r in ranges:
            prerequisite = taskgraph.failed_prerequisite(r.template.depends_on, job.steps, job)
            if prerequisite is None:  # its prerequisite was requeued meanwhile
                continue
            r.canceled_time = now
            failed = ends.known(job)
            r.canceled_reason = taskgraph.doomed(r.template.depends_on, job.steps, job, failed)
            r.canceled_for = prerequisite
            job.count(TaskState.QUEUED, TaskState.CANCELED, r.left, name=r.template.name)
            ends.canceled(r.template.name, r.left)
            done += r.left
            canceled.append(r)
        if canceled:
            lifecycle.settle_job(job, now)
            deps.store.commit(job=job, ranges=canceled)
    after = 0
    while page := deps.store.list_tasks(job_id, states=[TaskState.QUEUED], after=after, limit=PAGE):
        after = page[-1].id
        doomed = [t for t in page if taskgraph.doomed(t.depends_on, job.steps, job)]
        for chunk in chunks(doomed):
            # The tasks first, then the job: a requeue that brings them back commits their
            # prerequisite's rerun first (lifecycle.dependents), so a task read Queued again
            # is judged by a job that shows its prerequisite queued too, never canceled anew
            # on a job read before that requeue (their etags hold only the tasks' own moves).
            tasks = deps.store.get_tasks(job_id, [t.id for t in chunk])
            job = deps.store.get_job(job_id)
            now = deps.clock()
            changed = []
            for task in tasks:
                failed = ends.known(job)
                reason = taskgraph.doomed(task.depends_on, job.steps, job, failed)
                change = lifecycle.cancel(task, now) if reason else None
                if change is not None and change.old is not change.new:
                    task.error = reason
                    task.canceled_for = taskgraph.failed_prerequisite(
                        task.depends_on, job.steps, job
                    )
                    job.count(change.old, change.new, name=task.name)
                    ends.canceled(task.name, 1)
                    changed.append(task)
            if changed:
                lifecycle.settle_job(job, now)
                deps.store.commit(job=job, tasks=changed)
                done += len(changed)
    if done:
        log.info(
            "job %d: %d dependent task(s) canceled: a prerequisite did not finish", job_id, done
        )
        settle(deps, job_id)  # (its cancels were counts-only commits: see usecases.settling)
    return done
