"""The lifeline: a watchdog process that kills the agent's tasks if the agent dies.

Each task runs in its own process group (so cancel can kill its whole tree),
which also means nothing kills it when the agent is killed with SIGKILL or
crashes: the control plane requeues the task elsewhere, and the orphan would
go on using the node's cores. The agent therefore starts one small watchdog
and tells it, over a pipe, which process groups are its tasks. When the pipe
reaches end-of-file — the agent closed it or died, however — the watchdog
SIGKILLs the groups still listed and exits.

The pipe's write end is non-inheritable, so tasks never hold it open.
A group is forgotten when its task ends, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading

log = logging.getLogger(__name__)


class Lifeline:
    """The agent's side: start the watchdog, then ``track``/``untrack`` task groups."""

    def __init__(self) -> None:
        read_end, write_end = os.pipe()
        try:
            self._proc = subprocess.Popen(
                # not `-m agent.lifeline`: the package imports this module first, and runpy
                # warns on every agent start that it was already in sys.modules
                [sys.executable, "-c", "from agent.lifeline import main; main()"],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the agent's group must not kill it first
            )
        finally:
            os.close(read_end)
        self._pipe = os.fdopen(write_end, "w", buffering=1)
        self._lock = threading.Lock()

    def track(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def untrack(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def _send(self, line: str) -> None:
        with self._lock:
            if self._pipe.closed:
                return
            try:
                self._pipe.write(line + "\n")
            except OSError as exc:  # the watchdog died: tasks simply lose their lifeline
                log.warning(
                    "lifeline watchdog is gone (%s); orphaned tasks would not be killed", exc
                )

    def close(self) -> None:
        """Close the pipe (the watchdog kills what is still tracked) and wait for it."""
        with self._lock, contextlib.suppress(OSError):
            self._pipe.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def watch(lines: object) -> set[int]:
    """Read ``+pgid`` / ``-pgid`` lines until end-of-file; return the groups still tracked."""
    groups: set[int] = set()
    for raw in lines:  # type: ignore[attr-defined]
        line = raw.strip()
        if not line[1:].isdigit():
            continue
        pgid = int(line[1:])
        if line[0] == "+":
            groups.add(pgid)
        elif line[0] == "-":
            groups.discard(pgid)
    return groups


def main() -> None:
    # Signals meant for the agent's terminal or group are not for the watchdog.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for pgid in watch(sys.stdin):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
