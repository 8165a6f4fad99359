"""What travels on the bus: assignments to agents, and events from agents.

Queues (names are settings-free constants because Functions bindings name them):

- ``nodes`` (sessions; session id = node name): control plane -> agent:
  :class:`RunTask`, :class:`CancelTask`.
- ``events``: agent -> control plane: :class:`NodeRegistered`,
  :class:`Heartbeat`, :class:`TaskStarted`, :class:`TaskEnded`.
- ``scheduler`` (sessions; one session id): kicks for the single-writer scheduler.

Every task message names the task's ``attempt`` so that an event about an
earlier attempt (a requeued task) is recognised as stale and ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

NODES_QUEUE = "nodes"
EVENTS_QUEUE = "events"
SCHEDULER_QUEUE = "scheduler"
SCHEDULER_SESSION = "scheduler"
CONNECTION_SETTING = "ServiceBusConnection"
"""Name of the app setting holding the Service Bus connection (Functions binding ``connection``)."""


class Message(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


# --- control plane -> agent -------------------------------------------------


class RunTask(Message):
    kind: Literal["run"] = "run"
    job_id: int
    task_id: int
    attempt: int
    command: str
    cores: int = 1
    work_dir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    """Includes HPC_JOB_ID, HPC_TASK_ID, HPC_SWEEP_INDEX, HPC_NODE_NAME, HPC_NODE_GROUP."""


class CancelTask(Message):
    kind: Literal["cancel"] = "cancel"
    job_id: int
    task_id: int
    attempt: int


Assignment = Annotated[RunTask | CancelTask, Field(discriminator="kind")]
ASSIGNMENT = TypeAdapter(Assignment)


# --- agent -> control plane -------------------------------------------------


class NodeRegistered(Message):
    kind: Literal["registered"] = "registered"
    node: str
    groups: list[str]
    cores: int
    incarnation: str
    """Random per agent process: a new one means earlier tasks on this node are lost."""
    running: list[str] = Field(default_factory=list)
    """Task keys ("job.task.attempt") the agent still runs (after a reconnect)."""


class Heartbeat(Message):
    kind: Literal["heartbeat"] = "heartbeat"
    node: str
    incarnation: str
    free_cores: int
    running: list[str] = Field(default_factory=list)


class TaskStarted(Message):
    kind: Literal["started"] = "started"
    node: str
    job_id: int
    task_id: int
    attempt: int
    pid: int | None = None


class TaskEnded(Message):
    kind: Literal["ended"] = "ended"
    node: str
    job_id: int
    task_id: int
    attempt: int
    exit_code: int | None
    canceled: bool = False
    output: str = ""
    """Tail of stdout (at most 4,000 characters)."""
    error: str | None = None
    """Why it could not run (bad working directory, ...), if it never started."""


class NodeStopping(Message):
    kind: Literal["stopping"] = "stopping"
    node: str
    incarnation: str


Event = Annotated[
    NodeRegistered | Heartbeat | TaskStarted | TaskEnded | NodeStopping,
    Field(discriminator="kind"),
]
EVENT = TypeAdapter(Event)
