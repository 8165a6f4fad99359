"""The control plane's use cases: submit, monitor, cancel, requeue, apply agent events,
run a scheduler pass, reconcile. The function app calls these and nothing else.

Every write goes through the store's optimistic concurrency: a use case that
meets a Conflict re-reads and tries again (:func:`_retry`), so concurrent
handlers (HTTP, events, scheduler, reconciler) never lose each other's
changes. Events are idempotent: each names the task's attempt, and an event
for another attempt, another node or a task already past that state changes
nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from shared import reconciler, scheduler
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.jobspec import JobSpec
from shared.messages import (
    NODES_QUEUE,
    SCHEDULER_QUEUE,
    SCHEDULER_SESSION,
    CancelTask,
    Event,
    Heartbeat,
    NodeRegistered,
    NodeStopping,
    RunTask,
    TaskEnded,
    TaskStarted,
)
from shared.models import Job, Node, NodeGroup, Principal, Task
from shared.ports.bus import Bus, OutgoingMessage
from shared.ports.output import OutputStore, Stream
from shared.ports.store import MAX_BATCH, Store
from shared.settings import Settings
from shared.states import (
    JOB_TERMINAL,
    TASK_ACTIVE,
    TASK_TERMINAL,
    JobState,
    NodeState,
    TaskState,
    can_transition,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIES = 20
LOOKAHEAD_MIN = 100
"""Queued tasks a pass looks at even when few cores are free (room for backfill)."""
CHUNK = MAX_BATCH - 1  # tasks per commit, leaving room for the job document


def _retry(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` again while it meets a Conflict (someone else wrote first)."""
    for _ in range(RETRIES - 1):
        try:
            return fn(*args, **kwargs)
        except Conflict:
            continue
    return fn(*args, **kwargs)


class ControlPlane:
    def __init__(
        self,
        *,
        store: Store,
        bus: Bus,
        output: OutputStore,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.bus, self.output, self.settings, self.clock = (
            store,
            bus,
            output,
            settings,
            clock,
        )

    # ------------------------------------------------------------------ jobs

    def submit(self, data: Any, principal: Principal | None = None) -> Job:
        """Validate a job spec against the cluster, store the job and its tasks, kick the scheduler."""
        spec = JobSpec.parse(data)
        count = spec.task_count()
        if count > self.settings.max_tasks_per_job:
            raise InvalidRequest(
                f"the job has {count} tasks; at most {self.settings.max_tasks_per_job} "
                "are accepted in one job (HPC_MAX_TASKS_PER_JOB)"
            )
        self._check_fits(spec)
        now = self.clock()
        job, tasks = spec.build(
            self.store.next_job_id(), now=now, owner=principal.name if principal else "admin"
        )
        job.move_to(JobState.SUBMITTED, now=now)
        job.move_to(JobState.QUEUED, now=now)
        self.store.add_job(job, tasks)
        self.kick()
        return job

    def _check_fits(self, spec: JobSpec) -> None:
        nodes = self.store.list_nodes()
        known = {g.name for g in self.store.list_groups()} | {g for n in nodes for g in n.groups}
        for group in spec.node_groups:
            if group not in known:
                raise NotFound(
                    f"node group {group!r} does not exist; known groups: {', '.join(sorted(known))}"
                )
        wanted = set(spec.node_groups)
        eligible = [n for n in nodes if not wanted or wanted & set(n.groups)]
        where = f"node group(s) {', '.join(spec.node_groups)}" if wanted else "the cluster"
        if not eligible:
            raise InvalidRequest(
                f"{where} has no nodes yet: start agents (hpc up / hpc agent run) "
                "or add nodes first"
            )
        largest = max(n.cores for n in eligible)
        for task in spec.tasks:
            if task.cores > largest:
                raise InvalidRequest(
                    f"a task asks for {task.cores} cores but the largest node in {where} "
                    f"has {largest}; ask for at most {largest}"
                )

    def get_job(self, job_id: int) -> Job:
        return self.store.get_job(job_id)

    def list_jobs(self, *, states: Iterable[JobState] | None = None, limit: int = 100) -> list[Job]:
        return self.store.list_jobs(states=list(states) if states else None, limit=limit)

    def list_tasks(
        self,
        job_id: int,
        *,
        states: Iterable[TaskState] | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> list[Task]:
        self.store.get_job(job_id)  # 404 for an unknown job
        return self.store.list_tasks(
            job_id, states=list(states) if states else None, offset=offset, limit=limit
        )

    def get_task(self, job_id: int, task_id: int) -> Task:
        self.store.get_job(job_id)
        return self.store.get_task(job_id, task_id)

    def read_output(
        self, job_id: int, task_id: int, stream: Stream, *, offset: int = 0, limit: int = 1 << 20
    ) -> bytes:
        self.get_task(job_id, task_id)
        return self.output.read(job_id, task_id, stream, offset=offset, limit=limit)

    def cancel_job(self, job_id: int) -> Job:
        """Queued tasks are canceled now; running ones get a CancelTask and end as Canceled
        when their agent has killed them. The job is Canceling until then."""

        def attempt() -> Job:
            job = self.store.get_job(job_id)
            if job.state in JOB_TERMINAL:
                raise Conflict(f"job {job_id} is already {job.state}; nothing to cancel")
            now = self.clock()
            if job.state is not JobState.CANCELING:
                job.move_to(JobState.CANCELING, now=now)
                self.store.commit(job=job)
            queued = self.store.list_tasks(job_id, states=[TaskState.QUEUED], limit=1 << 30)
            for chunk in _chunks(queued, CHUNK):
                for task in chunk:
                    task.move_to(TaskState.CANCELED, now=now)
                    job.count(TaskState.QUEUED, TaskState.CANCELED)
                self.store.commit(job=job, tasks=chunk)
            active = self.store.list_tasks(job_id, states=TASK_ACTIVE, limit=1 << 30)
            self._send_to_nodes(
                (t.node, CancelTask(job_id=t.job_id, task_id=t.id, attempt=t.attempt))
                for t in active
                if t.node
            )
            if self._maybe_end(job, now):
                self.store.commit(job=job)
            return job

        return _retry(attempt)

    def requeue_job(self, job_id: int) -> Job:
        """A Failed or Canceled job goes back to Queued with its failed and canceled tasks."""

        def attempt() -> Job:
            job = self.store.get_job(job_id)
            if job.state not in (JobState.FAILED, JobState.CANCELED):
                raise Conflict(
                    f"job {job_id} is {job.state}; only Failed or Canceled jobs can be requeued"
                )
            now = self.clock()
            job.move_to(JobState.QUEUED, now=now)
            job.error = None
            redo = self.store.list_tasks(
                job_id, states=[TaskState.FAILED, TaskState.CANCELED], limit=1 << 30
            )
            if not redo:
                raise Conflict(f"job {job_id} has no failed or canceled tasks to requeue")
            for chunk in _chunks(redo, CHUNK):
                for task in chunk:
                    old = task.state
                    task.move_to(TaskState.QUEUED, now=now)
                    task.attempt += 1
                    task.requeue_count = 0
                    task.error = task.output = None
                    job.count(old, TaskState.QUEUED)
                self.store.commit(job=job, tasks=chunk)
            return job

        job = _retry(attempt)
        self.kick()
        return job

    # ----------------------------------------------------------------- nodes

    def list_nodes(self) -> list[dict[str, Any]]:
        """Nodes with their running task count and free cores (from the store's accounting)."""
        active = self.store.active_tasks()
        used = _used_cores(active)
        running: dict[str, int] = defaultdict(int)
        for task in active:
            if task.node:
                running[task.node] += 1
        out = []
        for node in self.store.list_nodes():
            doc = node.to_dict()
            doc.pop("etag", None)
            doc["runningTasks"] = running[node.name]
            doc["freeCores"] = max(node.cores - used[node.name], 0)
            out.append(doc)
        return out

    def list_groups(self) -> list[NodeGroup]:
        return self.store.list_groups()

    # ------------------------------------------------------------ scheduling

    def kick(self) -> None:
        """Ask for a scheduler pass (coalesced: one pass serves every kick it finds waiting)."""
        self.bus.send(SCHEDULER_QUEUE, OutgoingMessage(body=b"{}", session_id=SCHEDULER_SESSION))

    def schedule_pass(self) -> int:
        """One scheduler pass; returns how many tasks it dispatched. Single writer of placements."""
        nodes = self.store.list_nodes()
        used = _used_cores(self.store.active_tasks())
        free = sum(max(f, 0) for f in scheduler.free_cores(nodes, used).values())
        if free == 0:
            return 0  # nothing can be placed: do not read the queue at all
        # Look ahead far enough to backfill, not at the whole queue: the window grows
        # with the free cores, capped by HPC_SCHEDULER_WINDOW.
        window = min(self.settings.scheduler_window, max(LOOKAHEAD_MIN, 4 * free))
        queued = self.store.queued_tasks(limit=window)
        placements = scheduler.plan(queued, nodes, used)
        if not placements:
            return 0
        tasks = {(t.job_id, t.id): t for t in queued}
        by_job: dict[int, list[scheduler.Placement]] = defaultdict(list)
        for p in placements:
            by_job[p.job_id].append(p)
        now = self.clock()
        dispatched = 0
        for job_id, job_placements in by_job.items():
            try:
                job = self.store.get_job(job_id)
            except NotFound:
                continue
            if job.state not in (JobState.QUEUED, JobState.RUNNING):
                continue
            for chunk in _chunks(job_placements, CHUNK):
                batch: list[Task] = []
                for p in chunk:
                    task = tasks[(p.job_id, p.task_id)]
                    task.move_to(TaskState.DISPATCHING, now=now)
                    task.node = p.node
                    job.count(TaskState.QUEUED, TaskState.DISPATCHING)
                    batch.append(task)
                if job.state is JobState.QUEUED:
                    job.move_to(JobState.RUNNING, now=now)
                try:
                    self.store.commit(job=job, tasks=batch)
                except Conflict:
                    # The job or a task changed under us (cancel, requeue): the next pass retries.
                    self.kick()
                    break
                self._send_runs(batch, {p.task_id: p for p in chunk})
                dispatched += len(batch)
        return dispatched

    def _send_runs(self, tasks: Sequence[Task], placements: dict[int, scheduler.Placement]) -> None:
        def run(task: Task, p: scheduler.Placement) -> RunTask:
            env = {
                "HPC_JOB_ID": str(task.job_id),
                "HPC_TASK_ID": str(task.id),
                "HPC_SWEEP_INDEX": "" if task.sweep_index is None else str(task.sweep_index),
                "HPC_NODE_NAME": p.node,
                "HPC_NODE_GROUP": p.group or "",
                **task.env,
            }
            return RunTask(
                job_id=task.job_id,
                task_id=task.id,
                attempt=task.attempt,
                command=task.command,
                cores=task.cores,
                work_dir=task.work_dir,
                env=env,
            )

        self._send_to_nodes((placements[t.id].node, run(t, placements[t.id])) for t in tasks)

    def _send_to_nodes(self, assignments: Iterable[tuple[str, RunTask | CancelTask]]) -> None:
        """Send assignments to their nodes' sessions: one batch per node."""
        per_node: dict[str, list[OutgoingMessage]] = defaultdict(list)
        for node, message in assignments:
            per_node[node].append(OutgoingMessage(body=message.to_bytes(), session_id=node))
        for messages in per_node.values():
            self.bus.send(NODES_QUEUE, messages)

    # ---------------------------------------------------------------- events

    def apply_events(self, events: Sequence[Event]) -> None:
        """Apply a batch of agent events idempotently; task events are grouped per job so a
        batch of endings costs one commit per job (per 99 tasks), not one per task.

        One unit (a node's event, a job's events) failing does not stop the others; the
        first failure is raised at the end so the bus delivers the batch again, and the
        units that were applied change nothing the second time.
        """
        units: list[tuple[Callable[..., bool], tuple[Any, ...]]] = []
        task_events: dict[int, list[TaskStarted | TaskEnded]] = defaultdict(list)
        latest_beat: dict[str, Heartbeat] = {}
        for ev in events:
            if isinstance(ev, TaskStarted | TaskEnded):
                task_events[ev.job_id].append(ev)
            elif isinstance(ev, Heartbeat):
                latest_beat[ev.node] = ev
            elif isinstance(ev, NodeRegistered):
                units.append((self._on_registered, (ev,)))
            elif isinstance(ev, NodeStopping):
                units.append((self._on_stopping, (ev,)))
        units += [(self._on_heartbeat, (beat,)) for beat in latest_beat.values()]
        units += [(self._on_task_events, (job, evs)) for job, evs in task_events.items()]
        kick = False
        failure: Exception | None = None
        for fn, args in units:
            try:
                kick |= _retry(fn, *args)
            except Exception as exc:
                log.exception("applying %s%r failed", fn.__name__, args[:1])
                failure = failure or exc
        if kick:
            self.kick()
        if failure is not None:
            raise failure

    def _on_registered(self, ev: NodeRegistered) -> bool:
        now = self.clock()
        try:
            node = self.store.get_node(ev.node)
        except NotFound:
            node = Node(name=ev.node, groups=ev.groups, cores=ev.cores, provider="onprem")
        if node.incarnation and node.incarnation != ev.incarnation:
            self._requeue_node_tasks(node.name, f"agent on {node.name} restarted", count=True)
        node.groups, node.cores, node.incarnation = ev.groups, ev.cores, ev.incarnation
        node.last_heartbeat = now
        if node.state is not NodeState.ONLINE:
            if not can_transition(node.state, NodeState.ONLINE):
                node.move_to(NodeState.OFFLINE, reason="agent registered", now=now)
            node.move_to(NodeState.ONLINE, reason="agent registered", now=now)
        self.store.put_node(node)
        self._ensure_groups(ev.groups)
        return True

    def _ensure_groups(self, names: Iterable[str]) -> None:
        known = {g.name for g in self.store.list_groups()}
        for name in names:
            if name not in known:
                with contextlib.suppress(Conflict):
                    self.store.put_group(NodeGroup(name=name))

    def _on_heartbeat(self, ev: Heartbeat) -> bool:
        try:
            node = self.store.get_node(ev.node)
        except NotFound:
            return False
        if node.incarnation != ev.incarnation:
            return False  # a previous agent process, or one that has not registered yet
        now = self.clock()
        node.last_heartbeat = now
        came_back = node.state is NodeState.UNREACHABLE
        if came_back:
            node.move_to(NodeState.ONLINE, reason="heartbeat resumed", now=now)
        self.store.put_node(node)
        self._cancel_strays(node.name, ev.running)
        return came_back

    def _cancel_strays(self, node: str, running: Sequence[str]) -> None:
        """Kill attempts a node still runs that are no longer its to run (requeued while the
        node was unreachable, or canceled): otherwise they would hold cores the scheduler
        has given to other tasks."""
        if not running:
            return
        mine = {(t.job_id, t.id, t.attempt) for t in self.store.active_tasks(node=node)}
        strays = []
        for key in running:
            try:
                job_id, task_id, attempt = (int(part) for part in key.split("."))
            except ValueError:
                continue
            if (job_id, task_id, attempt) not in mine:
                strays.append(CancelTask(job_id=job_id, task_id=task_id, attempt=attempt))
        if strays:
            log.warning(
                "node %s runs %d task(s) no longer its own; canceling them", node, len(strays)
            )
            self._send_to_nodes((node, m) for m in strays)

    def _on_stopping(self, ev: NodeStopping) -> bool:
        try:
            node = self.store.get_node(ev.node)
        except NotFound:
            return False
        if node.incarnation != ev.incarnation or node.state is NodeState.OFFLINE:
            return False
        self._requeue_node_tasks(node.name, f"agent on {node.name} stopped", count=False)
        node.move_to(NodeState.OFFLINE, reason="agent stopped", now=self.clock())
        self.store.put_node(node)
        return True

    def _on_task_events(self, job_id: int, evs: Sequence[TaskStarted | TaskEnded]) -> bool:
        try:
            job = self.store.get_job(job_id)
        except NotFound:
            return False
        now = self.clock()
        changed: dict[int, Task] = {}
        ended = False
        for ev in evs:
            task = changed.get(ev.task_id)
            if task is None:
                try:
                    task = self.store.get_task(job_id, ev.task_id)
                except NotFound:
                    continue
            if task.attempt != ev.attempt or task.node != ev.node:
                continue  # stale: an earlier attempt, or a node it was taken from
            old = task.state
            if isinstance(ev, TaskStarted):
                if old is not TaskState.DISPATCHING:
                    continue
                task.move_to(TaskState.RUNNING, now=now)
            else:
                if old not in TASK_ACTIVE:
                    continue
                if ev.canceled:
                    new = TaskState.CANCELED
                elif ev.exit_code == 0 and ev.error is None:
                    new = TaskState.FINISHED
                else:
                    new = TaskState.FAILED
                task.move_to(new, now=now)
                task.exit_code, task.output, task.error = ev.exit_code, ev.output, ev.error
                ended = True
            job.count(old, task.state)
            changed[task.id] = task
        if not changed:
            return False
        self._maybe_end(job, now)
        for chunk in _chunks(list(changed.values()), CHUNK):
            self.store.commit(job=job, tasks=chunk)
        return ended

    def _maybe_end(self, job: Job, now: datetime) -> bool:
        """Close the job (in memory) when none of its tasks is left to run; True if it did.
        The caller commits the job with whatever else it changed."""
        done = sum(n for s, n in job.task_counts.items() if s in TASK_TERMINAL)
        if done < job.task_count or job.state in JOB_TERMINAL:
            return False
        if job.state is JobState.CANCELING:
            job.move_to(JobState.CANCELED, now=now)
        elif job.task_counts.get(TaskState.FAILED, 0) or job.task_counts.get(TaskState.CANCELED, 0):
            failed = job.task_counts.get(TaskState.FAILED, 0)
            job.error = f"{failed} of {job.task_count} tasks failed" if failed else job.error
            job.move_to(JobState.FAILED, now=now)
        else:
            job.move_to(JobState.FINISHED, now=now)
        return True

    # ------------------------------------------------------------- reconcile

    def reconcile(self) -> None:
        """Mark silent nodes Unreachable and requeue their tasks; requeue lost dispatches."""
        now = self.clock()
        timeout = timedelta(seconds=self.settings.heartbeat_timeout_s)
        kick = False
        for node in reconciler.silent_nodes(self.store.list_nodes(), now=now, timeout=timeout):
            kick |= _retry(self._mark_unreachable, node.name, now)
        stuck = reconciler.stuck_dispatches(
            self.store.active_tasks(),
            now=now,
            timeout=timedelta(seconds=self.settings.dispatch_timeout_s),
        )
        for task in stuck:
            reason = f"node {task.node} never started it"
            kick |= _retry(
                self._requeue_task, task.job_id, task.id, task.attempt, reason, count=True
            )
        if kick:
            self.kick()

    def _mark_unreachable(self, name: str, now: datetime) -> bool:
        node = self.store.get_node(name)
        if node.state not in reconciler.WATCHED:
            return False
        node.move_to(
            NodeState.UNREACHABLE,
            reason=f"no heartbeat for {self.settings.heartbeat_timeout_s:g} s",
            now=now,
        )
        self.store.put_node(node)
        self.bus.purge_session(NODES_QUEUE, name)  # its pending assignments are stale now
        self._requeue_node_tasks(name, f"node {name} became unreachable", count=True)
        log.warning("node %s unreachable; its tasks were requeued", name)
        return True

    def _requeue_node_tasks(self, node: str, reason: str, *, count: bool) -> None:
        for task in self.store.active_tasks(node=node):
            _retry(self._requeue_task, task.job_id, task.id, task.attempt, reason, count=count)

    def _requeue_task(
        self, job_id: int, task_id: int, attempt: int, reason: str, *, count: bool
    ) -> bool:
        """Put one active task back in the queue (a new attempt), or fail it past the retry limit."""
        job = self.store.get_job(job_id)
        task = self.store.get_task(job_id, task_id)
        if task.attempt != attempt or task.state not in TASK_ACTIVE:
            return False
        now = self.clock()
        old = task.state
        if count:
            task.requeue_count += 1
        if task.requeue_count > job.max_retries:
            task.move_to(TaskState.FAILED, now=now)
            task.error = f"{reason}; requeued {job.max_retries} times already"
        elif job.state is JobState.CANCELING:
            task.move_to(TaskState.CANCELED, now=now)
        else:
            task.move_to(TaskState.QUEUED, now=now)
            task.attempt += 1
            task.error = reason
        job.count(old, task.state)
        self._maybe_end(job, now)
        self.store.commit(job=job, tasks=[task])
        return True


def _used_cores(active: Iterable[Task]) -> dict[str, int]:
    """Cores each node's active tasks hold: the store's accounting, not the agents' word."""
    used: dict[str, int] = defaultdict(int)
    for task in active:
        if task.node:
            used[task.node] += task.cores
    return used


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
