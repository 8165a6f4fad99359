"""Monitoring: jobs, tasks, nodes, node groups and task output, as the API shows them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain import eligibility, hosts, lifecycle, pending, taskgraph
from shared.domain.cluster import NodeGroup
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.errors import NotFound
from shared.ports.output import DEFAULT_READ_BYTES, Stream
from shared.usecases import sweeps
from shared.usecases.autoscale_memory import scaling_of
from shared.usecases.deps import Deps, all_jobs


def get_job(deps: Deps, job_id: int) -> Job:
    return deps.store.get_job(job_id)


def list_jobs(
    deps: Deps,
    *,
    states: Iterable[JobState] | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[Job]:
    """Newest first; ``before`` (a job id) continues a listing after its last job."""
    states = list(states) if states else None
    return deps.store.list_jobs(states=states, limit=limit, before=before)


def list_tasks(
    deps: Deps,
    job_id: int,
    *,
    states: Iterable[TaskState] | None = None,
    offset: int = 0,
    limit: int = 1000,
    after: int = 0,
) -> list[Task]:
    """Stored tasks and the tasks of sweeps not created yet, in id order."""
    return sweeps.list_tasks(
        deps,
        job_id,
        states=list(states) if states else None,
        offset=offset,
        limit=limit,
        after=after,
    )


def get_task(deps: Deps, job_id: int, task_id: int) -> Task:
    return sweeps.get_task(deps, job_id, task_id)


def pending_reasons(deps: Deps, tasks: Iterable[Task]) -> dict[tuple[int, int], str]:
    """Why each queued task of ``tasks`` waits (by (job, task)); other tasks are left out.
    What holds its job back comes first (a hold, a prerequisite job), then the task's own
    prerequisite tasks, then the job's maxConcurrent (a task waiting for a prerequisite task
    would wait below the cap too)."""
    queued = [t for t in tasks if t.state is TaskState.QUEUED]
    if not queued:
        return {}
    jobs: dict[int, Job] = {}
    for job_id in {t.job_id for t in queued}:
        try:
            jobs[job_id] = deps.store.get_job(job_id)
        except NotFound:
            continue
    held_back, capped_jobs = _job_blocks(deps, list(jobs.values()))
    nodes = deps.store.list_nodes()
    used = used_cores(deps.store.active_tasks())
    groups = deps.store.list_groups()
    capped = pending.capped(groups)
    scaling: dict[str, pending.GroupScaling] | None = None
    now = deps.clock()
    waiting: list[Job] | None = None
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
            reason = pending.still_running(lost)
        if not reason:
            if scaling is None:  # read once, only if some task waits for nodes or cores
                scaling = scaling_of(deps, [g for g in groups if g.name not in capped])
            reason = pending.pending_reason(task, nodes, used, capped, scaling, now)
            if reason is not None and reason.startswith("waiting for") and job is not None:
                if waiting is None:  # read once, only if some task waits for cores
                    waiting = list(all_jobs(deps.store, [JobState.QUEUED, JobState.RUNNING]))
                reason = pending.behind(job, waiting, reason)
        if reason is not None:
            out[(task.job_id, task.id)] = reason
    return out


def job_pending_reasons(deps: Deps, jobs: Iterable[Job]) -> dict[int, str]:
    """Why each job that still has queued tasks waits: what holds the job back, else the
    reason of its first queued task."""
    jobs = [j for j in jobs if j.state in (JobState.QUEUED, JobState.RUNNING)]
    held_back, capped_jobs = _job_blocks(deps, jobs)
    blocked = {**capped_jobs, **held_back}
    firsts = []
    for job in jobs:
        if job.id not in blocked and job.task_counts.get(TaskState.QUEUED):
            first = sweeps.first_queued(deps, job.id)
            firsts += [first] if first is not None else []
    reasons = {key[0]: reason for key, reason in pending_reasons(deps, firsts).items()}
    return {**reasons, **blocked}


def _job_blocks(deps: Deps, jobs: Sequence[Job]) -> tuple[dict[int, str], dict[int, str]]:
    """What holds each job back (a hold, a prerequisite job), and which jobs are at their
    ``maxConcurrent`` (:mod:`shared.domain.eligibility`), each by job id."""
    now = deps.clock()
    states = job_states(deps, {d for j in jobs for d in j.depends_on})
    active: dict[int, int] = {}
    if any(j.max_concurrent for j in jobs):
        for task in deps.store.active_tasks():
            active[task.job_id] = active.get(task.job_id, 0) + 1
    held_back, capped = {}, {}
    for job in jobs:
        why = eligibility.held_back(job, now=now, prerequisites=states)
        if why is not None:
            held_back[job.id] = why
        cap = eligibility.at_cap(job, active.get(job.id, 0))
        if cap is not None:
            capped[job.id] = cap
    return held_back, capped


def job_states(deps: Deps, ids: set[int]) -> dict[int, JobState | None]:
    """Each job's state (None: it does not exist)."""
    out: dict[int, JobState | None] = {}
    for job_id in ids:
        try:
            out[job_id] = deps.store.get_job(job_id).state
        except NotFound:
            out[job_id] = None
    return out


@dataclass(frozen=True)
class OutputPage:
    """One byte range of one attempt's stream, and what the whole stream is."""

    data: bytes
    attempt: int
    """The attempt served (the one asked for, else the task's result attempt, else its latest)."""
    offset: int
    size: int
    """The stream's whole size now (the truncation marker included)."""
    truncated: bool
    """The agent cut the stream at HPC_MAX_OUTPUT_BYTES (it ends with a line saying so)."""


def read_output(
    deps: Deps,
    job_id: int,
    task_id: int,
    stream: Stream,
    *,
    attempt: int | None = None,
    offset: int = 0,
    limit: int = DEFAULT_READ_BYTES,
) -> OutputPage:
    """Bytes ``offset`` to ``offset + limit`` of one attempt's stream. No ``attempt``: the
    attempt the task's state comes from (``result_attempt``), else its current one."""
    task = get_task(deps, job_id, task_id)
    if attempt is None:
        attempt = task.result_attempt if task.result_attempt is not None else task.attempt
    elif not 0 <= attempt <= task.attempt:
        had = "only attempt 0" if task.attempt == 0 else f"attempts 0 to {task.attempt}"
        raise NotFound(f"task {job_id}.{task_id} has no attempt {attempt}: it had {had}")
    unplaced = never_placed(task, attempt)
    if unplaced:
        raise NotFound(unplaced)
    data = deps.output.read(job_id, task_id, stream, attempt=attempt, offset=offset, limit=limit)
    info = deps.output.info(job_id, task_id, stream, attempt=attempt)
    return OutputPage(
        data=data,
        attempt=attempt,
        offset=offset,
        size=max(info.size, (offset + len(data)) if data else 0),
        truncated=info.truncated,
    )


def never_placed(task: Task, attempt: int) -> str | None:
    """Why ``attempt`` of ``task`` has no output because it never reached a node (a 404, as
    for an attempt the task never had: an empty 200 read as "it ran and wrote nothing");
    None if it may have. Only the current attempt's placement is recorded: an earlier one
    is read as it is (a requeue follows a run, or a cancel while queued)."""
    if attempt != task.attempt or task.result_attempt == attempt:
        return None
    if task.node or task.hosts or task.dispatch_time or task.start_time:
        return None
    key = f"task {task.key}"
    if task.state is not TaskState.QUEUED:
        return f"{key} never ran (it is {task.state}): no output"
    earlier = f"0 to {attempt - 1}" if attempt > 1 else "0"
    earlier = f" (its earlier attempts: --attempt {earlier})" if attempt else ""
    return f"{key} has not run yet: no output{earlier}"


def list_nodes(deps: Deps) -> list[dict[str, Any]]:
    """Nodes with their running task count and free cores (from the store's accounting)."""
    active = deps.store.active_tasks()
    used = used_cores(active)
    running: dict[str, int] = defaultdict(int)
    for task in active:
        if task.node:
            running[task.node] += 1
    out = []
    for node in deps.store.list_nodes():
        doc = node.to_dict()
        for private in ("etag", "agentId", "hostId", "missingSince"):
            doc.pop(private, None)
        doc["runningTasks"] = running[node.name]
        doc["freeCores"] = max(node.cores - used[node.name], 0)
        out.append(doc)
    return out


def list_groups(deps: Deps) -> list[NodeGroup]:
    return deps.store.list_groups()


def used_cores(active: Iterable[Task | hosts.Holding]) -> dict[str, int]:
    """Cores each node's active tasks hold: the store's accounting, not the agents' word.
    A multi-node task's cores count on every node it holds."""
    return defaultdict(int, hosts.used_cores(active))
