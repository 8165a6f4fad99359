"""A lifeline watchdog that dies is started again (agent/lifeline.py). Found by a chaos probe:
after a kill -9 of the watchdog the agent only logged that it was gone, so a later kill -9 of
the agent left its tasks running while the control plane requeued them on the node's next
agent, and they ran to their end twice. The watchdog killed and found again, on a real process
group; what the new one is told; a restart that keeps failing; then a real agent-like process
killed after its watchdog was."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import agent.lifeline as lifeline_module
from agent.lifeline import KILLED, Lifeline
from agent.watch import Tracked, Watch
from tests.helpers import ROOT, child_env, process_alive, wait_until

NO_SUCH_GROUP = 2**22 + 7
"""Above the largest pid_max: a pgid no process can have, for what is never to be killed."""


def _group(tmp_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], start_new_session=True, cwd=tmp_path)


def _kill_watchdog(lifeline: Lifeline) -> int:
    old = lifeline._proc
    old.send_signal(signal.SIGKILL)
    old.wait(timeout=5)  # reaped here: its exit is what the lifeline finds
    return old.pid


def _restarts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "started a new one" in r.getMessage()]


def test_a_killed_watchdog_is_started_again_at_the_next_beat_and_kills_at_end_of_file(
    tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="agent.lifeline")
    lifeline = Lifeline()
    task = _group(tmp_path)
    try:
        lifeline.track(task.pid, "3.1.0")
        lifeline.beat()  # its first beat goes out: the next one is throttled
        old = _kill_watchdog(lifeline)
        lifeline.beat()  # throttled, yet it finds the watchdog gone
        new = lifeline._proc
        assert new.pid != old and new.poll() is None
        assert _restarts(caplog) == [
            "lifeline watchdog was gone (killed by signal 9); started a new one watching "
            "1 task group(s)"
        ]
        lifeline.beat()
        lifeline.track(NO_SUCH_GROUP)
        lifeline.untrack(NO_SUCH_GROUP)
        assert len(_restarts(caplog)) == 1  # once per restart, not at every call
        # the agent dies: the pipe's end (no kill of its own), and the new watchdog kills
        assert lifeline._pipe is not None
        lifeline._pipe.close()
        wait_until(lambda: task.poll() is not None, timeout=5, what="the task killed")
        new.wait(timeout=5)
    finally:
        task.kill()
        lifeline.close()


def test_a_failed_write_starts_a_new_watchdog_told_the_fence_and_the_groups(tmp_path, caplog):
    """The new watchdog fences with the agent's fence, and marks each task with its key."""
    caplog.set_level(logging.WARNING, logger="agent.lifeline")
    lifeline = Lifeline(marks=tmp_path)  # no fence at start: the control plane says it later
    task = _group(tmp_path)
    try:
        lifeline.fence(1.0)
        lifeline.track(task.pid, "9.1.0")
        _kill_watchdog(lifeline)
        lifeline.untrack(NO_SUCH_GROUP)  # a write: it fails, a new watchdog starts
        assert lifeline._proc.poll() is None and len(_restarts(caplog)) == 1
        # no beat from now on: the new watchdog fences after 1 s
        wait_until(lambda: task.poll() is not None, timeout=5, what="the fenced task killed")
        assert (tmp_path / ("9.1.0" + KILLED)).exists()
    finally:
        task.kill()
        lifeline.close()


_RECORDER = textwrap.dedent(
    """
    import sys
    out = sys.argv[1]
    with open(out + ".tmp", "w") as f:
        f.write("\\n".join(sys.argv[2:]) + "\\n--\\n" + sys.stdin.read())
    import os
    os.replace(out + ".tmp", out)
    """
)


def test_the_new_watchdog_is_told_the_fence_and_every_group_still_tracked(tmp_path, monkeypatch):
    lifeline = Lifeline(fence_s=60.0, marks=tmp_path / "ends")
    record = tmp_path / "told"
    try:
        lifeline.fence(4.5)
        lifeline.fence(0)  # ignored, as the watchdog ignores it
        lifeline.incarnation(7)  # what its reports say (agent/lifeline_reports.py)
        lifeline.track(NO_SUCH_GROUP + 1, "1.1.0")
        lifeline.track(NO_SUCH_GROUP + 2, "2.1.0", "/out/2 1/stdout")  # (a space in a path)
        lifeline.track(NO_SUCH_GROUP + 3)
        lifeline.untrack(NO_SUCH_GROUP + 1)
        _kill_watchdog(lifeline)
        # the next watchdog records its arguments and what it reads, instead of watching
        monkeypatch.setattr(
            lifeline_module,
            "_watchdog_argv",
            lambda fence_s, marks, _node: [
                sys.executable,
                "-c",
                _RECORDER,
                str(record),
                str(fence_s),
                str(marks or ""),
            ],
        )
        lifeline.track(NO_SUCH_GROUP + 4, "4.1.0")
        lifeline.untrack(NO_SUCH_GROUP + 4)  # said to the new one, after what it was told
    finally:
        lifeline.close()  # its end of file: the recorder writes what it was told
    wait_until(record.exists, timeout=5, what="the new watchdog's record")
    head, _, lines = record.read_text().partition("--\n")
    assert head.split("\n")[:2] == ["4.5", str(tmp_path / "ends")]
    state = Watch(0.0, float(head.split("\n")[0]))
    for line in lines.splitlines():
        state.line(line, 1.0)
    assert state.groups == {
        NO_SUCH_GROUP + 2: Tracked("2.1.0", 7, "/out/2 1/stdout"),
        NO_SUCH_GROUP + 3: Tracked("", 7),
    }
    assert state.fence_s == 4.5 and state.incarnation == 7


def test_a_restart_that_fails_is_tried_again_later_not_at_every_call(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="agent.lifeline")
    lifeline = Lifeline()
    task = _group(tmp_path)
    forks = []

    def no_fork(*args: object, **kwargs: object) -> None:
        forks.append(args)
        raise OSError(11, "Resource temporarily unavailable")

    fds = len(os.listdir("/proc/self/fd"))
    try:
        lifeline.track(task.pid, "5.1.0")
        _kill_watchdog(lifeline)
        monkeypatch.setattr(lifeline_module.subprocess, "Popen", no_fork)
        for _ in range(50):
            lifeline.beat()
            lifeline.track(NO_SUCH_GROUP)
            lifeline.untrack(NO_SUCH_GROUP)
        assert len(forks) == 1  # one try, then none for a second
        errors = [r for r in caplog.records if "could not be started again" in r.getMessage()]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR
        assert len(os.listdir("/proc/self/fd")) <= fds  # the failed try's pipe is closed
        monkeypatch.undo()
        lifeline._restart_at -= 2  # a second later
        lifeline.beat()
        assert lifeline._proc.poll() is None
        assert len(_restarts(caplog)) == 1
        assert lifeline._pipe is not None
        lifeline._pipe.close()  # the agent dies: the new watchdog still kills the task
        wait_until(lambda: task.poll() is not None, timeout=5, what="the task killed")
    finally:
        monkeypatch.undo()
        task.kill()
        lifeline.close()


def test_closing_with_no_watchdog_kills_what_is_still_tracked_itself(tmp_path, monkeypatch):
    lifeline = Lifeline()
    task = _group(tmp_path)
    try:
        lifeline.track(task.pid, "6.1.0")
        _kill_watchdog(lifeline)

        def no_fork(*args: object, **kwargs: object) -> None:
            raise OSError(11, "Resource temporarily unavailable")

        monkeypatch.setattr(lifeline_module.subprocess, "Popen", no_fork)
        lifeline.beat()  # the restart fails
        lifeline.close()
        wait_until(lambda: task.poll() is not None, timeout=5, what="the task killed")
    finally:
        monkeypatch.undo()
        task.kill()
        lifeline.close()


_AGENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from agent.lifeline import Lifeline

    lifeline = Lifeline()
    task = subprocess.Popen(["sleep", "60"], start_new_session=True)
    lifeline.track(task.pid, "26.1.0")
    watchdog = lifeline._proc.pid
    print(task.pid, watchdog, flush=True)
    while True:  # the agent's loop: a heartbeat, then the lifeline is told
        time.sleep(0.1)
        lifeline.beat()
        if lifeline._proc.pid != watchdog:
            watchdog = lifeline._proc.pid
            print(task.pid, watchdog, flush=True)
    """
)


def _read_line(proc: subprocess.Popen[bytes], timeout: float, what: str) -> list[int]:
    """A line the process printed, read byte by byte (no buffer hides the next one)."""
    assert proc.stdout is not None
    fd, line = proc.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        poll = select.poll()  # not select(): it takes no descriptor past 1,023
        poll.register(fd, select.POLLIN)
        ready = poll.poll(max(0.0, deadline - time.monotonic()) * 1000)
        if not ready:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        byte = os.read(fd, 1)
        if not byte:
            pytest.fail(f"the process ended before {what}")
        line += byte
    return [int(word) for word in line.split()]


def test_an_agent_killed_after_its_watchdog_was_leaves_no_task_running(tmp_path):
    """Job 26 of the probe: kill -9 of the watchdog, then of the agent."""
    agent = subprocess.Popen(
        [sys.executable, "-c", _AGENT],
        cwd=ROOT,
        env=child_env(tmp_path / "home"),
        stdout=subprocess.PIPE,
    )
    task = 0
    try:
        task, old = _read_line(agent, 10, "the agent's task and watchdog")
        assert process_alive(task)
        os.kill(old, signal.SIGKILL)
        task_again, new = _read_line(agent, 5, "a new watchdog")
        assert task_again == task and new != old and process_alive(new)
        agent.kill()
        agent.wait(timeout=5)
        wait_until(lambda: not process_alive(task), timeout=5, what="the orphan task killed")
        wait_until(lambda: not process_alive(new), timeout=5, what="the watchdog gone")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        if task and process_alive(task):
            with contextlib.suppress(OSError):
                os.killpg(task, signal.SIGKILL)
        if agent.stdout is not None:
            agent.stdout.close()
