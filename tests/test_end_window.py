"""The instant between a task's command returning and its shell writing the end record
(agent/groups.py): a kill that lands there must leave the shell to write the end, whoever
kills (the agent's cancel or stop, the lifeline when the agent dies or is fenced).

The instant is made to last: the command stops its own shell (``kill -STOP $$``; ``$$`` in
the command's subshell is the wrapper shell's pid) and returns, so the shell sits between
the two steps until someone sends it SIGCONT. Before the fix, each killer SIGKILLed (or
SIGTERMed) the group there: no record, and the task ran again (seen once in about 40 runs
of the fault test's kill -9 mid-burst)."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import pytest

from agent import AgentConfig
from agent.endrecords import EndRecords
from agent.fencing import Fencing
from agent.groups import command_running, freeze, members, orphans, signal_group, thaw
from agent.lifeline import Lifeline, end_groups, wait_for_watchdogs
from agent.runner import Runner
from agent.taskgroups import TaskGroups
from shared.adapters.local_output import LocalOutputStore
from shared.domain.messages import RegisterNode, TaskStarted
from tests.agent_fixtures import (  # noqa: F401 - fixtures
    bus,
    cp,
    output,
    run_task,
    start_agent,
)
from tests.helpers import stat_fields, wait_until

STOPS_ITS_SHELL = "echo done; kill -STOP $$"
"""A command that ran to its end and left its shell stopped before the end record."""


def _wrapped(
    tmp_path: Path, command: str, key: str = "5.1.1"
) -> tuple[subprocess.Popen, EndRecords]:
    records = EndRecords(tmp_path / "ends")
    proc = subprocess.Popen(
        records.argv(command, records.folder / key),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
    )
    return proc, records


def _in_the_window(proc: subprocess.Popen) -> None:
    """Its shell stopped, its command returned (a zombie child or none)."""
    wait_until(
        lambda: (f := stat_fields(proc.pid)) is not None and f[0] == "T",
        what="the shell stopped by its command",
    )
    freeze(proc.pid)
    wait_until(lambda: command_running(proc.pid) is False, what="the command returned")


def test_the_shell_of_a_running_command_is_told_from_one_whose_command_returned(tmp_path):
    proc, _ = _wrapped(tmp_path, "sleep 30")
    try:
        wait_until(lambda: command_running(proc.pid) is True, what="the command running")
    finally:
        proc.kill()
        proc.wait(5)
    assert command_running(proc.pid) is None  # no shell left: nothing to tell
    proc, records = _wrapped(tmp_path, STOPS_ITS_SHELL)
    try:
        _in_the_window(proc)
        assert records.read("5.1.1") is None  # not yet written
    finally:
        thaw(proc.pid)
        assert proc.wait(5) == 0
    assert records.read("5.1.1") == 0


@pytest.mark.parametrize("how", ["agent died", "fence"])
def test_the_watchdog_lets_a_shell_whose_command_returned_write_its_end(tmp_path, how):
    proc, records = _wrapped(tmp_path, STOPS_ITS_SHELL)
    lifeline = Lifeline(fence_s=0.5 if how == "fence" else None, marks=records.folder)
    try:
        lifeline.track(proc.pid, "5.1.1")
        _in_the_window(proc)
        if how == "agent died":
            lifeline.close()  # its pipe at end-of-file, as when the agent is killed
        assert proc.wait(10) == 0  # not -9: spared, it wrote its end and exited
        assert records.read("5.1.1") == 0
        assert not records.killed("5.1.1")  # an end of its own, reported as such
    finally:
        proc.kill()
        lifeline.close()


@pytest.mark.parametrize("how", ["agent died", "fence"])
def test_the_watchdog_still_kills_a_running_command_and_leaves_no_end(tmp_path, how):
    proc, records = _wrapped(tmp_path, "sleep 30")
    lifeline = Lifeline(fence_s=0.5 if how == "fence" else None, marks=records.folder)
    try:
        lifeline.track(proc.pid, "5.1.1")
        wait_until(lambda: command_running(proc.pid) is True, what="the command running")
        if how == "agent died":
            lifeline.close()
        assert proc.wait(10) == -9
        assert records.read("5.1.1") is None
        assert records.killed("5.1.1") == (how == "fence")
    finally:
        proc.kill()
        lifeline.close()


def test_the_agents_own_kill_leaves_a_shell_whose_command_returned_its_end(tmp_path):
    records = EndRecords(tmp_path / "ends")
    runner = Runner(
        run_task(5, STOPS_ITS_SHELL),
        output=LocalOutputStore(tmp_path / "out"),
        env={"PATH": "/usr/bin:/bin"},
        end_record=(records, records.path(5, 1, 1)),
    )
    assert runner.start() is None
    assert runner.process is not None
    _in_the_window(runner.process)
    code = runner.kill_tree(grace_s=5.0)
    assert (code, runner.kill_reached) == (0, False)  # its own end, not the kill's
    assert records.read("5.1.1") == 0
    assert not records.killed("5.1.1")
    assert runner.finish() == "done\n"


def test_the_next_agent_waits_for_an_earlier_watchdog_to_be_done(tmp_path):
    folder = tmp_path / "ends"
    folder.mkdir()
    lifeline = Lifeline(marks=folder)
    try:
        wait_until(lambda: not wait_for_watchdogs(folder, timeout_s=0), what="the lock held")
        done = threading.Event()
        threading.Thread(target=lambda: (wait_for_watchdogs(folder), done.set())).start()
        assert not done.wait(0.3)
    finally:
        lifeline.close()
    assert done.wait(5)


def test_a_new_agent_ends_what_an_agent_killed_with_its_watchdog_left_running(tmp_path):
    """A probe: ``kill -9`` of an agent and its watchdog at once (``pkill -9 -f agent``)
    left the tasks running; the restarted agent ran their next attempts beside them, and
    each ran to its end twice. The new agent finds the task shells whose end records are in
    its folder and ends them as the watchdog would have: a running one is killed, one whose
    command has returned is spared to write its end."""
    running, records = _wrapped(tmp_path, "sleep 30", key="7.1.0")
    returned, _ = _wrapped(tmp_path, STOPS_ITS_SHELL, key="7.2.0")
    elsewhere, _ = _wrapped(tmp_path / "other", "sleep 30", key="7.3.0")  # another agent's
    try:
        wait_until(lambda: command_running(running.pid) is True, what="the task running")
        _in_the_window(returned)
        left = orphans(records.folder)
        assert left == {running.pid: "7.1.0", returned.pid: "7.2.0"}
        end_groups(left)
        assert running.wait(10) == -9 and records.read("7.1.0") is None  # requeued, not ended
        assert returned.wait(10) == 0 and records.read("7.2.0") == 0  # its end, reported
        assert elsewhere.poll() is None
        assert orphans(records.folder) == {}
    finally:
        for proc in (running, returned, elsewhere):
            proc.kill()


def _task_env(key: str) -> dict[str, str]:
    job, task, attempt = key.split(".")
    return {
        "PATH": "/usr/bin:/bin",
        "HPC_JOB_ID": job,
        "HPC_TASK_ID": task,
        "HPC_TASK_ATTEMPT": attempt,
    }


def test_a_new_agent_ends_a_command_whose_shell_was_killed_without_it(tmp_path):
    """A probe's kill of a whole ``hpc up`` listed the processes, then SIGKILLed them one by
    one: a task's shell forked its command's subshell in between, died, and the command ran
    on with nobody to record its end; the next agent's registration requeued the attempt and
    the task ran to its end twice. The shell is killed alone here (the command escapes as it
    did). The next agent ends what is left of a kept group whose leader is gone, and only
    processes of that attempt (here by their environment; by the descriptor of the attempt's
    mark: tests/test_task_marks.py): a group id given again is not touched."""
    records = EndRecords(tmp_path / "ends")
    groups = TaskGroups(tmp_path)

    def start(key: str, command: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            records.argv(command, records.folder / key),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            env=_task_env(key),
        )
        groups.add(proc.pid, key)
        return proc

    escaped = start("8.1.0", "sleep 30; echo ran")
    alive = start("8.2.0", "sleep 30")  # its shell lives: groups.orphans' (not this scan's)
    reused = start("8.3.0", "sleep 30")
    try:
        for proc in (escaped, alive, reused):
            wait_until(lambda p=proc: command_running(p.pid) is True, what="the task running")
        left = members(escaped.pid)
        escaped.kill()  # the shell alone, as a kill that lists then signals can
        reused.kill()
        assert escaped.wait(5) == -9 and reused.wait(5) == -9
        assert [p for p in left if p != escaped.pid] and members(escaped.pid)  # ran on
        groups.add(reused.pid, "9.9.9")  # as if the group id had been given to another
        assert groups.end_leaderless(ended_already={alive.pid}) == ["8.1.0"]
        wait_until(lambda: not members(escaped.pid), what="the escaped command ended")
        assert members(reused.pid) and alive.poll() is None  # neither touched
        assert records.read("8.1.0") is None  # no end: the registration requeues it, once
        assert groups.kept() == {}
    finally:
        for proc in (escaped, alive, reused):
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_the_next_agent_ends_them_before_it_registers(tmp_path):
    """The same, through the agent's own start (``wait_for_predecessor``, before its first
    registration requeues the attempt) and its own keeping of the group (``track``)."""
    config = AgentConfig(name="n1", state_dir=tmp_path, lifeline=False)
    records = EndRecords(tmp_path / "ends")
    shell = subprocess.Popen(
        records.argv("sleep 30", records.folder / "8.4.0"),
        start_new_session=True,
        env=_task_env("8.4.0"),
    )
    try:
        Fencing(config).track(shell.pid, "8.4.0")
        wait_until(lambda: command_running(shell.pid) is True, what="the task running")
        shell.kill()
        assert shell.wait(5) == -9 and members(shell.pid)  # its command runs on
        Fencing(config).wait_for_predecessor()
        wait_until(lambda: not members(shell.pid), what="the escaped command ended")
    finally:
        signal_group(shell.pid, signal.SIGKILL)


def test_an_agent_keeps_a_running_tasks_group_until_it_ends(start_agent, cp, tmp_path):
    state = tmp_path / "state"
    agent, _ = start_agent(state_dir=state)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    cp.send(run_task(43, "sleep 1"))
    started = cp.wait_for(TaskStarted)
    kept = TaskGroups(state).kept()
    assert list(kept.values()) == ["43.1.1"] and members(next(iter(kept)))
    assert started.job_id == 43 and cp.ended(43).exit_code == 0
    wait_until(lambda: TaskGroups(state).kept() == {}, what="the group forgotten")


def test_a_kept_group_whose_live_shell_its_end_record_did_not_find_is_ended(tmp_path):
    """A review: a task shell that ``orphans`` misses (its record's path not read, as a
    ``/dev/fd`` link it could not follow) ran on beside its next attempt; the kept group
    names it, and it is ended as its watchdog would have."""
    groups = TaskGroups(tmp_path)
    records = EndRecords(tmp_path / "elsewhere")  # not this agent's folder: orphans misses it
    shell = subprocess.Popen(
        records.argv("sleep 30", records.folder / "8.5.0"),
        start_new_session=True,
        env=_task_env("8.5.0"),
    )
    try:
        groups.add(shell.pid, "8.5.0")
        wait_until(lambda: command_running(shell.pid) is True, what="the task running")
        assert orphans(tmp_path / "ends") == {}
        assert groups.end_leaderless() == ["8.5.0"]
        assert shell.wait(10) == -9 and groups.kept() == {}
        assert groups.end_leaderless(ended_already={shell.pid}) == []  # nothing kept now
    finally:
        signal_group(shell.pid, signal.SIGKILL)
