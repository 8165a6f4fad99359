"""The scheduling queue: the queued tasks the scheduler (and the autoscaler) may start now,
in scheduling order: priority high first; then, between users, the one whose tasks hold the
fewest cores now (fair share, :mod:`shared.domain.fairshare`; HPC_FAIR_SHARE); then submit
time, job id, task id.

Two sources are merged: stored Queued tasks, and the tasks of open sweep ranges that do not
exist yet (made from the range on the fly, stored only when dispatched; see
:class:`~shared.domain.taskrange.TaskRange`). Jobs that cannot start anything now (held,
waiting for prerequisite jobs, at their maxConcurrent) are left out, and a capped job gets
no more tasks than its free slots, so such work never crowds runnable work out of the
window a pass looks at; so are tasks whose prerequisite tasks have not finished
(shared.domain.taskgraph). Stored tasks of left-out jobs are excluded by the store's query
when they filled a window (a held 10,000-task job cannot starve the jobs behind it).
"""

from __future__ import annotations

import contextlib
import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from shared.domain import eligibility, fairshare, lifecycle, taskgraph
from shared.domain.hosts import Holding
from shared.domain.models import Job, Task
from shared.domain.states import JobState
from shared.domain.taskrange import TaskRange
from shared.errors import NotFound
from shared.usecases.deps import Deps
from shared.usecases.queries import job_states

ROUNDS = 3
"""Reads of the queue at most per call (each excluding the jobs the previous one found blocked)."""


def runnable_queue(deps: Deps, *, limit: int, active: Sequence[Task | Holding]) -> list[Task]:
    """Up to ``limit`` queued tasks that may start now as far as their jobs go (the scheduler
    then decides where cores allow), in scheduling order."""
    running = Counter(t.job_id for t in active)
    room: dict[int, int | None] = {}
    """Job id -> tasks it may still start (None: no cap); a job absent from it is blocked."""
    jobs: dict[int, Job] = {}
    seen: set[int] = set()
    exclude: set[int] = set()
    kept: list[Task] = []
    """Tasks found runnable in a job that a later round excludes (it also has blocked ones)."""
    out: list[Task] = []
    now = deps.clock()
    owners: dict[int, str] = {}
    """Owners of the jobs of ``active`` (read once, only if fair share has users to part)."""
    for _ in range(ROUNDS):
        stored = deps.store.queued_tasks(limit=limit, exclude_jobs=exclude)
        ranges = deps.store.open_ranges(limit=limit, exclude_jobs=exclude)
        new = ({t.job_id for t in stored} | {r.job_id for r in ranges}) - seen
        room.update(_room(deps, new, running, jobs, now))
        seen |= new
        left = dict(room)
        out, blocked = [], set()
        open_ranges = [
            r
            for r in ranges
            if r.job_id in left and taskgraph.waiting_for(r.template, jobs[r.job_id]) is None
        ]
        streams = [_unborn(r, left) for r in open_ranges]
        merge: fairshare.FairMerge | None = None
        tasks: Iterable[tuple[Task, str]]
        if deps.settings.fair_share and len({jobs[j].owner for j in room}) > 1:
            owners = owners or _owners(deps, {t.job_id for t in active}, jobs)
            use = fairshare.in_use(active, owners)
            merge = _fair(stored, kept, zip(open_ranges, streams, strict=True), jobs, use)
            tasks = merge
        else:
            tasks = ((t, "") for t in heapq.merge(stored, kept, *streams, key=fairshare.first_come))
        for task, user in tasks:
            slots = left.get(task.job_id, 0)
            if task.job_id not in left or slots == 0:
                blocked.add(task.job_id)
                continue
            if task.depends_on and taskgraph.waiting_for(task, jobs[task.job_id]) is not None:
                blocked.add(task.job_id)  # (its prerequisites come first: lower ids)
                continue
            if task.lost and lifecycle.held_by_lost(task, now) is not None:
                # its previous attempt may still run (its node's kill is not known); as for
                # prerequisites, a full window is read again past the job (held tasks come
                # in hundreds when a big node goes offline)
                blocked.add(task.job_id)
                continue
            if slots is not None:
                left[task.job_id] = slots - 1
            out.append(task)
            if merge is not None:
                merge.took(task, user)
            if len(out) >= limit:
                return out
        window_full = len(stored) >= limit or len(ranges) >= limit
        if not window_full or not blocked - exclude:
            break
        kept = sorted(
            {(t.job_id, t.id): t for t in [*kept, *out]}.values(), key=fairshare.first_come
        )
        kept = [t for t in kept if t.job_id in blocked | exclude]
        exclude |= blocked
    return out


def _fair(
    stored: list[Task],
    kept: list[Task],
    streams: Iterable[tuple[TaskRange, Iterator[Task]]],
    jobs: Mapping[int, Job],
    use: Mapping[str, int],
) -> fairshare.FairMerge:
    """The window's sources (each in first-come order) split by user, merged fairly."""
    per_user: dict[str, list[Iterable[Task]]] = defaultdict(list)
    for listed in (stored, kept):
        mine: dict[str, list[Task]] = defaultdict(list)
        for task in listed:
            mine[_owner(jobs, task.job_id)].append(task)
        for user, tasks in mine.items():
            per_user[user].append(tasks)
    for r, stream in streams:
        per_user[_owner(jobs, r.job_id)].append(stream)
    return fairshare.FairMerge(
        {u: heapq.merge(*its, key=fairshare.first_come) for u, its in per_user.items()}, use
    )


def _owner(jobs: Mapping[int, Job], job_id: int) -> str:
    job = jobs.get(job_id)
    return job.owner if job is not None else ""


def _owners(deps: Deps, job_ids: set[int], jobs: Mapping[int, Job]) -> dict[int, str]:
    """The owner of each of these jobs (those read already, then the others: the running
    jobs with nothing queued in the window, whose cores count for their user all the same)."""
    out = {j: jobs[j].owner for j in job_ids if j in jobs}
    for job_id in job_ids - out.keys():
        with contextlib.suppress(NotFound):
            out[job_id] = deps.store.get_job(job_id).owner
    return out


def _room(
    deps: Deps, job_ids: set[int], running: Counter[int], jobs: dict[int, Job], now: datetime
) -> dict[int, int | None]:
    """How many tasks each of these jobs may start now; blocked jobs are left out. The jobs
    read are added to ``jobs``."""
    found: dict[int, Job] = {}
    for job_id in job_ids:
        try:
            found[job_id] = deps.store.get_job(job_id)
        except NotFound:
            continue
        if found[job_id].state not in (JobState.QUEUED, JobState.RUNNING):
            del found[job_id]  # (ending, or not visible yet)
    jobs.update(found)
    prerequisites = job_states(deps, {d for j in found.values() for d in j.depends_on})
    out: dict[int, int | None] = {}
    for job_id, job in found.items():
        active = running[job_id]
        if eligibility.blocked(job, now=now, prerequisites=prerequisites, active=active) is None:
            out[job_id] = eligibility.slots(job, active)
    return out


def _unborn(r: TaskRange, left: dict[int, int | None]) -> Iterator[Task]:
    """The range's tasks not created yet, while its job may start more."""
    for task_id in r.unborn_ids():  # (not those canceled alone: they exist, Canceled)
        if left.get(r.job_id, 0) == 0:
            return
        yield r.task(task_id)
