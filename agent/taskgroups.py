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
processes has an environment naming that attempt (``HPC_JOB_ID``, ``HPC_TASK_ID``,
``HPC_TASK_ATTEMPT``; a live member keeps the kernel from giving its group id to another
group), so a group id given again to something else is never touched. What this cannot
help: a command that ended before the next agent started ran to its end unrecorded, and one
that cleared its environment (``exec env -i ...``) is not recognised (docs/exactly-once.md).
Linux only (``/proc``); elsewhere nothing is found.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Collection
from pathlib import Path

from agent.groups import PROC, exited, members
from agent.lifeline import end_groups
from shared.domain.messages import attempt_key, parse_attempt_key

log = logging.getLogger(__name__)

FOLDER = "groups"
"""Under the agent's state folder."""


class TaskGroups:
    """``groups/<pgid>`` holding the task's key, while the task runs."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / FOLDER
        self._made = False

    def add(self, pgid: int, key: str) -> None:
        """Never raises: a group not kept is one the next agent cannot end (logged)."""
        try:
            if not self._made:  # once, not at every task start
                self.folder.mkdir(parents=True, exist_ok=True)
                self._made = True
            (self.folder / str(pgid)).write_text(key)
        except OSError as exc:
            log.warning("could not keep the process group of task %s: %s", key, exc)

    def remove(self, pgid: int) -> None:
        with contextlib.suppress(OSError):
            (self.folder / str(pgid)).unlink()

    def kept(self) -> dict[int, str]:
        """pgid -> task key, as an earlier agent left them."""
        out = {}
        with contextlib.suppress(OSError):
            for path in self.folder.iterdir():
                with contextlib.suppress(OSError, ValueError):
                    out[int(path.name)] = path.read_text().strip()
        return out

    def end_leaderless(self, ended_already: Collection[int] = ()) -> list[str]:
        """For a new agent, before it registers: SIGKILL the processes left in a kept group
        whose leader (the task's shell) is gone; end as its watchdog would a kept group whose
        live leader names the attempt and is not among ``ended_already`` (the groups
        :func:`agent.groups.orphans` found: one it missed, a review's case, runs on
        otherwise); forget every kept group. The keys of the attempts so ended."""
        ended = []
        for pgid, key in sorted(self.kept().items()):
            if leaderless_of(pgid, key):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                ended.append(key)
            elif pgid not in ended_already and PROC.is_dir() and _attempt_of(pgid) == key:
                end_groups({pgid: key})  # a command that has returned is spared its end
                ended.append(key)
            self.remove(pgid)
        return ended


def leaderless_of(pgid: int, key: str) -> bool:
    """Whether group ``pgid`` has lost its leader and holds a live process of attempt
    ``key``: a task's command whose shell was killed without it."""
    ids = parse_attempt_key(key)
    if ids is None or not PROC.is_dir() or not exited(pgid):
        return False  # a live leader: a task shell of an earlier agent (groups.orphans)
    return any(_attempt_of(pid) == key for pid in members(pgid))


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
