"""Job, task and node states, with HPC Pack's names, and the one table of allowed transitions.

Every state change in HybridHPC goes through :func:`check_transition`; a change
that is not in the table is refused with :class:`IllegalTransition`, never
silently applied. Terminal sets are explicit so that "is this over?" has one
answer everywhere.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Lifecycle of a job, as HPC Pack names it."""

    CONFIGURING = "Configuring"
    """Created, not yet submitted (a job being edited)."""
    SUBMITTED = "Submitted"
    """Submitted and being validated."""
    QUEUED = "Queued"
    """Validated; waiting for the scheduler to place its first task."""
    RUNNING = "Running"
    """At least one task has been dispatched or is running."""
    FINISHING = "Finishing"
    """All tasks ended; the job is being closed."""
    FINISHED = "Finished"
    """Every task finished with exit code 0. Terminal."""
    FAILED = "Failed"
    """At least one task failed (after its retries). Terminal, but can be requeued."""
    CANCELING = "Canceling"
    """Cancel requested; waiting for running tasks to be killed."""
    CANCELED = "Canceled"
    """Canceled by a user. Terminal, but can be requeued."""


class TaskState(StrEnum):
    """Lifecycle of one task (one command; one index of a sweep)."""

    QUEUED = "Queued"
    """Waiting for a node with enough free cores in the job's node groups."""
    DISPATCHING = "Dispatching"
    """Placed on a node; the assignment is on its way to the node's agent."""
    RUNNING = "Running"
    """The agent reported that the process started."""
    FINISHED = "Finished"
    """The process exited with code 0. Terminal."""
    FAILED = "Failed"
    """Non-zero exit, or its node was lost more often than the retry limit. Terminal."""
    CANCELED = "Canceled"
    """Canceled by a user; its process tree was killed. Terminal."""


class NodeState(StrEnum):
    """Lifecycle of a compute node (an on-prem host or an Azure VM)."""

    OFFLINE = "Offline"
    """Known to the cluster but not taking work (an Azure VM is deallocated)."""
    STARTING = "Starting"
    """Being started; waiting for its agent's first heartbeat."""
    ONLINE = "Online"
    """Its agent heartbeats; the scheduler may place tasks on it."""
    DRAINING = "Draining"
    """Takes no new tasks; running ones finish, then it stops."""
    STOPPING = "Stopping"
    """Being stopped (an Azure VM is being deallocated)."""
    UNREACHABLE = "Unreachable"
    """Silent past its heartbeat timeout; its tasks were requeued."""


JOB_TERMINAL: frozenset[JobState] = frozenset(
    {JobState.FINISHED, JobState.FAILED, JobState.CANCELED}
)
TASK_TERMINAL: frozenset[TaskState] = frozenset(
    {TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELED}
)
TASK_ACTIVE: frozenset[TaskState] = frozenset({TaskState.DISPATCHING, TaskState.RUNNING})
"""Task states that hold cores on a node."""

NODE_SCHEDULABLE: frozenset[NodeState] = frozenset({NodeState.ONLINE})
NODE_COMING: frozenset[NodeState] = frozenset({NodeState.ONLINE, NodeState.STARTING})
"""Runs, or is about to run, tasks without the autoscaler's help (what maxNodes counts)."""

J, T, N = JobState, TaskState, NodeState

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    J.CONFIGURING: frozenset({J.SUBMITTED, J.CANCELED}),
    J.SUBMITTED: frozenset({J.QUEUED, J.FAILED, J.CANCELED}),
    J.QUEUED: frozenset({J.RUNNING, J.FINISHING, J.FINISHED, J.FAILED, J.CANCELING, J.CANCELED}),
    J.RUNNING: frozenset({J.QUEUED, J.FINISHING, J.FINISHED, J.FAILED, J.CANCELING, J.CANCELED}),
    J.FINISHING: frozenset({J.FINISHED, J.FAILED}),
    J.CANCELING: frozenset({J.CANCELED}),
    J.FINISHED: frozenset(),
    J.FAILED: frozenset({J.QUEUED}),  # requeue
    J.CANCELED: frozenset({J.QUEUED}),  # requeue
}

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    # Queued -> Finished/Failed: a lost attempt's end arrived late; its result is kept.
    T.QUEUED: frozenset({T.DISPATCHING, T.CANCELED, T.FAILED, T.FINISHED}),
    # Dispatching -> Finished/Failed: the end overtook the start (or it could not start);
    # -> Queued: its node was lost or it never confirmed the assignment.
    T.DISPATCHING: frozenset({T.RUNNING, T.FINISHED, T.FAILED, T.QUEUED, T.CANCELED}),
    T.RUNNING: frozenset({T.FINISHED, T.FAILED, T.QUEUED, T.CANCELED}),
    T.FINISHED: frozenset(),
    T.FAILED: frozenset({T.QUEUED}),  # requeue
    T.CANCELED: frozenset({T.QUEUED}),  # requeue
}

NODE_TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    N.OFFLINE: frozenset({N.STARTING, N.ONLINE}),
    N.STARTING: frozenset({N.ONLINE, N.OFFLINE, N.STOPPING, N.UNREACHABLE}),
    N.ONLINE: frozenset({N.DRAINING, N.STOPPING, N.OFFLINE, N.UNREACHABLE}),
    N.DRAINING: frozenset({N.ONLINE, N.STOPPING, N.OFFLINE, N.UNREACHABLE}),
    N.STOPPING: frozenset({N.OFFLINE, N.UNREACHABLE}),
    N.UNREACHABLE: frozenset({N.ONLINE, N.OFFLINE, N.STOPPING}),
}


class IllegalTransition(ValueError):
    """A state change that the transition table does not allow."""

    def __init__(self, kind: str, current: StrEnum, target: StrEnum) -> None:
        super().__init__(f"{kind} cannot go from {current} to {target}")
        self.kind, self.current, self.target = kind, current, target


def can_transition(current: StrEnum, target: StrEnum) -> bool:
    """True if ``current -> target`` is in the table for its kind (job, task or node)."""
    table: dict = _TABLES[type(current)]
    return target in table[current]


def check_transition(current: StrEnum, target: StrEnum) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is allowed."""
    if not can_transition(current, target):
        raise IllegalTransition(
            type(current).__name__.removesuffix("State").lower(), current, target
        )


_TABLES: dict[type, dict] = {
    JobState: JOB_TRANSITIONS,
    TaskState: TASK_TRANSITIONS,
    NodeState: NODE_TRANSITIONS,
}
