"""The scheduler pass: place queued tasks on free cores and send each node its assignments.

One pass runs at a time (the scheduler queue is held by one session); placements are
written before they are sent, so a crash between the two leaves Dispatching tasks that
the reconciler requeues after HPC_DISPATCH_TIMEOUT_S, never a task running unrecorded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from shared.domain import eligibility, lifecycle, scheduler
from shared.domain.cluster import Node
from shared.domain.hosts import Seat, held, host_list
from shared.domain.jobspec import sweep_command
from shared.domain.messages import SCHEDULER_LOCK_MS, RunTask
from shared.domain.models import Host, Task, TaskRange
from shared.domain.outputpaths import OutputIds, expand_optional
from shared.domain.protocol import carries_owner
from shared.domain.states import JobState
from shared.errors import Conflict, NotFound
from shared.ports.bus import MAX_MESSAGE_BYTES, OutgoingMessage
from shared.ports.store import MAX_BATCH
from shared.usecases import taskdeps
from shared.usecases.deps import Deps, chunks
from shared.usecases.queries import used_cores
from shared.usecases.queue import runnable_queue
from shared.usecases.settling import settle

RANGES_PER_COMMIT = 10
CHUNK = MAX_BATCH - 1 - RANGES_PER_COMMIT
"""Placements per commit: the job and up to RANGES_PER_COMMIT ranges ride in the same batch."""
LOOKAHEAD_MIN = 100
"""Queued tasks a pass looks at even when few cores are free (room for backfill)."""
PASS_BUDGET = timedelta(milliseconds=SCHEDULER_LOCK_MS // 2)
"""A pass stops placing after this long and kicks the next pass to go on. In Azure the
scheduler trigger is a batch, and Azure renews no lock for a batch: a pass that outlived
the kick's lock (and the session's) would see them delivered to another instance while it
still runs, two passes side by side. Half the lock leaves the other half for the commit
in flight, the sends and the settlement (docs/functions.md)."""


def schedule_pass(deps: Deps) -> int:
    """One scheduler pass; returns how many tasks it dispatched. It ends within
    PASS_BUDGET (between two commits), kicking the next pass if work is left."""
    started = deps.clock()
    nodes = [n for n in deps.store.list_nodes() if n.incarnation > 0]
    active = deps.store.holdings()
    used = used_cores(active)
    free = sum(max(f, 0) for f in scheduler.free_cores(nodes, used).values())
    if free == 0:
        return 0  # nothing can be placed: do not read the queue at all
    # Look ahead far enough to backfill, not at the whole queue.
    window = min(deps.settings.scheduler_window, max(LOOKAHEAD_MIN, 4 * free))
    queued = runnable_queue(deps, limit=window, active=active)
    placements = scheduler.plan(queued, nodes, used, running=active, now=deps.clock())
    if not placements:
        return 0
    tasks = {(t.job_id, t.id): t for t in queued}
    by_node = {n.name: n for n in nodes}
    by_job: dict[int, list[scheduler.Placement]] = defaultdict(list)
    for p in placements:
        by_job[p.job_id].append(p)
    dispatched = 0
    commits = 0
    for job_id, job_placements in by_job.items():
        for chunk in chunks(job_placements, CHUNK):
            if commits and deps.clock() - started >= PASS_BUDGET:
                deps.kick()  # out of time (the first commit always goes): the next pass goes on
                return dispatched
            commits += 1
            batch = _commit_chunk(deps, job_id, chunk, tasks, by_node)
            if batch is None:
                deps.kick()  # the job or a task changed under us: the next pass retries
                break
            deps.send_node_messages(batch)
            dispatched += len(batch)
    return dispatched


def _commit_chunk(
    deps: Deps,
    job_id: int,
    chunk: Sequence[scheduler.Placement],
    tasks: dict[tuple[int, int], Task],
    nodes: dict[str, Node],
) -> list[OutgoingMessage] | None:
    """Commit the chunk's tasks as dispatched (one transaction with the job's counts) and
    return their assignments as bus messages; None: the job or a task changed under us."""
    try:
        job = deps.store.get_job(job_id)
    except NotFound:
        return []
    if job.state not in (JobState.QUEUED, JobState.RUNNING) or eligibility.held(job, deps.clock()):
        return []  # (its counts-only commit would not be refused by a cancel or hold since)
    try:
        chunk, ranges = _born(deps, job_id, chunk, tasks)
    except Conflict:
        return None
    now = deps.clock()
    batch: list[Task] = []
    runs: list[OutgoingMessage] = []
    failed = False
    for p in chunk:
        task = tasks[(p.job_id, p.task_id)]
        node = nodes[p.node]
        hosts = lifecycle.placed_hosts(
            task, node=node.name, incarnation=node.incarnation, hosts=p.hosts
        )
        run = _run_task(task, node, p.group, hosts, owner=job.owner)
        message = deps.node_message(node.name, run)
        size = message.size_bytes()
        if size > MAX_MESSAGE_BYTES:
            reason = (
                f"its assignment is {size:,} bytes; a bus message is at most "
                f"{MAX_MESSAGE_BYTES:,} (Service Bus Standard): shorten its command, env or paths"
            )
            change = lifecycle.undeliverable(task, reason, now)
            failed = True
        else:
            change = lifecycle.dispatch(
                task, node=node.name, incarnation=node.incarnation, now=now, hosts=hosts
            )
            runs.append(message)
        if change is not None:
            job.count(change.old, change.new, name=task.name)
        batch.append(task)
    if job.state is JobState.QUEUED and runs:
        job.move_to(JobState.RUNNING, now=now)
    try:
        deps.store.commit(job=job, tasks=batch, ranges=ranges)
    except Conflict:
        return None
    if failed:
        settle(deps, job_id)
        if taskdeps.has_doomed(job):
            taskdeps.cancel_doomed_tasks(deps, job_id)
    return runs


def _born(
    deps: Deps,
    job_id: int,
    chunk: Sequence[scheduler.Placement],
    tasks: dict[tuple[int, int], Task],
) -> tuple[list[scheduler.Placement], list[TaskRange]]:
    """The placements to commit, and the ranges whose cursors move past the tasks of theirs
    placed (created in the same commit). A range's tasks are created in id order from its
    cursor: placements past a gap wait for the next pass. Conflict if a range moved since
    the queue was read."""
    unborn = [p for p in chunk if tasks[(p.job_id, p.task_id)].etag is None]
    if not unborn:
        return list(chunk), []
    ranges = deps.store.get_ranges(job_id)
    keep = {p.task_id for p in chunk} - {p.task_id for p in unborn}
    moved: list[TaskRange] = []
    placed = sorted(p.task_id for p in unborn)
    for r in ranges:
        mine = [i for i in placed if r.first_id <= i < r.first_id + r.count]
        if not mine or len(moved) >= RANGES_PER_COMMIT:
            continue  # (more ranges than a commit holds: the rest wait for the next pass)
        if not r.open or mine[0] != r.first_id + r.cursor:
            raise Conflict(f"range {r.key} moved since the queue was read")
        for task_id in mine:
            if task_id != r.first_id + r.cursor:
                break  # a gap: the rest of this range waits for the next pass
            r.cursor += 1
            keep.add(task_id)
        moved.append(r)
    return [p for p in chunk if p.task_id in keep], moved


def _run_task(
    task: Task,
    node: Node,
    group: str | None,
    hosts: Sequence[Host | Seat] | None = None,
    *,
    owner: str | None = None,
) -> RunTask:
    """The assignment for the task's first node (a multi-node task's other nodes get none:
    its command starts the rest, e.g. mpirun --host $HPC_NODES); ``hosts``: its placement's
    (:func:`shared.domain.lifecycle.placed_hosts`), None: those it holds. ``owner`` (the
    job's) goes only to an agent that reads it (:func:`shared.domain.protocol.carries_owner`):
    an older one would refuse the assignment."""
    hosts = held(task) if hosts is None else hosts
    env = {
        "HPC_JOB_ID": str(task.job_id),
        "HPC_TASK_ID": str(task.id),
        "HPC_SWEEP_INDEX": "" if task.sweep_index is None else str(task.sweep_index),
        "HPC_NODE_NAME": node.name,
        "HPC_NODE_GROUP": group or "",
        "HPC_TASK_CORES": str(sum(h.cores for h in hosts)),
        "HPC_NODES": host_list(hosts),
        **task.env,
    }
    return RunTask(
        incarnation=node.incarnation,
        job_id=task.job_id,
        task_id=task.id,
        attempt=task.attempt,
        command=sweep_command(task.command, task.sweep_index),
        cores=hosts[0].cores if hosts else task.cores,
        runtime_limit_s=task.runtime_limit_s,
        work_dir=task.work_dir,
        stdout=expand_optional(task.stdout, _output_ids(task)),
        stderr=expand_optional(task.stderr, _output_ids(task)),
        env=env,
        owner=owner if carries_owner(node.agent_protocol) else None,
    )


def _output_ids(task: Task) -> OutputIds:
    """What the placeholders of the task's --stdout / --stderr stand for."""
    return OutputIds(job_id=task.job_id, task_id=task.id, sweep_index=task.sweep_index)
