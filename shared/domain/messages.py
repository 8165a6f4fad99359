"""What travels on the bus: assignments to agents, events from agents, replies to agents.

Queues (names are settings-free constants because Functions bindings name them):

- ``nodes`` (sessions; session id = node name): control plane -> agent:
  :class:`RunTask`, :class:`CancelTask`.
- ``events``: agent -> control plane: :class:`RegisterNode`, :class:`Heartbeat`,
  :class:`TaskStarted`, :class:`TaskEnded`, :class:`AssignmentRefused`,
  :class:`NodeStopping`.
- ``replies`` (sessions; session id = the agent's ``agentId``): control plane -> one
  agent process: :class:`Registration` (the answer to :class:`RegisterNode`) and
  :class:`Superseded` (your incarnation is over).
- ``scheduler`` (sessions; one session id): kicks for the single-writer scheduler.
- ``events-rejected``: events the control plane could not accept, with the reason
  (a Functions batch trigger cannot dead-letter one message of its batch).

Fencing: every agent start is an *incarnation* (a number the control plane hands
out at registration and only ever raises); every dispatch is an *attempt* of its
task. Assignments carry both, agent events carry both, and anything from another
attempt or an ended incarnation changes nothing (see :mod:`shared.domain.lifecycle`).
Agent events also carry ``seq``, their order within the incarnation, so a batch
is applied in the order things happened whatever order it arrives in.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from shared.domain.memory import MAX_MEMORY_MB

NODES_QUEUE = "nodes"
EVENTS_QUEUE = "events"
REPLIES_QUEUE = "replies"
REJECTED_QUEUE = "events-rejected"
SCHEDULER_QUEUE = "scheduler"
SCHEDULER_SESSION = "scheduler"
CONNECTION_SETTING = "ServiceBusConnection"
"""Name of the app setting holding the Service Bus connection (Functions binding ``connection``)."""

SCHEDULER_LOCK_MS = 5_000
"""Service Bus's shortest lock: after a control-plane crash the scheduler's session is free
again within 5 s (a pass is well inside it)."""
NODES_LOCK_MS = 10_000
"""A node's session held by an agent that died is free again within 10 s for its successor
(a live agent renews the lock at half time)."""
EVENTS_LOCK_MS = 10_000
"""Events locked by a crashed handler are delivered again within 10 s. Until then an event
may be late by that much: the reconciler waits this long on top of the heartbeat timeout
before it calls an attempt's end lost."""

MAX_ID = 2**53 - 1
"""Largest job or task id: exact in JSON numbers (Cosmos DB, JavaScript) and in SQLite."""

JobId = Annotated[int, Field(ge=1, le=MAX_ID)]
TaskId = Annotated[int, Field(ge=1, le=MAX_ID)]
Attempt = Annotated[int, Field(ge=0, le=1_000_000)]
Incarnation = Annotated[int, Field(ge=1, le=MAX_ID)]
Seq = Annotated[int, Field(ge=0, le=MAX_ID)]
LIFELINE_SEQ = 0
"""The ``seq`` of a TaskEnded an agent's lifeline sends for it while it is silent or dead
(agent/lifeline_reports.py): an agent numbers its own events from 1, so a batch applies the
lifeline's end before the agent's later events, and the agent's own report of the same end
is known for a later one (its stdout tail is kept: lifecycle ``task_ended``)."""
NodeName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^\S+$")]
Cores = Annotated[int, Field(ge=1, le=1_000_000)]


class Message(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_bytes(self) -> bytes:
        """The wire form, leaving out every field still at its declared default (``kind``
        excepted): a message that uses no newer field is then readable by a peer that predates
        it (messages refuse unknown fields), so agents may be upgraded after the control
        plane. A message that does use a newer field still needs an agent that knows it."""
        body = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        kind = getattr(self, "kind", None)
        if kind is not None:
            body["kind"] = kind
        return json.dumps(body, separators=(",", ":")).encode()


def attempt_key(job_id: int, task_id: int, attempt: int) -> str:
    """How agents and heartbeats name one attempt: ``"job.task.attempt"``."""
    return f"{job_id}.{task_id}.{attempt}"


def parse_attempt_key(key: str) -> tuple[int, int, int] | None:
    """``(job, task, attempt)`` of a key, or None when it is not one."""
    parts = key.split(".")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 16 for p in parts):
        return None
    job_id, task_id, attempt = (int(p) for p in parts)
    return job_id, task_id, attempt


# --- control plane -> agent -------------------------------------------------


TASK_MEMORY_ENV = "HPC_TASK_MEMORY_MB"
"""A task's memory ask (its minMemoryMb, MB) in its environment, when it asked for some: an
agent that enforces memory kills it past that (agent/memorylimit.py), and the task may read
it (as Slurm's SLURM_MEM_PER_NODE). In the environment, not a field: agents of any protocol
read the assignment."""


JOB_SUBMIT_ENV = "HPC_JOB_SUBMIT_TIME"
"""The job's submit time (ISO 8601, UTC) in each task's environment: the agent stamps the
task's output with it and the job id (shared.ports.output.job_stamp), so that a store that
numbers jobs from 1 again never serves an old job's output. In the environment, not a field:
agents of any protocol read the assignment (an older one writes no stamp)."""


class RunTask(Message):
    kind: Literal["run"] = "run"
    incarnation: Incarnation
    """The node incarnation this is meant for; any other incarnation drops it and says so."""
    job_id: JobId
    task_id: TaskId
    attempt: Attempt
    command: str
    cores: Cores = 1
    """Cores granted on this node (the agent's own count of its busy cores)."""
    runtime_limit_s: int | None = Field(default=None, ge=1)
    """The agent kills the task's process tree past it and reports why."""
    work_dir: str | None = None
    stdout: str | None = None
    """A file the agent writes stdout to as well (placeholders expanded; relative: to the
    working directory), in addition to the Output store."""
    stderr: str | None = None
    """The same for stderr; the same file as ``stdout`` gets both streams."""
    env: dict[str, str] = Field(default_factory=dict)
    """Includes HPC_JOB_ID, HPC_TASK_ID, HPC_SWEEP_INDEX, HPC_NODE_NAME, HPC_NODE_GROUP,
    HPC_TASK_CORES (granted, all nodes) and HPC_NODES (``node:cores,...``, this node first)."""
    owner: str | None = None
    """The job's owner (an API user name). Sent only to agents of protocol 4 or later
    (shared.domain.protocol.carries_owner): an agent with --run-as-owner runs the task as the
    OS user of that name, and fails a task whose owner it is not told."""


class CancelTask(Message):
    kind: Literal["cancel"] = "cancel"
    incarnation: Incarnation
    job_id: JobId
    task_id: TaskId
    attempt: Attempt


Assignment = Annotated[RunTask | CancelTask, Field(discriminator="kind")]
ASSIGNMENT: TypeAdapter[RunTask | CancelTask] = TypeAdapter(Assignment)


# --- control plane -> one agent process (replies queue) ----------------------


class Registration(Message):
    """The answer to :class:`RegisterNode`: accepted with an incarnation, or refused."""

    kind: Literal["registration"] = "registration"
    node: NodeName
    agent_id: str
    accepted: bool
    incarnation: int | None = None
    reason: str | None = None
    """Why it was refused, said so that the operator knows what to do."""
    heartbeat_timeout_s: float | None = Field(default=None, gt=0)
    """The control plane's HPC_HEARTBEAT_TIMEOUT_S: past it without a heartbeat the node is
    lost and its attempts run elsewhere, so the agent's lifeline fences its tasks at 2/3 of
    it (agent/lifeline.py). Said only to agents of protocol 5 or later
    (shared.domain.protocol.tells_timeout), on an accepted registration."""
    note: str | None = Field(default=None, max_length=2000)
    """What the agent's operator should know (a node group its ``--group`` created because
    no group of that name existed: perhaps misspelt). Protocol 5, as ``heartbeat_timeout_s``."""
    task_grace_s: float | None = Field(default=None, ge=0, le=3600)
    """The cluster's task grace period (the control plane's HPC_TASK_GRACE_S): how long a task
    being canceled or past its runtime limit has between SIGTERM and SIGKILL, the same on
    every node (HPC Pack's TaskCancelGracePeriod). Protocol 6
    (shared.domain.protocol.tells_grace), on an accepted registration."""


class Superseded(Message):
    """Your incarnation is over (another agent holds the node, it was Unreachable, or an admin
    brought it back online): kill what you run and register again (``reason`` says which)."""

    kind: Literal["superseded"] = "superseded"
    node: NodeName
    incarnation: int
    current: int
    reason: str


Reply = Annotated[Registration | Superseded, Field(discriminator="kind")]
REPLY: TypeAdapter[Registration | Superseded] = TypeAdapter(Reply)


# --- agent -> control plane -------------------------------------------------


class RegisterNode(Message):
    """An agent process asks to hold a node. Sent again (same ``agent_id``) until answered."""

    kind: Literal["register"] = "register"
    node: NodeName
    groups: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(max_length=64)
    """A proposal: taken only when the node name is new (an on-prem machine joining); the
    control plane owns the groups after that (shared.domain.ownership)."""
    cores: Cores
    """What the machine has: an on-prem node's cores follow it, a managed VM's do not."""
    agent_id: str = Field(min_length=8, max_length=64)
    """Random per agent process; the replies session the answer goes to."""
    host_id: str = Field(min_length=8, max_length=64)
    """Kept in the agent's state folder: the same id means the same machine and folder, whose
    lock file guarantees the previous process of this name is gone (a restart, not a rival)."""
    started_at: datetime
    """When this agent process started: a registration older than the holder's is refused."""
    ended: list[EndedAttempt] = Field(default_factory=list, max_length=2000)
    """Ends an earlier agent of this node recorded on disk but may not have reported: applied
    before that incarnation's work is requeued, so a finished task is not run again."""
    protocol: int = Field(default=1, ge=1, le=1_000)
    """The agent protocol it speaks: which RunTask fields it reads (shared.domain.protocol).
    Left out (as by agents that predate it): 1. The scheduler sends it only tasks it reads."""
    memory_mb: int | None = Field(default=None, ge=1, le=MAX_MEMORY_MB)
    """The machine's memory (MB): the scheduler's filter for tasks that ask for memory. Left
    off the wire when unknown."""
    run_as_owner: bool = False
    """It runs each task as its job's owner (``--run-as-owner``), not as its own OS user:
    shown with the node, so admins and users see where tasks run as whom. Sent only when
    true (left off the wire at its default), so agents without the option register with any
    control plane."""


class AgentEvent(Message):
    node: NodeName
    incarnation: Incarnation
    seq: Seq = 0


class EndedAttempt(Message):
    """A recent ending, repeated in heartbeats so that a lost TaskEnded is recovered."""

    key: str
    exit_code: int | None
    canceled: bool = False
    error: str | None = None
    over_limit: bool = False
    """As :attr:`TaskEnded.over_limit`."""


class Heartbeat(AgentEvent):
    kind: Literal["heartbeat"] = "heartbeat"
    agent_id: str = ""
    free_cores: int = Field(ge=0)
    running: list[str] = Field(default_factory=list)
    """Keys ("job.task.attempt") of the attempts running now."""
    ended: list[EndedAttempt] = Field(default_factory=list)
    """Attempts that ended lately (the last HPC_HEARTBEAT_TIMEOUT_S, at most a few hundred)."""


class TaskStarted(AgentEvent):
    kind: Literal["started"] = "started"
    job_id: JobId
    task_id: TaskId
    attempt: Attempt
    pid: int | None = None


class TaskEnded(AgentEvent):
    kind: Literal["ended"] = "ended"
    job_id: JobId
    task_id: TaskId
    attempt: Attempt
    exit_code: int | None
    canceled: bool = False
    output: str = Field(default="", max_length=16_000)
    """Tail of stdout (at most 4,000 characters)."""
    error: str | None = None
    """Why it failed other than by its exit code: it could not run (bad working directory,
    ...), or it was killed at its runtime limit."""
    over_limit: bool = False
    """The agent killed it at its runtime limit (``error`` says so): an end of its own, so
    it is the task's result even when its node was given up during its grace (hpc node
    offline) and a new attempt waits for it. Sent only then (the wire form leaves out
    defaults): a control plane from before it refuses the field, so upgrade the control
    plane first, as always."""


class AssignmentRefused(AgentEvent):
    """An assignment meant for another incarnation of this node was dropped, not run."""

    kind: Literal["refused"] = "refused"
    job_id: JobId
    task_id: TaskId
    attempt: Attempt
    meant_for: int
    reason: str


class NodeStopping(AgentEvent):
    kind: Literal["stopping"] = "stopping"
    killed: list[str] = Field(default_factory=list)
    """Attempts it killed on the way out (requeued without using a retry)."""


TaskEvent = TaskStarted | TaskEnded | AssignmentRefused
Event = Annotated[
    RegisterNode | Heartbeat | TaskStarted | TaskEnded | AssignmentRefused | NodeStopping,
    Field(discriminator="kind"),
]
EVENT: TypeAdapter[
    RegisterNode | Heartbeat | TaskStarted | TaskEnded | AssignmentRefused | NodeStopping
] = TypeAdapter(Event)

RegisterNode.model_rebuild()
