"""The lifeline's fence (agent/lifeline.py): an agent that is alive but not heard must not
leave its tasks running while the control plane runs their attempts elsewhere (found by a
live probe: an agent paused past HPC_HEARTBEAT_TIMEOUT_S, the task ran to its end on two
nodes). The rule as a table, the watchdog process on a real process group, then a real
agent cut off from the bus."""

# ruff: noqa: F811 - pytest fixtures imported from tests/agent_fixtures.py

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from agent.lifeline import KILLED, Lifeline
from agent.watch import Watch
from shared.domain.messages import Heartbeat, RegisterNode, TaskEnded, TaskStarted
from shared.ports.bus import BusError
from tests.agent_fixtures import bus, cp, output, run_task, start_agent  # noqa: F401 - fixtures
from tests.helpers import process_alive, wait_until


@pytest.mark.parametrize(
    ("lines", "now", "due"),
    [
        ([], 100.0, False),  # nothing runs: nothing to fence
        (["+42 1.1.0"], 100.0, True),  # a task, and no beat since t=10 (its start)
        (["+42 1.1.0", "."], 100.0, False),  # a heartbeat went out a second ago
        (["+42 1.1.0", "-42"], 100.0, False),  # it ended
    ],
)
def test_the_fence_is_due_when_tasks_run_and_no_heartbeat_went_out(lines, now, due):
    state = Watch(0.0, fence_s=10.0)
    for line in lines:
        state.line(line, 10.0 if line != "." else now - 1)
    assert state.fence_due(now) is due
    state.fence_s = 0.0
    assert not state.fence_due(now)  # no fence asked for


@pytest.mark.parametrize(
    ("line", "fence_s"),
    [
        ("f4.5", 4.5),  # the control plane's timeout said at registration: 2/3 of it
        ("f0", 60.0),  # nonsense is ignored: the fence stays
        ("f-3", 60.0),
        ("finf", 60.0),
        ("fnan", 60.0),
        ("fx", 60.0),
    ],
)
def test_the_agent_may_change_the_fence(line, fence_s):
    state = Watch(0.0, fence_s=60.0)
    state.line("+42 1.1.0", 0.0)
    state.line(line, 0.0)
    assert state.fence_s == fence_s
    assert state.fence_due(fence_s + 1) and not state.fence_due(fence_s - 1)


def _group(tmp_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True, cwd=tmp_path)


def test_the_watchdog_kills_and_marks_the_tasks_of_an_agent_not_heard(tmp_path):
    marks = tmp_path / "ends"
    marks.mkdir()
    lifeline = Lifeline(fence_s=1.0, marks=marks)
    task = _group(tmp_path)
    try:
        lifeline.track(task.pid, "7.1.0")
        wait_until(lambda: task.poll() is not None, timeout=5, what="the fenced task killed")
        assert (marks / ("7.1.0" + KILLED)).exists()  # so the agent does not report it ended
    finally:
        task.kill()
        lifeline.close()


def test_heartbeats_keep_the_fence_away(tmp_path):
    lifeline = Lifeline(fence_s=1.0, marks=tmp_path)
    task = _group(tmp_path)
    try:
        lifeline.track(task.pid, "8.1.0")
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            lifeline._beat_at = 0.0  # the throttle is one line a second: beat every 0.2 s
            lifeline.beat()
            time.sleep(0.2)
        assert task.poll() is None and process_alive(task.pid)
        assert not (tmp_path / ("8.1.0" + KILLED)).exists()
    finally:
        task.kill()
        lifeline.close()


def test_an_agent_cut_off_from_the_bus_has_its_task_fenced_not_reported_and_registers_again(
    start_agent, cp, tmp_path, monkeypatch
):
    agent, _ = start_agent(
        heartbeat_interval_s=0.2, fence_s=1.0, state_dir=tmp_path / "agent", kill_grace_s=0.1
    )
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    first = agent.incarnation
    cp.send(run_task(5, "sleep 60", incarnation=first))
    started = cp.wait_for(TaskStarted)
    pid = started.pid
    assert pid is not None and process_alive(pid)

    real_flush = agent.reporter.flush

    def cut_off() -> None:
        raise BusError("the bus is out of reach")

    monkeypatch.setattr(agent.reporter, "flush", cut_off)
    wait_until(lambda: not process_alive(pid), timeout=6, what="the fence killed the task")
    monkeypatch.setattr(agent.reporter, "flush", real_flush)  # heard again
    wait_until(lambda: len(cp.of(RegisterNode)) == 2, timeout=10, what="the agent registered again")
    # its events go out in order: once the new incarnation heartbeats, an end would be in
    cp.wait_for(Heartbeat, lambda h: h.incarnation == agent.incarnation and h.incarnation != first)
    ends = [e for e in cp.of(TaskEnded) if e.job_id == 5]
    assert ends == []  # not an end of its own: the control plane requeues the attempt
    assert agent.incarnation != first
    # the same process registered again, and says so: its start time is the first one's, so
    # the control plane does not call it a restart (found by the third probe)
    first_request, again = cp.of(RegisterNode)
    assert again.started_at == first_request.started_at and again.agent_id != first_request.agent_id


def test_the_fence_follows_the_control_planes_timeout_not_this_machines(
    start_agent, cp, tmp_path, monkeypatch
):
    """This machine's HPC_HEARTBEAT_TIMEOUT_S would fence after 60 s; the control plane says
    its own timeout is 3 s, so the task is fenced after 2 s of silence, before that control
    plane would give its attempt to another node."""
    cp.heartbeat_timeout_s = 3.0
    agent, _ = start_agent(
        heartbeat_interval_s=0.2, fence_s=60.0, state_dir=tmp_path / "agent", kill_grace_s=0.1
    )
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    wait_until(lambda: agent.tasks.fence_s == 2.0, what="the control plane's fence")
    cp.send(run_task(6, "sleep 60", incarnation=agent.incarnation))
    pid = cp.wait_for(TaskStarted).pid
    assert pid is not None and process_alive(pid)

    def cut_off() -> None:
        raise BusError("the bus is out of reach")

    monkeypatch.setattr(agent.reporter, "flush", cut_off)
    wait_until(lambda: not process_alive(pid), timeout=6, what="the fence killed the task")


def test_an_older_control_plane_says_no_timeout_and_the_fence_stays_this_machines(
    start_agent, cp, tmp_path
):
    agent, _ = start_agent(heartbeat_interval_s=0.2, fence_s=7.0, state_dir=tmp_path / "agent")
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    # its first heartbeat goes out after the answer was read, fence and all
    cp.wait_for(Heartbeat, lambda h: h.incarnation == agent.incarnation)
    assert agent.tasks.fence_s == 7.0
