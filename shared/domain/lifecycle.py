"""The task and node lifecycle: every rule that decides a state. Pure: no store, no bus, no clock.

Each rule takes the current record(s), one event and ``now``, changes the record
in place (callers pass a fresh read) and returns what changed and what to send.
The use cases in :mod:`shared.usecases` only load, call a rule and save, so the
rules are tested as tables (tests/test_lifecycle.py) and the simulator runs them.

The guarantees they give together:

- An event changes a task only if it names the task's current attempt, on the
  node and incarnation that attempt was given to. Anything else is stale and
  changes nothing, so duplicates, reorderings and messages from a dead agent are
  harmless.
- One exception keeps a finished task from running twice: when an attempt was
  given up because its node was lost, and its TaskEnded turns up later with an
  exit code, that result stands (the task ends with it and the newer attempt, if
  dispatched, is canceled). A task that ended is never run again.
- A node name is held by one agent process at a time. A registration is refused
  while another machine's agent holds the name and heartbeats; a restart on the
  same machine and state folder (whose lock file proves the old process gone)
  takes over at once; a registration older than the holder is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.domain.messages import (
    MAX_ID,
    AgentEvent,
    AssignmentRefused,
    CancelTask,
    EndedAttempt,
    Event,
    Heartbeat,
    NodeStopping,
    RegisterNode,
    TaskEnded,
    TaskStarted,
    attempt_key,
    parse_attempt_key,
)
from shared.domain.models import Job, LostAttempt, Node, Task
from shared.domain.states import (
    JOB_TERMINAL,
    TASK_ACTIVE,
    TASK_TERMINAL,
    JobState,
    NodeState,
    TaskState,
    can_transition,
)

LIVE_STATES = frozenset({NodeState.ONLINE, NodeState.DRAINING, NodeState.STARTING})
"""Node states that expect heartbeats."""
KEEP_LOST = 16
"""How many lost attempts a task remembers (more than any sane retry limit)."""

# ------------------------------------------------------------------------ tasks


@dataclass
class TaskChange:
    """What a rule did to one task: its state before and after, and messages to send."""

    old: TaskState
    new: TaskState
    cancels: list[tuple[str, CancelTask]] = field(default_factory=list)
    """(node, CancelTask) to send: an attempt that must stop running."""

    @property
    def ended(self) -> bool:
        return self.new in TASK_TERMINAL


def key_of(task: Task) -> str:
    return attempt_key(task.job_id, task.id, task.attempt)


def is_current(task: Task, ev: TaskStarted | TaskEnded | AssignmentRefused) -> bool:
    """The event names the task's current attempt on the node (and incarnation) it went to."""
    return (
        task.attempt == ev.attempt
        and task.node == ev.node
        and (task.incarnation is None or task.incarnation == ev.incarnation)
    )


def outcome(
    exit_code: int | None,
    *,
    canceled: bool,
    error: str | None,
    valid: list[int] | None = None,
) -> TaskState:
    """Canceled, else Finished for a valid exit code (``valid``, default [0]) without error."""
    if canceled:
        return TaskState.CANCELED
    if exit_code is not None and exit_code in (valid or [0]) and error is None:
        return TaskState.FINISHED
    return TaskState.FAILED


def task_started(task: Task, ev: TaskStarted, now: datetime) -> TaskChange | None:
    if not is_current(task, ev) or task.state is not TaskState.DISPATCHING:
        return None
    task.move_to(TaskState.RUNNING, now=now)
    return TaskChange(TaskState.DISPATCHING, TaskState.RUNNING)


def task_ended(task: Task, ev: TaskEnded, now: datetime) -> TaskChange | None:
    """The current attempt's end; or the late end of a lost attempt that ran to its end."""
    new = outcome(ev.exit_code, canceled=ev.canceled, error=ev.error, valid=task.valid_exit_codes)
    old = task.state
    if is_current(task, ev):
        if old not in TASK_ACTIVE:
            return None
        task.move_to(new, now=now)
        task.exit_code, task.output, task.error = ev.exit_code, ev.output, ev.error
        task.result_attempt = ev.attempt
        return TaskChange(old, new)
    ran_to_end = ev.exit_code is not None and not ev.canceled and ev.error is None
    was_lost = any(lost.attempt == ev.attempt and lost.node == ev.node for lost in task.lost)
    if not (ran_to_end and was_lost) or old in TASK_TERMINAL:
        return None
    cancels = []
    if old in TASK_ACTIVE and task.node and task.incarnation:
        cancels.append(
            (
                task.node,
                CancelTask(
                    incarnation=task.incarnation,
                    job_id=task.job_id,
                    task_id=task.id,
                    attempt=task.attempt,
                ),
            )
        )
    task.move_to(new, now=now)
    task.node = ev.node
    task.exit_code, task.output = ev.exit_code, ev.output
    task.error = (
        f"attempt {ev.attempt} on {ev.node} ran to its end after its node was lost; "
        "its result is kept"
    )
    task.result_attempt = ev.attempt
    return TaskChange(old, new, cancels)


def assignment_refused(task: Task, ev: AssignmentRefused, now: datetime) -> TaskChange | None:
    """An agent dropped an assignment meant for an earlier incarnation of its node: if the
    task still waits for it, requeue it (no retry used: it never ran)."""
    if task.attempt != ev.attempt or task.node != ev.node or task.state not in TASK_ACTIVE:
        return None
    if task.incarnation == ev.incarnation:
        return None  # it was meant for this incarnation after all: not refused
    return lose_attempt(
        task,
        max_retries=MAX_ID,
        canceling=False,
        reason=f"assignment reached a newer agent on {ev.node}",
        count=False,
        now=now,
    )


def lose_attempt(
    task: Task, *, max_retries: int, canceling: bool, reason: str, count: bool, now: datetime
) -> TaskChange | None:
    """Give up the current attempt (its node was lost or never confirmed it): requeue it as
    a new attempt, or fail it past the retry limit, or cancel it if its job is canceling.
    The attempt is remembered as lost, so its late end is still accepted."""
    if task.state not in TASK_ACTIVE:
        return None
    old = task.state
    if task.node is not None:
        task.lost = [*task.lost, LostAttempt(attempt=task.attempt, node=task.node)][-KEEP_LOST:]
    if count:
        task.requeue_count += 1
    if task.requeue_count > max_retries:
        task.move_to(TaskState.FAILED, now=now)
        task.error = f"{reason}; requeued {max_retries} times already"
    elif canceling:
        task.move_to(TaskState.CANCELED, now=now)
    else:
        task.move_to(TaskState.QUEUED, now=now)
        task.attempt += 1
        task.incarnation = None
        task.error = reason
    return TaskChange(old, task.state)


def dispatch(task: Task, *, node: str, incarnation: int, now: datetime) -> TaskChange:
    old = task.state
    task.move_to(TaskState.DISPATCHING, now=now)
    task.node, task.incarnation = node, incarnation
    return TaskChange(old, TaskState.DISPATCHING)


def cancel(task: Task, now: datetime) -> TaskChange | None:
    """A user cancel: a queued task ends now; an active one gets a CancelTask and ends when
    its agent reports it killed."""
    if task.state is TaskState.QUEUED:
        task.move_to(TaskState.CANCELED, now=now)
        return TaskChange(TaskState.QUEUED, TaskState.CANCELED)
    if task.state in TASK_ACTIVE and task.node and task.incarnation:
        message = CancelTask(
            incarnation=task.incarnation, job_id=task.job_id, task_id=task.id, attempt=task.attempt
        )
        return TaskChange(task.state, task.state, [(task.node, message)])
    return None


def rerun(task: Task, now: datetime) -> TaskChange | None:
    """A user requeue of a Failed or Canceled task: a new attempt with a fresh retry budget."""
    if task.state not in (TaskState.FAILED, TaskState.CANCELED):
        return None
    old = task.state
    task.move_to(TaskState.QUEUED, now=now)
    task.attempt += 1
    task.requeue_count = 0
    task.incarnation = task.result_attempt = None
    task.lost = []  # the user asked for a new run: a late old end must not cut it short
    task.error = task.output = None
    return TaskChange(old, TaskState.QUEUED)


# ------------------------------------------------------------------------- jobs


def settle_job(job: Job, now: datetime) -> bool:
    """Close the job when none of its tasks is left to run; True if it did."""
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


# ------------------------------------------------------------------------ nodes


def is_live(node: Node, *, now: datetime, timeout: timedelta) -> bool:
    """The node's agent heartbeats: in a state that expects it, heard within ``timeout``."""
    return (
        node.state in LIVE_STATES
        and node.last_heartbeat is not None
        and now - node.last_heartbeat <= timeout
    )


@dataclass
class RegistrationDecision:
    accepted: bool
    incarnation: int | None = None
    reason: str | None = None
    previous: int | None = None
    """An earlier incarnation now over: its tasks are lost and must be requeued."""
    changed: bool = False
    """The node record changed and must be written."""


def register(
    node: Node, req: RegisterNode, *, now: datetime, timeout: timedelta
) -> RegistrationDecision:
    """Decide a registration. ``node`` is the stored record, or a fresh ``Node(name=...)``
    (incarnation 0) when the name is new."""
    if node.incarnation and req.agent_id == node.agent_id:
        return RegistrationDecision(True, node.incarnation)  # the same request, again
    same_host = node.host_id == req.host_id
    if (
        node.incarnation
        and same_host
        and node.agent_started_at is not None
        and req.started_at < node.agent_started_at
    ):
        return RegistrationDecision(
            False,
            reason=(
                f"node {node.name!r}: this registration is from an agent started "
                f"{req.started_at:%Y-%m-%d %H:%M:%S}, older than the one holding the node "
                f"(started {node.agent_started_at:%Y-%m-%d %H:%M:%S}); it arrived late and is ignored"
            ),
        )
    if node.incarnation and not same_host and is_live(node, now=now, timeout=timeout):
        assert node.last_heartbeat is not None
        ago = (now - node.last_heartbeat).total_seconds()
        return RegistrationDecision(
            False,
            reason=(
                f"node {node.name!r} is held by a live agent on another machine or HPC_HOME "
                f"(incarnation {node.incarnation}, last heartbeat {ago:.1f} s ago): stop that "
                f"agent first (its name is free once it stops, or {timeout.total_seconds():g} s "
                "after it dies), or start this one with another --name"
            ),
        )
    previous = node.incarnation or None
    node.incarnation += 1
    node.agent_id, node.host_id, node.agent_started_at = req.agent_id, req.host_id, req.started_at
    node.groups, node.cores = list(req.groups), req.cores
    node.last_heartbeat = now
    node.missing_since = {}
    reason = "agent registered" if previous is None else "agent restarted"
    if node.state is NodeState.ONLINE:
        node.state_reason, node.state_time = reason, now
    else:
        if not can_transition(node.state, NodeState.ONLINE):
            node.move_to(NodeState.OFFLINE, reason=reason, now=now)
        node.move_to(NodeState.ONLINE, reason=reason, now=now)
    return RegistrationDecision(True, node.incarnation, previous=previous, changed=True)


@dataclass
class HeartbeatDecision:
    current: bool
    """False: the heartbeat is from an incarnation that is over (or unknown); nothing changed."""
    reason: str | None = None
    """Why it is not current (said to the agent whose incarnation is over)."""
    came_back: bool = False
    cancels: list[CancelTask] = field(default_factory=list)
    """Attempts the node runs that are no longer its own: kill them."""
    recovered: list[TaskEnded] = field(default_factory=list)
    """Endings the node reports that the control plane has not applied (a lost TaskEnded)."""


def heartbeat(
    node: Node, ev: Heartbeat, active: Sequence[Task], now: datetime
) -> HeartbeatDecision:
    """A heartbeat is a snapshot of the node: compare it with what the control plane believes
    (``active``: the tasks it thinks run there) and repair the difference.

    - attempts the node runs but does not own any more are canceled;
    - attempts it lists as ended lately are ended here too, if still active here;
    - Running attempts it neither runs nor lists as ended are marked missing (since now);
      the reconciler requeues them after the heartbeat timeout.
    """
    if ev.incarnation != node.incarnation:
        return HeartbeatDecision(
            current=False,
            reason=f"node {node.name!r} is held by a newer agent (incarnation {node.incarnation})",
        )
    if node.state is NodeState.UNREACHABLE:
        # Its tasks were given to new attempts when it went silent: this incarnation is over.
        return HeartbeatDecision(
            current=False,
            reason=(
                f"node {node.name!r} was unreachable ({node.state_reason}); its tasks were "
                "given to new attempts"
            ),
        )
    if node.state is NodeState.OFFLINE:
        return HeartbeatDecision(current=False)  # sent just before it stopped
    node.last_heartbeat = now
    came_back = False
    mine = {key_of(t): t for t in active if t.node == node.name}
    running = set(ev.running)
    cancels = []
    for key in running - mine.keys():
        parts = parse_attempt_key(key)
        if parts is not None:
            job_id, task_id, attempt = parts
            cancels.append(
                CancelTask(
                    incarnation=ev.incarnation, job_id=job_id, task_id=task_id, attempt=attempt
                )
            )
    recovered = [
        end
        for ended in ev.ended
        if ended.key in mine
        and ended.key not in running
        and (end := ended_event(node.name, ev.incarnation, ended, ev.seq)) is not None
    ]
    recovered_keys = {e.key for e in ev.ended}
    missing = {}
    for key, task in mine.items():
        if task.state is TaskState.RUNNING and key not in running and key not in recovered_keys:
            missing[key] = node.missing_since.get(key, now)
    node.missing_since = missing
    return HeartbeatDecision(
        current=True,
        came_back=came_back,
        cancels=sorted(cancels, key=_cancel_key),
        recovered=recovered,
    )


def _cancel_key(c: CancelTask) -> tuple[int, int, int]:
    return (c.job_id, c.task_id, c.attempt)


def ended_event(node: str, incarnation: int, ended: EndedAttempt, seq: int = 0) -> TaskEnded | None:
    """An end an agent repeated (a heartbeat's recent ends, a registration's end records) as
    the TaskEnded of that incarnation; None if its key is not an attempt's."""
    parts = parse_attempt_key(ended.key)
    if parts is None:
        return None
    job_id, task_id, attempt = parts
    return TaskEnded(
        node=node,
        incarnation=incarnation,
        seq=seq,
        job_id=job_id,
        task_id=task_id,
        attempt=attempt,
        exit_code=ended.exit_code,
        canceled=ended.canceled,
        error=ended.error,
        output="",
    )


def stopping(node: Node, ev: NodeStopping, now: datetime) -> bool:
    """The agent stops cleanly: the node goes Offline; the caller requeues the attempts still
    active there (without using a retry). False if the event is stale."""
    if ev.incarnation != node.incarnation or node.state is NodeState.OFFLINE:
        return False
    node.move_to(NodeState.OFFLINE, reason="agent stopped", now=now)
    node.missing_since = {}
    return True


# --------------------------------------------------------------- event ordering


def in_order(events: Iterable[Event]) -> list[Event]:
    """The events of each node in the order its agent sent them (incarnation, then seq), with
    a registration after the events of the incarnations before it. Stable otherwise."""

    def key(ev: Event) -> tuple[str, int, int]:
        if isinstance(ev, AgentEvent):
            return (ev.node, ev.incarnation, ev.seq)
        return (ev.node, MAX_ID, -1)

    return sorted(events, key=key)
