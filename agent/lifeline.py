"""The lifeline: a watchdog process that kills the agent's tasks if the agent dies or falls
silent.

Each task runs in its own process group (so cancel can kill its whole tree), which also
means nothing kills it when the agent is killed with SIGKILL or crashes: the control plane
requeues the task elsewhere, and the orphan would go on using the node's cores. The agent
therefore starts one small watchdog and tells it, over a pipe, which process groups are its
tasks. When the pipe reaches end-of-file — the agent closed it or died, however — the
watchdog SIGKILLs the groups still listed and exits.

**The fence.** An agent that is alive but not heard (paused with SIGSTOP, or cut off from the
bus) leaves its tasks running while the control plane, after HPC_HEARTBEAT_TIMEOUT_S, gives
their attempts to other nodes: both could run to their end. So the agent also tells the
watchdog each time a heartbeat was sent (``.``); when none came for ``fence_s`` (2/3 of the
timeout; the control plane's timeout once its answer to the registration said it, sent as
``f<seconds>``) the watchdog marks each task's end record killed (agent/endrecords.py) and SIGKILLs
its group, before the control plane can run it elsewhere. The agent, finding a task it did
not kill dead with that mark, does not report it ended: it registers again, which requeues
what its incarnation held (agent/tasks.py ``fenced``).

**Reports.** A paused or hung agent cannot say that a task of its ended by itself, nor can
one killed: once its agent is not heard for half the fence, and when it dies, the watchdog
reports those ends itself (agent/lifeline_reports.py), so the control plane never runs them
again.

**A watchdog gone.** If the watchdog itself dies (kill -9 of it), the agent's next call —
a write failing on the broken pipe, or ``beat`` after each heartbeat finding its process
exited — starts a new one and tells it every group still tracked and the fence: an agent
killed later must not leave its tasks running while the control plane requeues them (found
by a chaos probe: a task ran to its end twice). A restart that fails is logged and tried
again at a later call, at most once a second.

**A command that has just returned.** Before either kill, the watchdog stops each group and
spares one whose command has returned but whose shell has yet to write the end record
(agent/groups.py): the shell writes it and exits, and the agent, or the next one, reports that
end. The watchdog holds ``lifeline.lock`` in the agent's folder while it lives, and the next
agent of the node waits for it before reading the records (:func:`wait_for_watchdogs`).

The pipe's write end is non-inheritable, so tasks never hold it open.
A group is forgotten when its task ends, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from agent.endrecords import KILLED
from agent.groups import command_running, exited, freeze, spare
from agent.lifeline_reports import EndReports
from agent.watch import Tracked, Watch

log = logging.getLogger(__name__)

BEAT_EVERY_S = 1.0
"""The agent tells the watchdog of a sent heartbeat at most this often."""

RESTART_EVERY_S = 1.0
"""A watchdog found gone is started again at most this often (a fork that keeps failing, or
a watchdog that keeps dying, must not make every call fork)."""


def _watchdog_argv(fence_s: float, marks: Path | None, node: str) -> list[str]:
    # not `-m agent.lifeline`: the package imports this module first, and runpy warns on
    # every agent start that it was already in sys.modules
    command = "from agent.lifeline import main; main()"
    return [sys.executable, "-c", command, str(fence_s or 0), str(marks or ""), node]


def _track_line(pgid: int, tracked: Tracked) -> str:
    # a path with a line break would break the pipe's lines: its tail is then not sent
    stdout = "" if "\n" in tracked.stdout else tracked.stdout
    return f"+{pgid} {tracked.key} {stdout}".rstrip()


def _write_all(pipe: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[pipe.write(view) or 0 :]


class Lifeline:
    """The agent's side: start the watchdog, then ``track``/``untrack`` task groups and
    ``beat`` after each heartbeat sent.

    It remembers what it told the watchdog (the groups tracked, the fence), so that a
    watchdog found gone (a write to it failed, or its process exited: checked at every call,
    ``beat`` among them, so within about a heartbeat) is started again and told all of it:
    an agent killed after its watchdog was must not leave its tasks running while the control
    plane runs them elsewhere (found by a chaos probe: a task ran to its end twice)."""

    def __init__(
        self,
        *,
        fence_s: float | None = None,
        marks: Path | None = None,
        node: str = "",
        report_env: Mapping[str, str] | None = None,
    ) -> None:
        """``node`` and ``report_env`` (the HPC_* settings of the agent's bus) let the
        watchdog report the ends its agent, silent or gone, does not
        (agent/lifeline_reports.py); without them (or ``marks``) it reports none."""
        self._fence_s = fence_s or 0.0
        self._marks = marks
        self._node = node if report_env and marks is not None else ""
        self._env = {**os.environ, **report_env} if self._node and report_env else None
        self._incarnation: int | None = None
        self._groups: dict[int, Tracked] = {}
        """pgid -> task: what the watchdog kills at end-of-file (and a new one is told)."""
        self._lock = threading.Lock()
        self._beat_at = 0.0
        self._restart_at = -math.inf
        self._closed = False
        self._pipe: BinaryIO | None
        self._proc, self._pipe = self._spawn()

    def _spawn(self) -> tuple[subprocess.Popen[bytes], BinaryIO]:
        read_end, write_end = os.pipe()  # both non-inheritable: tasks never hold them
        try:
            proc = subprocess.Popen(
                _watchdog_argv(self._fence_s, self._marks, self._node),
                stdin=read_end,
                env=self._env,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the agent's group must not kill it first
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        return proc, os.fdopen(write_end, "wb", buffering=0)

    def track(self, pgid: int, key: str = "", stdout: str = "") -> None:
        """A task started in process group ``pgid``: attempt ``key``, its stdout in ``stdout``."""
        with self._lock:
            self._groups[pgid] = tracked = Tracked(key, self._incarnation, stdout)
            self._send(_track_line(pgid, tracked))

    def incarnation(self, incarnation: int) -> None:
        """The control plane granted the agent ``incarnation``: the tasks it tracks from now
        on run under it (what the watchdog's reports say)."""
        with self._lock:
            self._incarnation = incarnation
            self._send(f"i{incarnation}")

    def untrack(self, pgid: int) -> None:
        with self._lock:
            self._groups.pop(pgid, None)
            self._send(f"-{pgid}")

    def fence(self, fence_s: float) -> None:
        """Fence after ``fence_s`` without a beat from now on (the control plane said its
        heartbeat timeout)."""
        with self._lock:
            if fence_s > 0 and math.isfinite(fence_s):  # as the watchdog takes it
                self._fence_s = fence_s
            self._send(f"f{fence_s:g}")

    def beat(self) -> None:
        """A heartbeat was sent: the agent is alive and heard (throttled to one line a second).
        Also finds a watchdog gone, and starts a new one."""
        with self._lock:
            now = time.monotonic()
            if now - self._beat_at >= BEAT_EVERY_S:
                self._beat_at = now
                self._send(".")
            elif not self._closed and not self._running():
                self._restart(self._gone())

    def _running(self) -> bool:
        return self._pipe is not None and self._proc.poll() is None

    def _gone(self) -> str:
        code = self._proc.poll()
        if code is None:
            return "its pipe is closed"  # a restart failed: no watchdog was started
        return f"killed by signal {-code}" if code < 0 else f"exited with {code}"

    def _send(self, line: str) -> None:
        """Tell the watchdog ``line`` (the lock held, the state already changed), or start a
        new one, told the whole state, if it is gone."""
        if self._closed:
            return
        if self._running():
            assert self._pipe is not None
            try:
                _write_all(self._pipe, f"{line}\n".encode())
                return
            except OSError as exc:  # the watchdog died (EPIPE)
                reason = str(exc)
        else:
            reason = self._gone()
        self._restart(reason)

    def _restart(self, reason: str) -> None:
        """Start a new watchdog (the lock held) and tell it every group tracked; the fence is
        in its arguments. On failure, log; the next call tries again."""
        now = time.monotonic()
        if now - self._restart_at < RESTART_EVERY_S:
            return  # tried a moment ago: the next call tries again, no hot loop of forks
        self._restart_at = now
        if self._proc.poll() is None:  # a write failed, yet it runs: not a watchdog to trust
            self._proc.kill()  # first: at the end of its pipe it would kill the tasks
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.close()
            self._pipe = None
        told = [f"i{self._incarnation}"] if self._incarnation is not None else []
        told += [_track_line(pgid, tracked) for pgid, tracked in self._groups.items()]
        replay = "".join(f"{line}\n" for line in told)
        pipe: BinaryIO | None = None
        try:
            self._proc, pipe = self._spawn()
            if replay:
                _write_all(pipe, replay.encode())
        except OSError as exc:
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
            log.error(
                "lifeline watchdog is gone (%s) and could not be started again (%s): %d "
                "orphaned task group(s) would not be killed; trying again",
                reason,
                exc,
                len(self._groups),
            )
            return
        self._pipe = pipe
        log.warning(
            "lifeline watchdog was gone (%s); started a new one watching %d task group(s)",
            reason,
            len(self._groups),
        )

    def close(self) -> None:
        """Close the pipe (the watchdog kills what is still tracked) and wait for it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            running = self._running()
            if self._pipe is not None:
                with contextlib.suppress(OSError):
                    self._pipe.close()
                self._pipe = None
            if not running:  # no watchdog to kill what is still tracked: as it would
                _kill(_keys(self._groups), None, records=self._marks is not None)
            self._groups.clear()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()


SPARE_WAIT_S = 5.0
"""How long the watchdog waits for the shells it spared to write their end records and exit
(a shell stuck longer is killed: its task runs again, as it would have before)."""


def _kill(groups: dict[int, str], marks: Path | None, *, records: bool) -> None:
    """SIGKILL each group; with ``marks``, mark its record killed first (the fence: the
    agent, alive, must not take the kill for an end). With ``records`` (the tasks run in
    the end-record wrapper), a group whose command has returned is spared instead: its shell
    writes the end record, which the agent or the next one reports (agent/groups.py)."""
    spared = []
    for pgid, key in groups.items():
        if records:
            freeze(pgid)
            if command_running(pgid) is False:
                spare(pgid)
                spared.append(pgid)
                continue
        if marks is not None and key:
            with contextlib.suppress(OSError):
                (marks / (key + KILLED)).touch()  # before the kill: the agent reads it after
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + SPARE_WAIT_S
    while spared and time.monotonic() < deadline:
        spared = [pgid for pgid in spared if not exited(pgid)]
        time.sleep(0.005)
    for pgid in spared:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _keys(groups: Mapping[int, Tracked]) -> dict[int, str]:
    return {pgid: tracked.key for pgid, tracked in groups.items()}


def end_groups(groups: dict[int, str]) -> None:
    """End the task shells' groups as the watchdog does when its agent dies (those whose
    command has returned are spared to write their end record): for a new agent, when the
    earlier one's watchdog died with it."""
    _kill(groups, None, records=True)


def lock_path(marks: Path) -> Path:
    """The lock a watchdog holds beside its node's end records (in the agent's state folder)."""
    return marks.parent / "lifeline.lock"


def _hold(marks: Path | None) -> None:
    """Hold the lifeline lock (shared) for as long as this watchdog lives:
    the agent that starts next waits for it (:func:`wait_for_watchdogs`), so that it reads
    the end records only once the spared shells have written them."""
    if marks is None:
        return
    with contextlib.suppress(OSError):
        fd = os.open(lock_path(marks), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)  # kept open (not inherited: O_CLOEXEC) until exit


def wait_for_watchdogs(marks: Path, timeout_s: float = 2 * SPARE_WAIT_S) -> bool:
    """Wait until no watchdog of an earlier agent of this node still holds the lock (it
    may be letting a task's shell write its end); False if one still does at the timeout."""
    try:
        fd = os.open(lock_path(marks), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return True
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)
    finally:
        os.close(fd)  # drops the lock at once: this agent's own watchdog takes it shared


def main() -> None:
    # Signals meant for the agent's terminal or group are not for the watchdog.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fence_s = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else 0.0
    marks = Path(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None
    node = sys.argv[3] if len(sys.argv) > 3 else ""
    _hold(marks)
    reports = EndReports(node, marks) if node and marks is not None else None
    state = Watch(time.monotonic(), fence_s)
    buffer = b""
    fd = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], 0.25)
        now = time.monotonic()
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:  # the agent closed the pipe or died
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                state.line(raw.decode(errors="replace"), now)
        silent = f"the agent has not been heard for {now - state.beat_at:.1f} s"
        if reports is not None and state.reports_due(now):
            reports.look(state.groups, silent)  # before the fence marks them
        if state.fence_due(now):
            running = sum(not exited(pgid) for pgid in state.groups)  # (not those that ended)
            print(
                f"lifeline: no heartbeat sent for {now - state.beat_at:.1f} s; killing "
                f"{running} task group(s) before the control plane runs them elsewhere",
                file=sys.stderr,
                flush=True,
            )
            _kill(_keys(state.groups), marks, records=marks is not None)
            if reports is not None:  # the shells it spared have written their ends
                reports.look(state.groups, silent)
            state.groups.clear()
    _kill(_keys(state.groups), None, records=marks is not None)
    if reports is not None and state.groups:
        reports.look(state.groups, "the agent is gone")
        reports.wait()


if __name__ == "__main__":
    main()
