"""The node agent's test fixtures: a stand-in control plane and an agent in a thread.

Each agent test runs an :class:`Agent` in a thread and plays the control plane: it
sends assignments to the agent's session and reads the events queue. Waits are
on conditions (an event arrives, a process is gone), never fixed sleeps. The
fixtures are registered for every test by tests/conftest.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent import Agent, AgentConfig
from shared.adapters.local_output import LocalOutputStore
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.domain.messages import (
    EVENT,
    EVENTS_QUEUE,
    NODES_QUEUE,
    REPLIES_QUEUE,
    Event,
    Message,
    RegisterNode,
    Registration,
    RunTask,
    TaskEnded,
    TaskStarted,
)
from shared.ports.bus import OutgoingMessage
from shared.wiring import declare_queues
from tests.helpers import wait_until

NODE = "node-1"
E = TypeVar("E", bound=Message)


# ------------------------------------------------------------------ helpers


class ControlPlane:
    """The test's side of the bus: sends assignments, collects every event."""

    def __init__(self, bus: SqliteBus, node: str = NODE) -> None:
        self.bus = bus
        self.node = node
        self.events: list[Event] = []
        self._receiver = bus.get_receiver(EVENTS_QUEUE)
        self.incarnation = 0
        """The last incarnation granted (registrations are answered as they arrive)."""
        self.refuse: str | None = None
        """Set to refuse registrations with this reason."""
        self.heartbeat_timeout_s: float | None = None
        """Said in accepted registrations' answers, as the control plane says its timeout to
        agents of protocol 5 (None: not said, as an older control plane)."""
        self.task_grace_s: float | None = None
        """Said likewise, as the cluster's task grace to agents of protocol 6."""

    def answer(self, request: RegisterNode) -> None:
        if self.refuse is None:
            self.incarnation += 1
        reply = Registration(
            node=request.node,
            agent_id=request.agent_id,
            accepted=self.refuse is None,
            incarnation=None if self.refuse else self.incarnation,
            reason=self.refuse,
            heartbeat_timeout_s=None if self.refuse else self.heartbeat_timeout_s,
            task_grace_s=None if self.refuse else self.task_grace_s,
        )
        self.reply(request.agent_id, reply)

    def reply(self, agent_id: str, message: Message) -> None:
        self.bus.send(REPLIES_QUEUE, OutgoingMessage(body=message.to_bytes(), session_id=agent_id))

    def send(self, *assignments: Message, node: str | None = None) -> None:
        session = node or self.node
        self.bus.send(
            NODES_QUEUE,
            [OutgoingMessage(body=a.to_bytes(), session_id=session) for a in assignments],
        )

    def _pull(self, max_wait_ms: int) -> None:
        for message in self._receiver.receive(max_messages=100, max_wait_ms=max_wait_ms):
            event = EVENT.validate_json(message.body)
            self.events.append(event)
            self._receiver.complete(message)
            if isinstance(event, RegisterNode) and not any(
                isinstance(e, RegisterNode) and e.agent_id == event.agent_id
                for e in self.events[:-1]
            ):
                self.answer(event)

    def wait_for(
        self, kind: type[E], predicate: Callable[[E], bool] = lambda e: True, timeout: float = 5.0
    ) -> E:
        """The first event of this kind that satisfies ``predicate`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if isinstance(event, kind) and predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no {kind.__name__} matching the predicate within {timeout} s")
            self._pull(max_wait_ms=int(min(remaining, 0.05) * 1000) + 1)

    def of(self, kind: type[E]) -> list[E]:
        self._pull(max_wait_ms=0)
        return [e for e in self.events if isinstance(e, kind)]

    def ended(self, job: int, task: int = 1, attempt: int = 1, timeout: float = 5.0) -> TaskEnded:
        return self.wait_for(
            TaskEnded,
            lambda e: (e.job_id, e.task_id, e.attempt) == (job, task, attempt),
            timeout=timeout,
        )

    def started(self, job: int, task: int = 1, attempt: int = 1) -> TaskStarted:
        return self.wait_for(
            TaskStarted, lambda e: (e.job_id, e.task_id, e.attempt) == (job, task, attempt)
        )


def run_task(
    job: int, command: str, *, task: int = 1, attempt: int = 1, incarnation: int = 1, **kw: Any
) -> RunTask:
    return RunTask(
        incarnation=incarnation, job_id=job, task_id=task, attempt=attempt, command=command, **kw
    )


# ----------------------------------------------------------------- fixtures


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[SqliteBus]:
    bus = SqliteBus(tmp_path / "bus.db")
    declare_queues(SqliteBusAdmin(bus))
    yield bus
    bus.close()


@pytest.fixture
def output(tmp_path: Path) -> LocalOutputStore:
    return LocalOutputStore(tmp_path / "out")


@pytest.fixture
def cp(bus: SqliteBus) -> ControlPlane:
    return ControlPlane(bus)


@pytest.fixture
def start_agent(
    bus: SqliteBus, output: LocalOutputStore
) -> Iterator[Callable[..., tuple[Agent, threading.Thread]]]:
    started: list[tuple[Agent, threading.Thread]] = []

    def start(**config: Any) -> tuple[Agent, threading.Thread]:
        options: dict[str, Any] = {
            "name": NODE,
            "groups": ["OnPremNodes"],
            "cores": 4,
            "heartbeat_interval_s": 30.0,
            "poll_ms": 20,
        }
        options.update(config)
        agent = Agent(AgentConfig(**options), bus=bus, output=output)
        thread = threading.Thread(target=agent.run, name="agent", daemon=True)
        thread.start()
        started.append((agent, thread))
        return agent, thread

    yield start
    for agent, _ in started:
        agent.stop()
    for _, thread in started:
        thread.join(timeout=5)
        assert not thread.is_alive(), "agent did not stop"


@pytest.fixture
def agent(start_agent: Callable[..., tuple[Agent, threading.Thread]], cp: ControlPlane) -> Agent:
    """A started agent that has registered."""
    started, _ = start_agent()
    cp.wait_for(RegisterNode)
    wait_until(lambda: started.incarnation, what="the registration answered")
    return started
