"""Why each queued task or job waits (``pendingReason`` in the API, ``hpc task view``): what
holds its job back, its prerequisites, a held lost attempt, then what the scheduler and the
autoscaler would do with it. The words are pure (:mod:`shared.domain.pending`); this reads
what they need, and only what a reason asks for.

Its own module, not :mod:`shared.usecases.queries`: a task held back by a reservation is
told so from the same window and pure call a scheduler pass makes
(:func:`shared.usecases.dispatch.preview`), and the dispatch reads queries' neighbours."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import cast

from shared.domain import eligibility, fairshare, lifecycle, pending, pending_scaling, taskgraph
from shared.domain.cluster import Node
from shared.domain.hosts import used_cores
from shared.domain.jobexclusive import occupancy
from shared.domain.memoryfit import held_memory
from shared.domain.models import Job, Task
from shared.domain.reservation import Reservation
from shared.domain.states import JobState, TaskState
from shared.errors import NotFound
from shared.usecases import dispatch, sweeps
from shared.usecases.autoscale_memory import scaling_of
from shared.usecases.deps import Deps, all_jobs
from shared.usecases.queries import job_states


def pending_reasons(deps: Deps, tasks: Iterable[Task]) -> dict[tuple[int, int], str]:
    """Why each queued task of ``tasks`` waits (by (job, task)); other tasks are left out.
    What holds its job back comes first (a hold, a prerequisite job), then the task's own
    prerequisite tasks, then the job's maxConcurrent (a task waiting for a prerequisite task
    would wait below the cap too). A task that fits now but that a scheduler pass would
    leave queued names the job the pass reserves nodes for."""
    queued = [t for t in tasks if t.state is TaskState.QUEUED]
    if not queued:
        return {}
    jobs: dict[int, Job] = {}
    for job_id in {t.job_id for t in queued}:
        try:
            jobs[job_id] = deps.store.get_job(job_id)
        except NotFound:
            continue
    active = deps.store.active_tasks()
    blocks = _job_blocks(deps, list(jobs.values()), active)
    return _reasons(deps, queued, jobs, blocks, active)


def _reasons(
    deps: Deps,
    queued: Sequence[Task],
    jobs: Mapping[int, Job],
    blocks: tuple[dict[int, str], dict[int, str]],
    active: Sequence[Task],
) -> dict[tuple[int, int], str]:
    """:func:`pending_reasons` of ``queued`` (all Queued), given their jobs as read, what
    holds those back (:func:`_job_blocks`) and the active tasks."""
    held_back, capped_jobs = blocks
    nodes = deps.store.list_nodes()
    used = used_cores(active)
    occupied = occupancy(active)
    held_mb = held_memory(active)
    groups = deps.store.list_groups()
    capped = pending_scaling.capped(groups)
    scaling: dict[str, pending_scaling.GroupScaling] | None = None
    now = deps.clock()
    waiting: list[Job] | None = None
    use: dict[str, int] | None = None
    prerequisites: dict[int, JobState | None] = {}
    seen: tuple[Reservation | None, set[Hashable]] | None = None
    out: dict[tuple[int, int], str] = {}
    for task in queued:
        job = jobs.get(task.job_id)
        reason = (
            held_back.get(task.job_id)
            or (job and taskgraph.waiting_for(task, job))
            or capped_jobs.get(task.job_id)
        )
        lost = lifecycle.held_by_lost(task, now) if task.lost and not reason else None
        if lost is not None:
            reason = pending.still_running(lost, task.error)
        if not reason:
            if scaling is None:  # read once, only if some task waits for nodes or cores
                memory = any(t.min_memory_mb is not None for t in queued)
                scaling = scaling_of(
                    deps, [g for g in groups if g.name not in capped], nodes if memory else None
                )
            reason = pending.pending_reason(
                task, nodes, used, capped, scaling, now, occupied, held_mb
            )
            if reason is not None and reason.startswith(("next in line", "waiting for")):
                if seen is None:  # a pass's reservation, computed once, only if asked for
                    seen = _reservation(deps, nodes, active)
                reason = _reserved(task, reason, *seen)
            if reason is not None and reason.startswith("waiting for") and job is not None:
                if waiting is None:  # read once, only if some task waits for cores
                    waiting = list(all_jobs(deps.store, [JobState.QUEUED, JobState.RUNNING]))
                    prerequisites = job_states(deps, {d for j in waiting for d in j.depends_on})
                    owners = {j.id: j.owner for j in waiting}
                    use = fairshare.in_use(active, owners) if deps.settings.fair_share else None
                reason = pending.behind(
                    job, waiting, reason, now=now, prerequisites=prerequisites, use=use
                )
        if reason is not None:
            out[(task.job_id, task.id)] = reason
    return out


def _reserved(task: Task, reason: str, reservation: Reservation | None, left: set[Hashable]) -> str:
    """``reason`` as the reservation changes it: the reserved task's says what is kept for
    it; a task that fits now but the pass would leave queued (``left``) is held back for
    the reserved one."""
    if reservation is None:
        return reason
    key = (task.job_id, task.id)
    if key == reservation.key:
        return f"{reason}; {pending.reserved_for_it(reservation)}"
    if key in left and reason.startswith("next in line"):
        reserved = cast(tuple[int, int], reservation.key)  # the cluster's: (job, task)
        return pending.held_for(reserved, reservation)
    return reason


def _reservation(
    deps: Deps, nodes: Sequence[Node], active: Sequence[Task]
) -> tuple[Reservation | None, set[Hashable]]:
    """The reservation a scheduler pass would make now, and the tasks it would look at but
    not start (the same window and pure call as the pass: :func:`dispatch.preview`)."""
    seen = dispatch.preview(deps, nodes, active)
    if seen is None:
        return None, set()
    decision, queued = seen
    starting = {s.key for s in decision.starts}
    return decision.reservation, {k for t in queued if (k := (t.job_id, t.id)) not in starting}


def job_pending_reasons(deps: Deps, jobs: Iterable[Job]) -> dict[int, str]:
    """Why each job that still has queued tasks waits: what holds the job back, else the
    reason of its first queued task."""
    # only jobs with a task left to start wait (a probe read "maxConcurrent 2 reached" and
    # "held" on jobs whose every task was running)
    jobs = [
        j
        for j in jobs
        if j.state in (JobState.QUEUED, JobState.RUNNING) and j.task_counts.get(TaskState.QUEUED)
    ]
    held_back, capped_jobs = _job_blocks(deps, jobs)
    blocked = {**capped_jobs, **held_back}
    firsts = []
    for job in jobs:
        if job.id not in blocked:
            first = sweeps.first_queued(deps, job.id)
            firsts += [first] if first is not None else []
    if not firsts:
        return blocked
    # the jobs as just listed, and what holds them back as just found (none of the firsts')
    by_id = {j.id: j for j in jobs}
    found = _reasons(deps, firsts, by_id, (held_back, capped_jobs), deps.store.active_tasks())
    reasons = {key[0]: reason for key, reason in found.items()}
    return {**reasons, **blocked}


def _job_blocks(
    deps: Deps, jobs: Sequence[Job], active: Sequence[Task] | None = None
) -> tuple[dict[int, str], dict[int, str]]:
    """What holds each job back (a hold, a prerequisite job), and which jobs are at their
    ``maxConcurrent`` (:mod:`shared.domain.eligibility`), each by job id. ``active``: the
    active tasks if already read (else read here, only if some job has a maxConcurrent)."""
    now = deps.clock()
    states = job_states(deps, {d for j in jobs for d in j.depends_on})
    running: dict[int, int] = {}
    if any(j.max_concurrent for j in jobs):
        for task in active if active is not None else deps.store.active_tasks():
            running[task.job_id] = running.get(task.job_id, 0) + 1
    held_back, capped = {}, {}
    for job in jobs:
        why = eligibility.held_back(job, now=now, prerequisites=states)
        if why is not None:
            held_back[job.id] = why
        cap = eligibility.at_cap(job, running.get(job.id, 0))
        if cap is not None:
            capped[job.id] = cap
    return held_back, capped
