"""The scheduler pass: place queued tasks on free cores and send each node its assignments.

One pass runs at a time (the scheduler queue is held by one session); placements are
written before they are sent, so a crash between the two leaves Dispatching tasks that
the reconciler requeues after HPC_DISPATCH_TIMEOUT_S, never a task running unrecorded.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from shared.domain import eligibility, lifecycle, scheduler
from shared.domain.cluster import Node
from shared.domain.hosts import Holding, Seat, held, host_list, used_cores
from shared.domain.jobspec import sweep_command
from shared.domain.jumps import Boots, boots_of
from shared.domain.messages import JOB_SUBMIT_ENV, SCHEDULER_LOCK_MS, TASK_MEMORY_ENV, RunTask
from shared.domain.models import Host, Task
from shared.domain.outputpaths import OutputIds, expand_optional
from shared.domain.protocol import carries_owner
from shared.domain.specvalues import sweep_path
from shared.domain.states import JobState, NodeState
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict, NotFound
from shared.ports.bus import MAX_MESSAGE_BYTES, OutgoingMessage
from shared.ports.store import MAX_BATCH, MAX_BATCH_BYTES, json_size, stored_size
from shared.usecases import taskdeps
from shared.usecases.deps import Deps
from shared.usecases.queue import runnable_queue
from shared.usecases.settling import settle

log = logging.getLogger(__name__)

RANGES_PER_COMMIT = 10
CHUNK = MAX_BATCH - 1 - RANGES_PER_COMMIT
"""Placements per commit: the job and up to RANGES_PER_COMMIT ranges ride in the same batch."""
JOB_SLACK = 4096
"""Bytes a commit may add to its job's document (counts, state, start time), kept free."""
TASK_SLACK = 1024
"""Bytes dispatching or failing a task may add to its document besides its hosts (state,
node, incarnation, times, error), kept free."""
RANGE_SLACK = 64
"""Bytes moving a range's cursor may add to its document."""
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
    listed = deps.store.list_nodes()
    view = _view(deps, listed, deps.store.holdings())
    if view is None:
        return 0  # nothing can be placed: do not read the queue at all
    nodes, active, used, queued = view
    now = deps.clock()
    boots = _boots(deps, listed, now)
    placements = scheduler.plan(queued, nodes, used, running=active, now=now, boots=boots)
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
        rest: Sequence[scheduler.Placement] = job_placements
        while rest:
            if commits and deps.clock() - started >= PASS_BUDGET:
                deps.kick()  # out of time (the first commit always goes): the next pass goes on
                return dispatched
            commits += 1
            batch, taken = _commit_chunk(deps, job_id, rest[:CHUNK], tasks, by_node)
            if batch is None:
                deps.kick()  # the job or a task changed under us: the next pass retries
                break
            deps.send_node_messages(batch)
            dispatched += len(batch)
            rest = rest[taken:] if taken else ()
    return dispatched


def preview(
    deps: Deps, nodes: Sequence[Node], active: Sequence[Task | Holding]
) -> tuple[scheduler.Decision, list[Task]] | None:
    """What a pass would decide now on ``nodes`` (all of them, as listed) and ``active``
    (what holds cores), and the queued tasks it would look at (None: no core is free, so a
    pass reads no queue and reserves nothing). The pending reasons read its reservation:
    the same window and the same pure call as the pass, nothing remembered."""
    view = _view(deps, nodes, active)
    if view is None:
        return None
    listed = nodes
    nodes, active, used, queued = view
    now = deps.clock()
    boots = _boots(deps, listed, now)
    return scheduler.decide(queued, nodes, used, running=active, now=now, boots=boots), queued


def _boots(deps: Deps, listed: Sequence[Node], now: datetime) -> Boots | None:
    """The nodes being started, for the scheduler's jumps (shared.domain.jumps): the
    groups' boot delays are read only when a node is Starting."""
    if not any(n.state is NodeState.STARTING for n in listed):
        return None
    delays = {g.name: g.boot_delay_s for g in deps.store.list_groups() if g.provider}
    return boots_of(listed, delays, now) if delays else None


def _view(
    deps: Deps, listed: Sequence[Node], active: Sequence[Task | Holding]
) -> tuple[list[Node], Sequence[Task | Holding], dict[str, int], list[Task]] | None:
    """What a pass works on, given the nodes listed and what holds their cores: the
    registered nodes, ``active``, the cores used per node, and the queue window (None: no
    core is free, the queue is not read)."""
    nodes = [n for n in listed if n.incarnation > 0]
    used = used_cores(active)
    free = sum(max(f, 0) for f in scheduler.free_cores(nodes, used).values())
    if free == 0:
        return None
    # Look ahead far enough to backfill, not at the whole queue.
    window = min(deps.settings.scheduler_window, max(LOOKAHEAD_MIN, 4 * free))
    return nodes, active, used, runnable_queue(deps, limit=window, active=active)


def fit(costs: Iterable[int], budget: int) -> int:
    """How many of the leading ``costs`` fit in ``budget`` together (0: not even the
    first). Lazy: a cost past the first that overflows is the last one read."""
    taken = 0
    for cost in costs:
        budget -= cost
        if budget < 0:
            break
        taken += 1
    return taken


def _costs(
    window: Sequence[scheduler.Placement],
    tasks: dict[tuple[int, int], Task],
    nodes: dict[str, Node],
    ranges: Sequence[TaskRange],
    *,
    failing: bool = False,
) -> Iterator[int]:
    """An upper bound of the bytes each placement adds to a commit (as ``check_batch``
    measures them): its task as dispatched (``failing``: as failed undeliverable), plus,
    for the first task of a range not created yet, that range's document."""
    seen: set[int] = set()
    for p in window:
        task = tasks[(p.job_id, p.task_id)]
        cost = stored_size(task) + TASK_SLACK
        if not failing:
            placed = lifecycle.placed_hosts(
                task, node=p.node, incarnation=nodes[p.node].incarnation, hosts=p.hosts
            )
            hosts = ",".join(h.model_dump_json(by_alias=True) for h in placed)
            cost += json_size(hosts) + json_size(p.node)  # (its hosts, and its node's name)
        if task.etag is None:
            r = next((r for r in ranges if r.first_id <= p.task_id < r.first_id + r.count), None)
            if r is not None and r.first_id not in seen:
                seen.add(r.first_id)
                cost += stored_size(r) + RANGE_SLACK
        yield cost


def _commit_chunk(
    deps: Deps,
    job_id: int,
    window: Sequence[scheduler.Placement],
    tasks: dict[tuple[int, int], Task],
    nodes: dict[str, Node],
) -> tuple[list[OutgoingMessage] | None, int]:
    """Commit the longest prefix of ``window`` that one commit holds (MAX_BATCH documents
    and MAX_BATCH_BYTES with the job's document and the ranges it moves) as dispatched,
    with the job's counts, and return their assignments as bus messages and how many
    placements of ``window`` it took (0: none more of this job this pass). None: the job
    or a task changed under us. A first placement too large for any commit is failed
    (undeliverable) instead, so that it never stalls the pass."""
    try:
        job = deps.store.get_job(job_id)
    except NotFound:
        return [], 0
    if job.state not in (JobState.QUEUED, JobState.RUNNING) or eligibility.held(job, deps.clock()):
        return [], 0  # (its counts-only commit would not be refused by a cancel or hold since)
    unborn = any(tasks[(p.job_id, p.task_id)].etag is None for p in window)
    ranges = deps.store.get_ranges(job_id) if unborn else []
    budget = MAX_BATCH_BYTES - stored_size(job) - JOB_SLACK
    taken = fit(_costs(window, tasks, nodes, ranges), budget)
    too_big: str | None = None
    if taken == 0:
        head = tasks[(window[0].job_id, window[0].task_id)]
        need = next(_costs(window[:1], tasks, nodes, ranges)) + (MAX_BATCH_BYTES - budget)
        too_big = (
            f"its commit (task, job and sweep range documents) would be up to {need:,} bytes; "
            f"a store commit holds at most {MAX_BATCH_BYTES:,} (a Cosmos DB transactional "
            "batch is 2 MB): shorten its command, env or paths"
        )
        if fit(_costs(window[:1], tasks, nodes, ranges, failing=True), budget) == 0:
            log.error("task %s cannot be committed, not even failed: %s", head.key, too_big)
            return [], 0  # not even its failure fits: the job waits, the others go on
        taken = 1
    try:
        chunk, moved = _born(window[:taken], tasks, ranges)
    except Conflict:
        return None, 0
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
        if too_big is not None:
            change = lifecycle.undeliverable(task, too_big, now)
            failed = True
        else:
            run = _run_task(
                task,
                node,
                p.group,
                hosts,
                owner=job.owner,
                submitted=job.submit_time,
                job_name=job.name,  # (jobbuild names an unnamed job job12)
            )
            message = deps.node_message(node.name, run)
            reason = _too_big_for_bus(message)
            if reason is not None:
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
        deps.store.commit(job=job, tasks=batch, ranges=moved)
    except Conflict:
        return None, 0
    except ValueError as e:  # (the bounds above make this a bug; it must not stall the pass)
        log.error("job %d: commit refused, its tasks wait: %s", job_id, e)
        return [], 0
    if failed:
        settle(deps, job_id)
        if taskdeps.has_doomed(job):
            taskdeps.cancel_doomed_tasks(deps, job_id)
    return runs, taken


def _too_big_for_bus(message: OutgoingMessage) -> str | None:
    """Why an assignment cannot be sent (over a bus message), or None."""
    size = message.size_bytes()
    if size <= MAX_MESSAGE_BYTES:
        return None
    return (
        f"its assignment is {size:,} bytes; a bus message is at most "
        f"{MAX_MESSAGE_BYTES:,} (Service Bus Standard): shorten its command, env or paths"
    )


def _born(
    chunk: Sequence[scheduler.Placement],
    tasks: dict[tuple[int, int], Task],
    ranges: Sequence[TaskRange],
) -> tuple[list[scheduler.Placement], list[TaskRange]]:
    """The placements to commit, and the ranges (the job's, read before) whose cursors move
    past the tasks of theirs placed (created in the same commit). A range's tasks are
    created in id order from its cursor: placements past a gap wait for the next pass.
    Conflict if a range moved since the queue was read."""
    unborn = [p for p in chunk if tasks[(p.job_id, p.task_id)].etag is None]
    if not unborn:
        return list(chunk), []
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
            r.advance()  # (past the tasks canceled ahead of it too: they are never created)
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
    submitted: datetime | None = None,
    job_name: str = "",
) -> RunTask:
    """The assignment for the task's first node (a multi-node task's other nodes get none:
    its command starts the rest, e.g. mpirun --host $HPC_NODES); ``hosts``: its placement's
    (:func:`shared.domain.lifecycle.placed_hosts`), None: those it holds. ``owner`` (the
    job's) goes only to an agent that reads it (:func:`shared.domain.protocol.carries_owner`):
    an older one would refuse the assignment. ``submitted``: the job's submit time, which
    stamps its output (:data:`shared.domain.messages.JOB_SUBMIT_ENV`)."""
    hosts = held(task) if hosts is None else hosts
    ids = _output_ids(task, node, owner, job_name)
    env = {
        "HPC_JOB_ID": str(task.job_id),
        **({JOB_SUBMIT_ENV: submitted.isoformat()} if submitted is not None else {}),
        "HPC_TASK_ID": str(task.id),
        "HPC_TASK_ATTEMPT": str(task.attempt),
        "HPC_SWEEP_INDEX": "" if task.sweep_index is None else str(task.sweep_index),
        "HPC_NODE_NAME": node.name,
        "HPC_NODE_GROUP": group or "",
        "HPC_TASK_CORES": str(sum(h.cores for h in hosts)),
        "HPC_NODES": host_list(hosts),
        **task.env,
        # after the user's (which may not be named HPC_*): its agent may hold it to it
        **({TASK_MEMORY_ENV: str(task.min_memory_mb)} if task.min_memory_mb else {}),
    }
    return RunTask(
        incarnation=node.incarnation,
        job_id=task.job_id,
        task_id=task.id,
        attempt=task.attempt,
        command=sweep_command(task.command, task.sweep_index),
        cores=hosts[0].cores if hosts else task.cores,
        runtime_limit_s=task.runtime_limit_s,
        work_dir=sweep_path(task.work_dir, task.sweep_index),
        stdout=expand_optional(sweep_path(task.stdout, task.sweep_index), ids),
        stderr=expand_optional(sweep_path(task.stderr, task.sweep_index), ids),
        env=env,
        owner=owner if carries_owner(node.agent_protocol) else None,
    )


def _output_ids(task: Task, node: Node, owner: str | None, job_name: str) -> OutputIds:
    """What the placeholders of the task's --stdout / --stderr stand for."""
    return OutputIds(
        job_id=task.job_id,
        task_id=task.id,
        sweep_index=task.sweep_index,
        job_name=job_name,
        owner=owner or "",
        node=node.name,
    )
