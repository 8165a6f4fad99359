"""A test double of one agent process, for control-plane tests without processes.

It speaks the real protocol through the real bus: registers (RegisterNode on the
events queue's path, the answer read from its own replies session), stamps its
events with node, incarnation and a growing seq, and reads its node's session as
an agent would. It runs nothing: the test says what happened.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.domain.messages import (
    ASSIGNMENT,
    NODES_QUEUE,
    REPLIES_QUEUE,
    REPLY,
    AssignmentRefused,
    CancelTask,
    EndedAttempt,
    Heartbeat,
    NodeStopping,
    RegisterNode,
    Registration,
    RunTask,
    Superseded,
    TaskEnded,
    TaskStarted,
)
from shared.domain.protocol import AGENT_PROTOCOL
from shared.usecases.control_plane import ControlPlane


class AgentDouble:
    def __init__(
        self,
        cp: ControlPlane,
        name: str,
        *,
        cores: int = 2,
        groups: tuple[str, ...] = ("OnPremNodes",),
        host_id: str | None = None,
        started_at: datetime | None = None,
        protocol: int | None = AGENT_PROTOCOL,
    ) -> None:
        """``protocol`` None: an agent that predates protocol versions (sends none)."""
        self.cp, self.name, self.cores, self.groups = cp, name, cores, list(groups)
        self.protocol = protocol
        self.run_as_owner = False
        """Said in its registrations, as ``hpc agent run --run-as-owner`` does."""
        self.agent_id = uuid.uuid4().hex
        self.host_id = host_id or f"host-of-{name}".ljust(8, "-")
        self.started_at = started_at or cp.deps.clock()
        self.incarnation = 0
        self.seq = 0

    # --- registration -----------------------------------------------------------

    def request(self) -> RegisterNode:
        return RegisterNode(
            node=self.name,
            groups=self.groups,
            cores=self.cores,
            agent_id=self.agent_id,
            host_id=self.host_id,
            started_at=self.started_at,
            protocol=1 if self.protocol is None else self.protocol,  # 1: left off the wire
            run_as_owner=self.run_as_owner,
        )

    def register(self) -> Registration:
        """Register and return the answer; the incarnation is kept when accepted."""
        self.cp.apply_events([self.request()])
        [answer] = [r for r in self.replies() if isinstance(r, Registration)]
        if answer.accepted:
            assert answer.incarnation is not None
            self.incarnation, self.seq = answer.incarnation, 0
        return answer

    def replies(self) -> list[Registration | Superseded]:
        out = []
        with self.cp.bus.get_session_receiver(REPLIES_QUEUE, session_id=self.agent_id) as rx:
            while batch := rx.receive(max_messages=100, max_wait_ms=0):
                for m in batch:
                    out.append(REPLY.validate_json(m.body))
                    rx.complete(m)
        return out

    # --- events ------------------------------------------------------------------

    def stamp(self) -> dict[str, Any]:
        self.seq += 1
        return {"node": self.name, "incarnation": self.incarnation, "seq": self.seq}

    def started(self, run: RunTask | tuple[int, int, int]) -> TaskStarted:
        job_id, task_id, attempt = _ids(run)
        return TaskStarted(**self.stamp(), job_id=job_id, task_id=task_id, attempt=attempt)

    def ended(
        self, run: RunTask | tuple[int, int, int], exit_code: int | None = 0, **kw: Any
    ) -> TaskEnded:
        job_id, task_id, attempt = _ids(run)
        kw.setdefault("output", f"out {task_id}")
        return TaskEnded(
            **self.stamp(),
            job_id=job_id,
            task_id=task_id,
            attempt=attempt,
            exit_code=exit_code,
            **kw,
        )

    def heartbeat(
        self, running: list[str] | None = None, ended: list[EndedAttempt] | None = None
    ) -> Heartbeat:
        return Heartbeat(
            **self.stamp(),
            agent_id=self.agent_id,
            free_cores=self.cores,
            running=running or [],
            ended=ended or [],
        )

    def refused(self, run: RunTask) -> AssignmentRefused:
        return AssignmentRefused(
            **self.stamp(),
            job_id=run.job_id,
            task_id=run.task_id,
            attempt=run.attempt,
            meant_for=run.incarnation,
            reason="test",
        )

    def stopping(self, killed: list[str] | None = None) -> NodeStopping:
        return NodeStopping(**self.stamp(), killed=killed or [])

    def send(self, *events: Any) -> None:
        self.cp.apply_events(list(events))

    # --- the node's session -----------------------------------------------------------

    def assignments(self) -> list[RunTask | CancelTask]:
        """What the node's agent would receive now (completed, as the agent would)."""
        out = []
        with self.cp.bus.get_session_receiver(NODES_QUEUE, session_id=self.name) as rx:
            while batch := rx.receive(max_messages=100, max_wait_ms=0):
                for m in batch:
                    out.append(ASSIGNMENT.validate_json(m.body))
                    rx.complete(m)
        return out

    def runs(self) -> list[RunTask]:
        return [a for a in self.assignments() if isinstance(a, RunTask)]

    def run_all(self, exit_code: int = 0) -> list[RunTask]:
        """Start and end every assignment waiting, as one batch."""
        runs = self.runs()
        self.send(*[self.started(r) for r in runs], *[self.ended(r, exit_code) for r in runs])
        return runs


def _ids(run: RunTask | tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(run, RunTask):
        return run.job_id, run.task_id, run.attempt
    return run


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc, arg-type]
