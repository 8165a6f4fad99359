"""The lifeline's own reports (agent/lifeline_reports.py): a task whose agent is silent or
gone, and whose command returned by itself, is reported ended by the watchdog, so the control
plane does not give its attempt up and run it again (a probe: a paused agent's task ended by
itself 2 s into the pause, its node was taken offline, and its next attempt ran to its end
too). The rule as a table; the watchdog on real task shells and the embedded bus; an agent
whose loop is stopped mid-task."""

# ruff: noqa: F811 - pytest fixtures imported from tests/agent_fixtures.py

from __future__ import annotations

import os
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.endrecords import KILLED, EndRecords
from agent.lifeline import Lifeline
from agent.watch import Tracked, Watch
from shared.domain.messages import RegisterNode, TaskEnded, TaskStarted
from tests.agent_fixtures import NODE, bus, cp, output, run_task, start_agent  # noqa: F401
from tests.helpers import process_alive, wait_until


@pytest.mark.parametrize(
    ("lines", "due"),
    [
        ([], False),  # nothing tracked
        (["i3", "+42 1.1.0"], True),  # not heard since t=10: past half the fence (5 s)
        (["i3", "+42 1.1.0", "."], False),  # a heartbeat went out a second ago
        (["+42 1.1.0"], False),  # no incarnation said yet: no end to report under one
        (["i3", "+42 1.1.0", "-42"], False),  # the agent collected it
    ],
)
def test_reports_are_due_once_the_agent_is_not_heard_for_half_the_fence(lines, due):
    state = Watch(0.0, fence_s=10.0)
    for line in lines:
        state.line(line, 99.0 if line == "." else 10.0)
    assert state.reports_due(100.0) is due
    state.fence_s = 0.0
    assert not state.reports_due(100.0)  # no fence asked for: the agent said no timeout


def test_reports_come_at_half_the_fence_and_the_fence_after_them():
    state = Watch(0.0, fence_s=10.0)
    state.line("i3", 0.0)
    state.line("+42 1.1.0", 0.0)
    assert not state.reports_due(4.9) and state.reports_due(5.1)
    assert not state.fence_due(9.9) and state.fence_due(10.1)


@pytest.mark.parametrize(
    ("line", "tracked"),
    [
        ("+42 1.1.0", Tracked("1.1.0", 3)),
        ("+42 1.1.0 /out/1 1/stdout", Tracked("1.1.0", 3, "/out/1 1/stdout")),
        ("+42", Tracked("", 3)),  # an older agent's line: tracked, killed, never reported
    ],
)
def test_a_tracked_task_keeps_its_incarnation_and_stdout_file(line, tracked):
    state = Watch(0.0)
    state.line("i3", 0.0)
    state.line(line, 0.0)
    state.line("i4", 0.0)  # a later incarnation's tasks are tracked after it
    assert state.groups == {42: tracked}


@pytest.mark.parametrize("line", ["i0", "i-1", "ix", "i", "i1.5"])
def test_nonsense_incarnations_are_ignored(line):
    state = Watch(0.0)
    state.line("i3", 0.0)
    state.line(line, 0.0)
    assert state.incarnation == 3


# ------------------------------------------------------------ the watchdog, for real


def _task(records: EndRecords, key: str, command: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A task's shell as the agent starts it (end record and all), its stdout in a file."""
    stdout = records.folder.parent / f"{key}.out"
    with stdout.open("wb") as out:
        proc = subprocess.Popen(
            records.argv(command, records.folder / key), start_new_session=True, stdout=out
        )
    return proc, stdout


def _lifeline(tmp_path: Path, fence_s: float) -> tuple[Lifeline, EndRecords]:
    records = EndRecords(tmp_path / "ends")
    bus_env = {"HPC_HOME": str(tmp_path), "HPC_BUS": "sqlite"}  # the bus fixture's file
    lifeline = Lifeline(fence_s=fence_s, marks=records.folder, node=NODE, report_env=bus_env)
    lifeline.incarnation(7)
    return lifeline, records


def test_the_watchdog_reports_what_ended_by_itself_while_its_agent_is_silent(tmp_path, cp):
    lifeline, records = _lifeline(tmp_path, fence_s=4.0)
    ended, stdout = _task(records, "5.1.0", "echo done; exit 3")
    running, _ = _task(records, "5.2.0", "sleep 60")
    try:
        began = time.monotonic()
        lifeline.track(ended.pid, "5.1.0", str(stdout))
        lifeline.track(running.pid, "5.2.0")
        end = cp.wait_for(TaskEnded, timeout=10)
        took = time.monotonic() - began
        assert (end.node, end.incarnation, end.job_id, end.task_id, end.attempt) == (
            NODE,
            7,
            5,
            1,
            0,
        )
        assert end.exit_code == 3 and end.output == "done\n" and not end.canceled
        assert 2.0 <= took < 4.0  # half the fence without a beat, and before the fence
        # the one that still ran is fenced, not reported: the control plane requeues it
        wait_until(lambda: running.poll() is not None, timeout=10, what="the fence's kill")
        assert records.killed("5.2.0") and records.read("5.2.0") is None
        assert [e.task_id for e in cp.of(TaskEnded)] == [1]
    finally:
        running.kill()
        lifeline.close()


def test_the_watchdog_of_a_heard_agent_leaves_its_ends_to_it(tmp_path, cp):
    lifeline, records = _lifeline(tmp_path, fence_s=2.0)
    ended, stdout = _task(records, "6.1.0", "exit 0")
    try:
        lifeline.track(ended.pid, "6.1.0", str(stdout))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            lifeline._beat_at = 0.0  # the throttle is one line a second: beat every 0.2 s
            lifeline.beat()
            time.sleep(0.2)
        assert cp.of(TaskEnded) == []  # the agent, heard, collects and reports it itself
        lifeline.untrack(ended.pid)
    finally:
        lifeline.close()
    assert cp.of(TaskEnded) == []  # collected: not reported as its agent stops either


def test_the_watchdog_of_a_dead_agent_reports_what_ended_uncollected(tmp_path, cp):
    lifeline, records = _lifeline(tmp_path, fence_s=60.0)
    ended, stdout = _task(records, "8.1.0", "echo bye")
    lifeline.track(ended.pid, "8.1.0", str(stdout))
    wait_until(lambda: records.read("8.1.0") == 0, what="its end recorded")
    lifeline.close()  # end of file, as when the agent dies: it is gone before collecting
    end = cp.wait_for(TaskEnded, timeout=5)
    assert (end.job_id, end.exit_code, end.output, end.incarnation) == (8, 0, "bye\n", 7)


def test_a_task_the_agent_was_killing_is_not_reported_whatever_it_recorded(tmp_path, cp):
    """The agent marks a task killed before it signals it (a cancel, a limit): a record
    written after the mark may be a trap's ``exit 0``, not an end of its own
    (agent/endrecords.py), so the watchdog does not report it, as the agent would not."""
    lifeline, records = _lifeline(tmp_path, fence_s=2.0)
    records.mark_killed("9.1.0")
    mark = records.folder / ("9.1.0" + KILLED)
    os.utime(mark, ns=(0, mark.stat().st_mtime_ns - 10**9))  # the record comes after it
    task, stdout = _task(records, "9.1.0", "sleep 0.2; exit 0")
    running, _ = _task(records, "9.2.0", "sleep 60")
    try:
        lifeline.track(task.pid, "9.1.0", str(stdout))
        lifeline.track(running.pid, "9.2.0")
        wait_until(lambda: records.read("9.1.0") == 0, what="its exit recorded")
        # the fence kills the other: reports were due for its second half, and looked at then
        wait_until(lambda: running.poll() is not None, timeout=10, what="the fence's kill")
        assert cp.of(TaskEnded) == []
    finally:
        running.kill()
        lifeline.close()
    assert cp.of(TaskEnded) == []


# ------------------------------------------------------------ an agent paused mid-task


def test_a_paused_agents_task_that_ends_is_reported_before_the_fence_by_its_lifeline(
    start_agent, cp, tmp_path, monkeypatch
):
    """The probe's case: the agent's loop stops (kill -STOP stops it the same way) while its
    task runs; the task ends by itself. Its end reaches the control plane while the agent
    is still paused, before the fence, from the agent's lifeline."""
    agent, _ = start_agent(
        heartbeat_interval_s=0.2,
        fence_s=2.0,
        state_dir=tmp_path / "agent",
        kill_grace_s=0.1,
        lifeline_bus={"HPC_HOME": str(tmp_path), "HPC_BUS": "sqlite"},
    )
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    first = agent.incarnation
    real_reap, resume = agent.tasks.reap, threading.Event()

    def paused() -> None:
        resume.wait(30)
        real_reap()

    cp.send(run_task(11, "sleep 0.5; echo finished", incarnation=first))
    pid = cp.wait_for(TaskStarted).pid
    monkeypatch.setattr(agent.tasks, "reap", paused)
    try:
        end = cp.wait_for(TaskEnded, lambda e: e.job_id == 11, timeout=10)
        assert not resume.is_set()  # the agent never ran a step meanwhile
        assert (end.incarnation, end.exit_code, end.output) == (first, 0, "finished\n")
        assert not agent.tasks._records.killed("11.1.1")  # reported before the fence came
        assert pid is not None and not process_alive(pid)
    finally:
        resume.set()
    # heard again (before its fence), the agent reports the same end: the control plane
    # keeps the first of an attempt's ends
    ends = wait_until(
        lambda: [e for e in cp.of(TaskEnded) if e.job_id == 11][1:] and cp.of(TaskEnded),
        what="the agent's own report",
    )
    assert {(e.incarnation, e.attempt, e.exit_code) for e in ends} == {(first, 1, 0)}
    assert len(cp.of(RegisterNode)) == 1  # heard within its fence: the same incarnation


# ------------------------------------------------------------ the tail the agent reads whole


@pytest.mark.parametrize(
    ("again", "kept"),
    [
        ({"seq": 7}, "FIRST\nLATER\n"),  # the agent's own report, heard again: its whole tail
        ({"seq": 0}, "FIRST\n"),  # the lifeline's end sent twice: nothing new
        ({"seq": 7, "exit_code": 1}, "FIRST\n"),  # not the same end
        ({"seq": 7, "attempt": 1}, "FIRST\n"),
        ({"seq": 7, "node": "n2"}, "FIRST\n"),
        ({"seq": 7, "incarnation": 4}, "FIRST\n"),
        ({"seq": 7, "output": ""}, "FIRST\n"),  # a heartbeat's recovered end has no tail
        ({"seq": 7, "canceled": True}, "FIRST\n"),
    ],
)
def test_the_agents_own_report_of_the_end_its_lifeline_sent_brings_the_whole_tail(again, kept):
    """A probe: a task writing its own --stdout file, its agent paused; the lifeline reported
    its end with the tail of the agent's copy (written before the pause), and the agent's own
    report, heard again, was dropped as a repeat: the task showed a stale tail for good."""
    from shared.domain import lifecycle
    from shared.domain.messages import TaskEnded
    from shared.domain.models import Task
    from shared.domain.states import TaskState

    task = Task(job_id=1, id=1, command="x", state=TaskState.RUNNING, attempt=2, node="n1",
                incarnation=3)  # fmt: skip
    first = {"node": "n1", "incarnation": 3, "job_id": 1, "task_id": 1, "attempt": 2}
    now = datetime.now(UTC)
    change = lifecycle.task_ended(
        task, TaskEnded(**first, seq=0, exit_code=0, output="FIRST\n"), now
    )
    assert change is not None and task.state is TaskState.FINISHED
    later = {**first, "exit_code": 0, "output": "FIRST\nLATER\n", **again}
    change = lifecycle.task_ended(task, TaskEnded(**later), now)
    assert task.output == kept and task.state is TaskState.FINISHED
    assert (change is not None) is (kept != "FIRST\n")  # stored only when it changed
