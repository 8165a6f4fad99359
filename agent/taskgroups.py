"""Each running task's process group, kept on disk: what lets the next agent of the node end
a task's processes whose shell was killed without them.

Why: a task's shell (agent/endrecords.py) writes its end record once its command returns. A
kill that lists processes and then signals them one by one (``pkill -9 -f hpc``; a probe's
kill of a whole ``hpc up``) misses a process the shell forks in between: the shell dies and
the command runs on, in a process group whose leader is gone, with nobody left to record its
end. The earlier agent's watchdog, killed too, cannot end it, and
:func:`agent.groups.orphans` finds live task shells only. The command would run to its end
while the next agent's registration requeues its attempt: twice (3 of 10 probe runs).

So while a task runs the agent keeps ``groups/<pgid>`` (its attempt's key) in its state
folder, and the next agent, before it registers, ends every process still in such a group
whose leader is gone: the attempt runs again, once. The group is ended only if one of its
processes is the attempt's, by either of two marks: its environment names that attempt
(``HPC_JOB_ID``, ``HPC_TASK_ID``, ``HPC_TASK_ATTEMPT``), or it holds a descriptor open on
the attempt's mark, ``groups/marks/<key>``: an empty file (the agent's alone, 0600) that
the agent opens before the task starts and hands its shell (:func:`hold_mark`, at
:data:`MARK_FD` or the lowest free number above), so that every process of the task inherits
it, through ``exec env -i ...`` or any program that clears its environment. A group id given
again to something else is never touched: a live member keeps the kernel from giving its
group id to another group, and a new group's processes neither name the attempt nor hold
its mark (only the task's own processes inherit the descriptor, and only the agent's user
may open the file). The mark is removed with ``groups/<pgid>``: when the task ends, or when
the next agent forgets the group. What this cannot help: a command that ended before the
next agent started ran to its end unrecorded; a group none of whose processes names the
attempt or holds the mark (each cleared its environment and closed every descriptor it did
not open: a daemon's close-all, ``closefrom``) is not recognised; and a process whose
``/proc/<pid>/fd`` the next agent may not read is told by its environment only (another
user's, for an agent that is root without ``CAP_SYS_PTRACE``, as in a container's default
capabilities): docs/exactly-once.md. Linux only (``/proc``); elsewhere nothing is found.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import Collection
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from agent.groups import PROC, exited, group_of, members, signal_group
from agent.lifeline import end_groups
from shared.domain.messages import attempt_key, parse_attempt_key

if TYPE_CHECKING:
    from agent.endrecords import EndRecords

log = logging.getLogger(__name__)

FOLDER = "groups"
"""Under the agent's state folder."""
MARKS = "marks"
"""Under :data:`FOLDER`: ``marks/<key>``, the mark each process of an attempt holds open."""
MARK_FD = 1000
"""The lowest descriptor number a task's mark is handed down at (it is the same in every
process of the task, normally this one). Only its file tells the mark, not its number; the
number is far above those scripts redirect (``exec 3>...``, flock's ``9>`` and ``200>``,
the shells' own from 10 up, bash's 255), so that a script's redirection does not replace it."""


def marks_folder(state_dir: Path) -> Path:
    return state_dir / FOLDER / MARKS


def hold_mark(
    end_record: tuple[EndRecords, Path] | None, key: str, stack: ExitStack
) -> tuple[int, ...]:
    """Open attempt ``key``'s mark (an empty file, created 0600) for the task's shell to
    inherit (``Popen(pass_fds=...)``, with close_fds): every process of the task then holds
    it, whatever becomes of its environment. Read-only: a task can do nothing with it. The
    agent's descriptor is closed as ``stack`` closes, after the spawn: the next agent looks
    for the mark in the task's processes, never in this one, and an agent running many tasks
    keeps no descriptor per task. ``stack`` closing on an exception (the task did not start)
    removes the mark too. With --run-as-owner the agent, root, opens it and the task's shell
    inherits it across its drop to the owner, who could not open it.

    Only for a task with an end record (``end_record``, as agent/runner.py takes it): the
    agent has a state folder, where agent/fencing.py keeps both the records (``ends/``) and
    the groups. Never raises: ``()`` without a record, or when the mark cannot be opened
    (logged; the task is then told by its environment only)."""
    if end_record is None:
        return ()
    path = marks_folder(end_record[0].folder.parent) / key
    flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:  # the first task of this state folder
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o600)
    except OSError as exc:
        log.warning("could not make the mark of task %s (%s): told by its environment only",
                    key, exc)  # fmt: skip
        return ()
    with contextlib.suppress(OSError):  # a limit on open files below it: kept where it is
        fd, low = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, MARK_FD), fd
        os.close(low)
    stack.callback(os.close, fd)

    def unless_started(kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    stack.push(unless_started)
    return (fd,)


class TaskGroups:
    """``groups/<pgid>`` holding the task's key, while the task runs (and the attempt's mark,
    ``groups/marks/<key>``, made by :func:`hold_mark` as it starts)."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / FOLDER
        self.marks = marks_folder(state_dir)
        self._made = False
        self._keys: dict[int, str] = {}
        """pgid -> key of the groups this agent keeps (its own tasks)."""

    def add(self, pgid: int, key: str) -> None:
        """Never raises: a group not kept is one the next agent cannot end (logged)."""
        self._keys[pgid] = key
        try:
            if not self._made:  # once, not at every task start
                self.folder.mkdir(parents=True, exist_ok=True)
                self._made = True
            (self.folder / str(pgid)).write_text(key)
        except OSError as exc:
            log.warning("could not keep the process group of task %s: %s", key, exc)

    def remove(self, pgid: int, key: str | None = None) -> None:
        """Forget the group, and its attempt's mark."""
        key = self._keys.pop(pgid, key)
        path = self.folder / str(pgid)
        if key is None:
            with contextlib.suppress(OSError):
                key = path.read_text().strip()
        with contextlib.suppress(OSError):
            path.unlink()
        if key is not None and parse_attempt_key(key) is not None:  # a file name of ours
            with contextlib.suppress(OSError):
                (self.marks / key).unlink()

    def kept(self) -> dict[int, str]:
        """pgid -> task key, as an earlier agent left them."""
        out = {}
        with contextlib.suppress(OSError):
            for path in self.folder.iterdir():
                if path.name.isdigit():  # not marks/
                    with contextlib.suppress(OSError, ValueError):
                        out[int(path.name)] = path.read_text().strip()
        return out

    def end_leaderless(self, ended_already: Collection[int] = ()) -> list[str]:
        """For a new agent, before it registers: SIGKILL the processes left in a kept group
        whose leader (the task's shell) is gone; end as its watchdog would a kept group whose
        live leader is the attempt's and is not among ``ended_already`` (the groups
        :func:`agent.groups.orphans` found: one it missed, a review's case, runs on
        otherwise); forget every kept group with its mark; end the groups of the processes
        that hold a mark left without a kept group (:meth:`_end_stray`) and forget those
        marks. The keys of the attempts so ended."""
        ended = []
        for pgid, key in sorted(self.kept().items()):
            # only a key names a mark: no other file (``../..``) is ever taken for one
            mark = os.path.realpath(self.marks / key) if parse_attempt_key(key) else ""
            if leaderless_of(pgid, key, mark):
                signal_group(pgid, signal.SIGKILL)
                ended.append(key)
            elif pgid not in ended_already and PROC.is_dir() and _of_attempt(pgid, key, mark):
                end_groups({pgid: key})  # a command that has returned is spared its end
                ended.append(key)
            self.remove(pgid, key)
        return ended + self._end_stray(ended_already)

    def _end_stray(self, ended_already: Collection[int]) -> list[str]:
        """The marks left without a kept group: an agent killed between a task's start and
        its keeping of the group (``groups/<pgid>`` not yet written), or after forgetting the
        group and before its mark. A process that still holds one is the attempt's (only the
        task's processes inherit it): its group is ended as a kept group's would be. Every
        such mark is then forgotten. The keys of the attempts so ended."""
        mine = set(self._keys.values())
        try:
            stray = [p for p in self.marks.iterdir() if p.name not in mine]
        except OSError:
            return []
        held = _holders(os.path.realpath(self.marks)) if stray and PROC.is_dir() else {}
        ended = []
        for path in stray:
            key = path.name
            pids = held.get(key, []) if parse_attempt_key(key) is not None else []
            groups = sorted({g for pid in pids if (g := group_of(pid)) is not None})
            # a leaderless group is killed; one with a live shell ended as a kept one's
            # would be, unless groups.orphans found it (``ended_already``)
            ends = [g for g in groups if exited(g) or g not in ended_already]
            for pgid in ends:
                if exited(pgid):
                    signal_group(pgid, signal.SIGKILL)
                else:
                    end_groups({pgid: key})
            if ends:
                ended.append(key)
            with contextlib.suppress(OSError):
                path.unlink()
        return ended


def leaderless_of(pgid: int, key: str, mark: str = "") -> bool:
    """Whether group ``pgid`` has lost its leader and holds a live process of attempt
    ``key`` (by its environment, or its descriptor on ``mark``, the attempt's mark's real
    path): a task's command whose shell was killed without it."""
    ids = parse_attempt_key(key)
    if ids is None or not PROC.is_dir() or not exited(pgid):
        return False  # a live leader: a task shell of an earlier agent (groups.orphans)
    return any(_of_attempt(pid, key, mark) for pid in members(pgid))


def _of_attempt(pid: int, key: str, mark: str) -> bool:
    return _attempt_of(pid) == key or (bool(mark) and _holds(pid, mark))


def _holds(pid: int, mark: str) -> bool:
    """Whether process ``pid`` has a descriptor open on the file ``mark`` (a real path; one
    removed since reads ``... (deleted)`` and is not it). False if that cannot be read
    (another user's process, for an agent without the right to trace it)."""
    return mark in _links(pid)


def _holders(folder: str) -> dict[str, list[int]]:
    """The processes with a descriptor open on a file of ``folder`` (a real path), by the
    file's name: one scan of ``/proc``."""
    out: dict[str, list[int]] = {}
    prefix = folder + os.sep
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            for link in _links(int(entry.name)):
                if link.startswith(prefix):
                    out.setdefault(link[len(prefix) :], []).append(int(entry.name))
    return out


def _links(pid: int) -> list[str]:
    """What process ``pid``'s descriptors point at (none if they cannot be read)."""
    fds = PROC / str(pid) / "fd"
    try:
        names = os.listdir(fds)
    except OSError:
        return []
    out = []
    for name in names:
        with contextlib.suppress(OSError):
            out.append(os.readlink(fds / name))
    return out


def _attempt_of(pid: int) -> str | None:
    """The attempt key a process's environment names (the task environment's HPC_JOB_ID,
    HPC_TASK_ID, HPC_TASK_ATTEMPT), None if it names none or cannot be read."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    env = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    try:
        return attempt_key(
            int(env[b"HPC_JOB_ID"]), int(env[b"HPC_TASK_ID"]), int(env[b"HPC_TASK_ATTEMPT"])
        )
    except (KeyError, ValueError):
        return None
