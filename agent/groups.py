"""A task's process group as the kernel sees it: is any of it alive, and has its command
returned while its shell still writes the end record.

Why the second question: a task runs as ``sh -c WRAPPER`` (agent/endrecords.py), the
group's leader, which runs the command in a subshell and, once that returns, writes the end
record. Whoever kills the group (the agent's cancel or stop, the lifeline when the agent
dies or is fenced) could hit the shell in the instant between the two: a command that ran to
its end, killed with its end unrecorded, runs again (a fault test saw it once in about 40
kills of an agent mid-burst). So a killer first stops the whole group (``SIGSTOP`` to a group
is one atomic act: nothing in it runs or forks on after it), then asks whether the leader
still has a live child, the subshell. The answer cannot change while the group is stopped:
no child (or only a zombie) means the command has returned by itself, and its shell is left
to finish writing its end (:func:`spare`); a live child means the kill reaches the command.

Linux only (``/proc``); elsewhere :func:`command_running` says it cannot tell, and the
killers do as they did before: the whole group at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from agent.endrecords import TASK_SHELL_NAME

PROC = Path("/proc")
TASK_SHELL = TASK_SHELL_NAME.encode()


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name: state, ppid, pgrp, ..."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    return stat[stat.rfind(")") + 2 :].split()


def _live(fields: list[str] | None) -> bool:
    """Not gone, not a zombie waiting to be reaped."""
    return fields is not None and fields[0] not in ("Z", "X")


def members(pgid: int) -> list[int]:
    """The live processes of the group (a scan of ``/proc``)."""
    out = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        if group_of(int(entry.name)) == pgid:
            out.append(int(entry.name))
    return out


def group_of(pid: int) -> int | None:
    """The process group of a live process (None if gone or a zombie)."""
    fields = _stat(pid)
    if not _live(fields) or fields is None or len(fields) < 3:
        return None
    return int(fields[2])


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies, which only wait to be
    reaped by whoever inherited them, do not count where /proc tells them apart)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not PROC.is_dir():
        return True
    return bool(members(pgid))


def _children(pid: int) -> list[int] | None:
    try:
        text = (PROC / str(pid) / "task" / str(pid) / "children").read_text()
    except OSError:
        return None
    return [int(word) for word in text.split()]


def _argv(pid: int) -> list[bytes] | None:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return None


def _task_shell(argv: list[bytes] | None) -> bool:
    """``sh -c WRAPPER hybridhpc-task ...`` (agent/endrecords.py), not a command of its own."""
    return argv is not None and len(argv) > 3 and argv[3] == TASK_SHELL


def _record_of(pid: int, argv: list[bytes]) -> Path | None:
    """The end record a task shell writes: its last argument, or for --run-as-owner's
    ``/dev/fd/N`` the file that descriptor is open on."""
    last = argv[-1].decode(errors="replace") if argv else ""
    if last.startswith("/dev/fd/"):
        try:
            return Path(os.readlink(PROC / str(pid) / "fd" / last.removeprefix("/dev/fd/")))
        except OSError:
            return None
    return Path(last) if last else None


def orphans(records: Path) -> dict[int, str]:
    """Task shells still alive whose end record is in ``records`` (an agent's folder): the
    tasks of an earlier agent of the node whose watchdog died with it (``kill -9`` of both,
    as ``pkill -9 -f agent`` does), so nothing ended them. Process group -> task key."""
    if not PROC.is_dir():
        return {}
    found = {}
    folder = records.resolve()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat(pid)
        if not _live(fields) or fields is None or len(fields) < 3 or int(fields[2]) != pid:
            continue  # not alive, or not its group's leader
        argv = _argv(pid)
        if argv is None or not _task_shell(argv):
            continue
        record = _record_of(pid, argv)
        if record is not None and record.parent.resolve() == folder:
            found[pid] = record.name
    return found


def command_running(leader: int) -> bool | None:
    """Whether the task's shell ``leader`` still waits for its command: it has a live child.
    None when that cannot be told (no ``/proc``; the leader gone or a zombie: no shell left
    to write anything; not a task's wrapper shell). Ask it with the group stopped
    (:func:`freeze`), or the answer may be stale by the time it is used."""
    if not _live(_stat(leader)) or not _task_shell(_argv(leader)):
        return None
    children = _children(leader)
    if children is None:
        return None
    return any(_live(_stat(child)) for child in children)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def freeze(pgid: int) -> None:
    """Stop every process of the group at once (undone by :func:`thaw`)."""
    signal_group(pgid, signal.SIGSTOP)


def thaw(pgid: int) -> None:
    signal_group(pgid, signal.SIGCONT)


def spare(leader: int) -> None:
    """The group is frozen and its command has returned: kill what else is left in it (what
    the command put in the background) and let its shell go on to write the end record."""
    for pid in members(leader):
        if pid != leader:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    thaw(leader)


def exited(pid: int) -> bool:
    """Gone, or a zombie (its parent, the agent, may not have reaped it)."""
    return not _live(_stat(pid)) if PROC.is_dir() else not _exists(pid)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
