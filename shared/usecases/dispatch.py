"""The scheduler pass: place queued tasks on free cores and send each node its assignments.

One pass runs at a time (the scheduler queue is held by one session); placements are
written before they are sent, so a crash between the two leaves Dispatching tasks that
the reconciler requeues after HPC_DISPATCH_TIMEOUT_S, never a task running unrecorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from shared.domain import eligibility, lifecycle, scheduler
from shared.domain.jobspec import sweep_command
from shared.domain.messages import RunTask
from shared.domain.models import Job, Node, Task
from shared.domain.states import JobState
from shared.errors import Conflict, NotFound
from shared.usecases.deps import Deps, chunks
from shared.usecases.queries import job_states, used_cores

LOOKAHEAD_MIN = 100
"""Queued tasks a pass looks at even when few cores are free (room for backfill)."""


def schedule_pass(deps: Deps) -> int:
    """One scheduler pass; returns how many tasks it dispatched."""
    nodes = [n for n in deps.store.list_nodes() if n.incarnation > 0]
    active = deps.store.active_tasks()
    used = used_cores(active)
    free = sum(max(f, 0) for f in scheduler.free_cores(nodes, used).values())
    if free == 0:
        return 0  # nothing can be placed: do not read the queue at all
    # Look ahead far enough to backfill, not at the whole queue.
    window = min(deps.settings.scheduler_window, max(LOOKAHEAD_MIN, 4 * free))
    queued = runnable(deps, deps.store.queued_tasks(limit=window), active)
    placements = scheduler.plan(queued, nodes, used, running=active, now=deps.clock())
    if not placements:
        return 0
    tasks = {(t.job_id, t.id): t for t in queued}
    by_node = {n.name: n for n in nodes}
    by_job: dict[int, list[scheduler.Placement]] = defaultdict(list)
    for p in placements:
        by_job[p.job_id].append(p)
    dispatched = 0
    for job_id, job_placements in by_job.items():
        for chunk in chunks(job_placements):
            batch = _commit_chunk(deps, job_id, chunk, tasks, by_node)
            if batch is None:
                deps.kick()  # the job or a task changed under us: the next pass retries
                break
            deps.send_to_nodes((node, run) for node, run in batch)
            dispatched += len(batch)
    return dispatched


def runnable(deps: Deps, queued: Sequence[Task], active: Sequence[Task]) -> list[Task]:
    """The queued tasks whose jobs may run now (not held, prerequisites Finished), at most
    as many per job as its maxConcurrent still allows."""
    now = deps.clock()
    jobs = _jobs(deps, {t.job_id for t in queued})
    prerequisites = job_states(deps, {d for j in jobs.values() for d in j.depends_on})
    running: dict[int, int] = defaultdict(int)
    for task in active:
        running[task.job_id] += 1
    room: dict[int, int | None] = {}
    for job_id, job in jobs.items():
        if (
            eligibility.blocked(job, now=now, prerequisites=prerequisites, active=running[job_id])
            is None
        ):
            room[job_id] = eligibility.slots(job, running[job_id])
    out = []
    for task in queued:
        if task.job_id not in room:
            continue
        left = room[task.job_id]
        if left is not None:
            if left <= 0:
                continue
            room[task.job_id] = left - 1
        out.append(task)
    return out


def _jobs(deps: Deps, ids: set[int]) -> dict[int, Job]:
    out = {}
    for job_id in ids:
        try:
            out[job_id] = deps.store.get_job(job_id)
        except NotFound:
            continue
    return out


def _commit_chunk(
    deps: Deps,
    job_id: int,
    chunk: Sequence[scheduler.Placement],
    tasks: dict[tuple[int, int], Task],
    nodes: dict[str, Node],
) -> list[tuple[str, RunTask]] | None:
    try:
        job = deps.store.get_job(job_id)
    except NotFound:
        return []
    if job.state not in (JobState.QUEUED, JobState.RUNNING):
        return []
    now = deps.clock()
    batch: list[Task] = []
    runs: list[tuple[str, RunTask]] = []
    for p in chunk:
        task = tasks[(p.job_id, p.task_id)]
        node = nodes[p.node]
        change = lifecycle.dispatch(task, node=node.name, incarnation=node.incarnation, now=now)
        job.count(change.old, change.new)
        batch.append(task)
        runs.append((node.name, _run_task(task, node, p.group)))
    if job.state is JobState.QUEUED:
        job.move_to(JobState.RUNNING, now=now)
    try:
        deps.store.commit(job=job, tasks=batch)
    except Conflict:
        return None
    return runs


def _run_task(task: Task, node: Node, group: str | None) -> RunTask:
    env = {
        "HPC_JOB_ID": str(task.job_id),
        "HPC_TASK_ID": str(task.id),
        "HPC_SWEEP_INDEX": "" if task.sweep_index is None else str(task.sweep_index),
        "HPC_NODE_NAME": node.name,
        "HPC_NODE_GROUP": group or "",
        **task.env,
    }
    return RunTask(
        incarnation=node.incarnation,
        job_id=task.job_id,
        task_id=task.id,
        attempt=task.attempt,
        command=sweep_command(task.command, task.sweep_index),
        cores=task.cores,
        runtime_limit_s=task.runtime_limit_s,
        work_dir=task.work_dir,
        env=env,
    )
