"""The node agent and the bus: heartbeats, stopping, duplicate and invalid messages, its session lock.

The agent runs against the real embedded bus and output store (tests/agent_fixtures.py).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

import agent.session as agent_session
from agent import Agent, AgentConfig
from agent.agent import INVALID_MESSAGE
from agent.session import ABANDON
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.domain.messages import (
    EVENTS_QUEUE,
    NODES_QUEUE,
    CancelTask,
    Heartbeat,
    NodeStopping,
    RegisterNode,
    TaskEnded,
    TaskStarted,
)
from shared.ports.bus import (
    BusError,
    OutgoingMessage,
    ReceivedMessage,
    SessionLockedError,
    SessionLockLostError,
)
from shared.wiring import declare_queues
from tests.agent_fixtures import NODE, ControlPlane, run_task
from tests.helpers import group_members, process_alive, wait_until


def test_heartbeats_carry_free_cores_and_running_tasks(start_agent, cp):
    agent, _ = start_agent(cores=4, heartbeat_interval_s=0.05)
    idle = cp.wait_for(Heartbeat)
    assert (idle.node, idle.incarnation, idle.free_cores, idle.running) == (
        NODE,
        agent.incarnation,
        4,
        [],
    )
    cp.send(run_task(11, "sleep 30", cores=3), run_task(12, "sleep 30", cores=2))
    busy = cp.wait_for(Heartbeat, lambda h: len(h.running) == 2)
    assert busy.running == ["11.1.1", "12.1.1"]
    assert busy.free_cores == 0  # oversubscribed (3 + 2 > 4): never reported below zero

    cp.send(CancelTask(incarnation=1, job_id=12, task_id=1, attempt=1))
    after = cp.wait_for(Heartbeat, lambda h: h.running == ["11.1.1"])
    assert after.free_cores == 1


def test_stop_sends_node_stopping_and_kills_running_tasks(start_agent, cp, bus):
    agent, thread = start_agent()
    cp.wait_for(RegisterNode)
    cp.send(run_task(13, "sh -c 'sleep 30 & sleep 30'"))
    leader = cp.started(13).pid
    tree = wait_until(lambda: len(group_members(leader)) >= 3 and group_members(leader))

    agent.stop()
    thread.join(timeout=20)
    assert not thread.is_alive()
    stopping = cp.wait_for(NodeStopping)
    assert (stopping.node, stopping.incarnation) == (NODE, agent.incarnation)
    assert not any(process_alive(p) for p in tree)
    assert not [e for e in cp.of(TaskEnded) if e.job_id == 13]  # the control plane requeues it
    with bus.get_session_receiver(NODES_QUEUE, session_id=NODE):  # the session was released
        pass


def test_an_invalid_message_is_dead_lettered(agent, cp, bus):
    bus.send(NODES_QUEUE, OutgoingMessage(body=b'{"kind": "explode"}', session_id=NODE))
    bus.send(NODES_QUEUE, OutgoingMessage(body=b"not json", session_id=NODE))
    cp.send(run_task(14, "echo fine"))
    assert cp.ended(14).output == "fine\n"  # processed in order, after the bad ones
    wait_until(lambda: SqliteBusAdmin(bus).count(NODES_QUEUE, sub_queue="deadletter") == 2)
    with bus.get_receiver(NODES_QUEUE, sub_queue="deadletter") as dead:
        letters = dead.receive(max_messages=10, max_wait_ms=1000)
    assert {m.dead_letter_reason for m in letters} == {INVALID_MESSAGE}
    assert all(m.dead_letter_error_description for m in letters)


def test_an_assignment_delivered_twice_runs_once(agent, cp):
    cp.send(run_task(15, "echo once"), run_task(15, "echo once"), run_task(16, "true"))
    cp.ended(15)
    cp.ended(16)
    assert len([e for e in cp.of(TaskStarted) if e.job_id == 15]) == 1
    assert len([e for e in cp.of(TaskEnded) if e.job_id == 15]) == 1


def test_a_new_attempt_of_a_task_replaces_the_old_one(agent, cp):
    cp.send(run_task(17, "sleep 30", attempt=1))
    old_pid = cp.started(17, attempt=1).pid
    cp.send(run_task(17, "echo second", attempt=2))
    assert cp.ended(17, attempt=2).output == "second\n"
    assert cp.ended(17, attempt=1).canceled
    assert not process_alive(old_pid)


def test_agent_waits_for_a_session_held_by_an_earlier_receiver(start_agent, cp, bus, monkeypatch):
    monkeypatch.setattr(agent_session, "ACCEPT_RETRY_S", 0.05)
    holder = bus.get_session_receiver(NODES_QUEUE, session_id=NODE)
    start_agent()
    cp.wait_for(RegisterNode)
    cp.send(run_task(18, "echo after"))
    holder.close()
    assert cp.ended(18).output == "after\n"


def test_session_lock_is_renewed_before_it_expires(tmp_path, output):
    bus = SqliteBus(tmp_path / "short.db")
    # 1 s: renewed when half is left, so a loop stalled 0.5 s by a loaded machine (make test
    # runs two processes) does not lose it, where 300 ms did once (150 ms of slack)
    SqliteBusAdmin(bus).declare_queue(NODES_QUEUE, requires_session=True, lock_duration_ms=1000)
    declare_queues(SqliteBusAdmin(bus))
    cp = ControlPlane(bus)
    accepts = []
    real_accept = bus.get_session_receiver

    def accept(queue: str, **kwargs: Any):
        if queue == NODES_QUEUE:
            accepts.append(1)
        return real_accept(queue, **kwargs)

    bus.get_session_receiver = accept  # type: ignore[method-assign]
    agent = Agent(AgentConfig(name=NODE, poll_ms=20), bus=bus, output=output)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        cp.wait_for(RegisterNode)
        cp.send(run_task(19, "sleep 2.5"))
        cp.ended(19, timeout=20.0)  # well past the 1 s lock
        with pytest.raises(SessionLockedError):
            real_accept(NODES_QUEUE, session_id=NODE)
        assert len(accepts) == 1  # held all along, never lost and accepted again
        cp.send(run_task(20, "echo still mine"))
        assert cp.ended(20).output == "still mine\n"
    finally:
        agent.stop()
        thread.join(5)
        bus.close()
    assert not thread.is_alive()


def test_a_lost_session_lock_is_accepted_again(start_agent, cp, bus, monkeypatch):
    real_accept = bus.get_session_receiver
    accepted = []

    def accept(*args: Any, **kwargs: Any):
        receiver = real_accept(*args, **kwargs)
        accepted.append(receiver)
        if len(accepted) == 1:  # the first lock gets lost on its third receive
            real_receive, calls = receiver.receive, []

            def receive(**kw: Any):
                calls.append(1)
                if len(calls) == 3:
                    receiver.close()
                    raise SessionLockLostError("lock of session lost (test)")
                return real_receive(**kw)

            receiver.receive = receive
        return receiver

    monkeypatch.setattr(bus, "get_session_receiver", accept)
    start_agent()
    cp.wait_for(RegisterNode)
    wait_until(lambda: len(accepted) >= 2, what="the session accepted again")
    cp.send(run_task(21, "echo again"))
    assert cp.ended(21).output == "again\n"


def test_a_transient_bus_error_does_not_stop_the_agent(start_agent, cp, bus, monkeypatch):
    real_send, failures = bus.send, []

    def flaky_send(queue: str, messages: Any) -> None:
        if queue == EVENTS_QUEUE and len(failures) < 2:
            failures.append(queue)
            raise BusError("service busy (test)")
        real_send(queue, messages)

    monkeypatch.setattr(bus, "send", flaky_send)
    agent, thread = start_agent()
    registered = cp.wait_for(RegisterNode)  # sent once the bus recovered
    assert registered.agent_id == agent.agent_id
    assert len(failures) == 2
    cp.send(run_task(22, "echo ok"))
    assert cp.ended(22).output == "ok\n"
    assert thread.is_alive()


def test_a_stopping_agent_starts_no_task_it_receives(bus, output, tmp_path) -> None:
    """A probe: SIGTERM came while a batch was being received, and the agent started an
    instant task in the same millisecond, killed it before its end record, and the task
    ran to its end again elsewhere. Stopping, it leaves the assignment for the next."""
    config = AgentConfig(name=NODE, groups=["OnPremNodes"], cores=4, state_dir=tmp_path / "st")
    stopped = Agent(config, bus=bus, output=output)
    stopped.stop()
    mark = tmp_path / "ran"
    task = run_task(21, f"touch {mark}")
    message = ReceivedMessage(
        body=task.model_dump_json(by_alias=True).encode(),
        message_id="m1",
        sequence_number=1,
        delivery_count=1,
        enqueued_time=datetime.now(UTC),
    )
    assert stopped._handle([message]) == [ABANDON]
    assert stopped.tasks.running == {} and not mark.exists()
