"""The node agent against the real embedded bus and output store.

Each test runs an :class:`Agent` in a thread and plays the control plane: it
sends assignments to the agent's session and reads the events queue. Waits are
on conditions (an event arrives, a process is gone), never fixed sleeps.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import agent.session as agent_session
from agent import Agent, AgentConfig
from agent.agent import INVALID_MESSAGE
from shared.adapters.local_output import LocalOutputStore
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.domain.messages import (
    EVENT,
    EVENTS_QUEUE,
    NODES_QUEUE,
    REPLIES_QUEUE,
    CancelTask,
    Event,
    Heartbeat,
    Message,
    NodeStopping,
    RegisterNode,
    Registration,
    RunTask,
    TaskEnded,
    TaskStarted,
)
from shared.ports.bus import BusError, OutgoingMessage, SessionLockedError, SessionLockLostError
from shared.wiring import declare_queues
from tests.helpers import ROOT, child_env, group_members, process_alive, wait_until

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

    def answer(self, request: RegisterNode) -> None:
        if self.refuse is None:
            self.incarnation += 1
        reply = Registration(
            node=request.node,
            agent_id=request.agent_id,
            accepted=self.refuse is None,
            incarnation=None if self.refuse else self.incarnation,
            reason=self.refuse,
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


# -------------------------------------------------------------------- tests


def test_agent_registers_on_start(start_agent, cp):
    agent, _ = start_agent(groups=["OnPremNodes", "Big"], cores=3)
    registered = cp.wait_for(RegisterNode)
    assert registered.node == NODE
    assert registered.groups == ["OnPremNodes", "Big"]
    assert registered.cores == 3
    wait_until(lambda: agent.incarnation == 1, what="the granted incarnation")
    assert registered.agent_id == agent.agent_id


def test_each_run_is_a_new_incarnation(bus, output, cp):
    incarnations = []
    for _ in range(2):
        agent = Agent(AgentConfig(name=NODE, poll_ms=20), bus=bus, output=output)
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        wait_until(lambda agent=agent: cp.of(RegisterNode) and agent.incarnation)
        agent.stop()
        thread.join(5)
        assert not thread.is_alive()
        incarnations.append(agent.incarnation)
    assert incarnations == [1, 2]


def test_a_command_runs_and_its_exit_code_and_output_tail_are_reported(agent, cp, output):
    cp.send(run_task(1, "echo hello; echo oops >&2"))
    started = cp.started(1)
    ended = cp.ended(1)
    assert started.node == NODE and started.pid
    assert (ended.exit_code, ended.canceled, ended.error) == (0, False, None)
    assert ended.output == "hello\n"
    assert output.read(1, 1, "stdout") == b"hello\n"
    assert output.read(1, 1, "stderr") == b"oops\n"


def test_output_tail_is_the_last_4000_characters(agent, cp):
    cp.send(run_task(1, "head -c 10000 /dev/zero | tr '\\0' a; echo END"))
    ended = cp.ended(1)
    assert len(ended.output) == 4000
    assert ended.output.endswith("aaaEND\n")


def test_non_zero_exit_is_reported(agent, cp):
    cp.send(run_task(2, "echo failing; exit 3"))
    ended = cp.ended(2)
    assert ended.exit_code == 3
    assert ended.error is None and not ended.canceled
    assert ended.output == "failing\n"


def test_task_sees_hpc_environment_variables(agent, cp, monkeypatch):
    monkeypatch.setenv("HPC_TOKEN", "secret-admin-token")
    monkeypatch.setenv("AGENT_SIDE_VARIABLE", "inherited")
    env = {"HPC_JOB_ID": "7", "HPC_TASK_ID": "3", "HPC_SWEEP_INDEX": "12", "MY_VAR": "x y"}
    cp.send(run_task(7, task=3, command="env | sort", env=env))
    seen = dict(
        line.split("=", 1) for line in cp.ended(7, task=3).output.splitlines() if "=" in line
    )
    assert seen["HPC_JOB_ID"] == "7"
    assert seen["HPC_TASK_ID"] == "3"
    assert seen["HPC_SWEEP_INDEX"] == "12"
    assert seen["HPC_NODE_NAME"] == NODE  # filled by the agent when the message lacks it
    assert seen["HPC_NODE_GROUP"] == "OnPremNodes"
    assert seen["MY_VAR"] == "x y"
    assert seen["AGENT_SIDE_VARIABLE"] == "inherited"
    assert "HPC_TOKEN" not in seen


def test_node_variables_from_the_control_plane_win(agent, cp):
    env = {"HPC_NODE_NAME": "as-placed", "HPC_NODE_GROUP": "AzureNodes"}
    cp.send(run_task(8, 'echo "$HPC_NODE_NAME $HPC_NODE_GROUP"', env=env))
    assert cp.ended(8).output == "as-placed AzureNodes\n"


def test_working_directory_is_honoured(agent, cp, tmp_path):
    work = tmp_path / "work dir"
    work.mkdir()
    cp.send(run_task(3, "pwd", work_dir=str(work)))
    ended = cp.ended(3)
    assert ended.output.splitlines()[0] == str(work)


def test_bad_working_directory_is_reported_and_the_agent_keeps_running(agent, cp, output):
    cp.send(run_task(4, "echo never", work_dir="/no/such/dir"))
    ended = cp.ended(4)
    assert ended.exit_code is None
    assert "/no/such/dir" in ended.error and "working directory" in ended.error
    assert not [e for e in cp.of(TaskStarted) if e.job_id == 4]
    assert b"/no/such/dir" in output.read(4, 1, "stderr")

    cp.send(run_task(5, "echo still here"))
    assert cp.ended(5).output == "still here\n"


def test_cancel_kills_the_whole_process_tree_within_2_seconds(agent, cp):
    cp.send(run_task(6, "sh -c 'sleep 30 & sleep 30; '"))
    leader = cp.started(6).pid
    assert leader is not None
    # the shells and both sleeps: wait until the backgrounded one is there too
    tree = wait_until(
        lambda: (
            (pids := group_members(leader))
            and sum(Path(f"/proc/{p}/comm").read_text().strip() == "sleep" for p in pids) == 2
            and pids
        ),
        what="both sleeps of the task",
    )
    t0 = time.monotonic()
    cp.send(CancelTask(incarnation=1, job_id=6, task_id=1, attempt=1))
    ended = cp.wait_for(TaskEnded, lambda e: e.job_id == 6, timeout=2.0)
    assert ended.canceled
    assert ended.exit_code is not None and ended.exit_code != 0
    wait_until(lambda: not any(process_alive(p) for p in tree), timeout=2.0, what="tree gone")
    assert time.monotonic() - t0 < 2.0
    assert agent.running == []


def test_cancel_of_another_attempt_leaves_the_running_one_alone(agent, cp):
    cp.send(run_task(9, "sleep 30", attempt=2))
    pid = cp.started(9, attempt=2).pid
    cp.send(CancelTask(incarnation=1, job_id=9, task_id=1, attempt=1))
    stale = cp.wait_for(TaskEnded, lambda e: e.job_id == 9 and e.attempt == 1)
    assert stale.canceled and stale.exit_code is None  # never ran here: reported canceled
    assert process_alive(pid)
    assert agent.running == ["9.1.2"]


def test_background_leftovers_of_an_ended_task_are_killed(agent, cp):
    cp.send(run_task(10, "sleep 30 & echo $!"))
    ended = cp.ended(10)
    assert ended.exit_code == 0
    leftover = int(ended.output.strip())
    wait_until(lambda: not process_alive(leftover), timeout=2.0, what="the background sleep gone")


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

    t0 = time.monotonic()
    agent.stop()
    thread.join(timeout=3)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 2.0
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
    SqliteBusAdmin(bus).declare_queue(NODES_QUEUE, requires_session=True, lock_duration_ms=300)
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
        cp.send(run_task(19, "sleep 0.8"))
        cp.ended(19)  # well past the 300 ms lock
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


# ---------------------------------------------------------------------- CLI


def test_cli_rejects_bad_arguments_with_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "agent", "--cores", "zero"],
        cwd=ROOT,
        env=child_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--cores" in result.stderr


def test_cli_agent_runs_tasks_and_stops_cleanly_on_sigterm(tmp_path):
    env = child_env(tmp_path / "home")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "--name",
            "cli-node",
            "--group",
            "G1",
            "G2",
            "--cores",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        (tmp_path / "home").mkdir(exist_ok=True)
        bus = SqliteBus(tmp_path / "home" / "bus.db")
        declare_queues(SqliteBusAdmin(bus))
        cp = ControlPlane(bus, node="cli-node")
        registered = cp.wait_for(RegisterNode, timeout=20)
        assert (registered.groups, registered.cores) == (["G1", "G2"], 2)
        cp.send(run_task(1, 'echo "$HPC_NODE_NAME"'))
        assert cp.ended(1).output == "cli-node\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert cp.wait_for(NodeStopping).incarnation == cp.incarnation == 1
        log = proc.stderr.read()
        assert "task 1.1.1 started" in log and "task 1.1.1 ended" in log
        bus.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tasks_die_with_an_agent_killed_by_sigkill(tmp_path):
    """The lifeline watchdog kills the task trees of an agent that cannot clean up itself."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "--name", "doomed", "--cores", "2"],
        cwd=ROOT,
        env=child_env(tmp_path / "home"),
        stderr=subprocess.DEVNULL,
    )
    try:
        (tmp_path / "home").mkdir(exist_ok=True)
        bus = SqliteBus(tmp_path / "home" / "bus.db")
        declare_queues(SqliteBusAdmin(bus))
        cp = ControlPlane(bus, node="doomed")
        cp.wait_for(RegisterNode, timeout=20)
        cp.send(run_task(1, "sh -c 'sleep 300 & sleep 300'"))
        leader = cp.started(1).pid
        assert leader is not None
        tree = wait_until(lambda: len(pids := group_members(leader)) >= 3 and pids, what="tree")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        wait_until(
            lambda: not any(process_alive(p) for p in tree), timeout=2.0, what="orphans gone"
        )
        bus.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lifeline_forgets_groups_of_ended_tasks():
    from agent.lifeline import watch

    assert watch(["+10\n", "+11\n", "-10\n", "junk\n", "+12\n"]) == {11, 12}
