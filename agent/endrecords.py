"""End records: a task's exit code, written to disk by the task's own shell as its last act.

Why: if the agent dies (kill -9, a crash) after a task ended but before its TaskEnded
was sent, nobody would report that end; the control plane would requeue the attempt
and the task would run to its end twice. The record outlives the agent: the next agent
of the node, in the same state folder, reports it as soon as it has registered, and the
control plane keeps that result (the late end of a lost attempt that ran to its end).

A record is written by a small wrapper shell around the user's command, in the task's
own process group, so it costs one ``sh`` per task and exists only if the command
returned. The agent deletes a record once the TaskEnded it stands for has been sent.

A record says how the command ended, not why: a command that traps SIGTERM (``trap "exit
0" TERM``) writes one when the agent kills it. So before the agent sends the kill signal to
a task whose shell still runs (cancel, runtime limit, its own stop) it leaves a *killed
mark* beside the record (:meth:`EndRecords.mark_killed`): whatever the record then says,
that attempt was killed, and a later agent never reports it as an end (see
:meth:`EndRecords.leftovers`). The agent decides from its own process state, never from
the record, which the task itself could write.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from shared.domain.messages import attempt_key, parse_attempt_key

log = logging.getLogger(__name__)

KILLED = ".killed"
"""The suffix of a record's killed mark (``<key>.killed``, empty, written by the agent)."""

_RUN = (
    "__hpc_signal=; "
    "trap '__hpc_signal=HUP' HUP; trap '__hpc_signal=INT' INT; trap '__hpc_signal=TERM' TERM; "
    '( eval "$__hpc_command" ); __hpc_status=$?; '
    'if [ -n "$__hpc_signal" ]; then '
    '[ "$__hpc_status" -le 128 ] || { trap - "$__hpc_signal"; kill -s "$__hpc_signal" $$; }; '
    'exit "$__hpc_status"; fi; '
    '[ -z "$__hpc_end_record" ] || printf "%s\\n" "$__hpc_status" > "$__hpc_end_record"; '
    'exit "$__hpc_status"'
)
"""Run ``$__hpc_command`` in a subshell and, once it returns, write its status to
``$__hpc_end_record`` (if set) and exit with it. A subshell, not this shell: a command that
``exec``s (``exec mpirun ...``) or sets its own EXIT trap ran, in this very shell, past any
record (a probe: after an agent crash such a task's end was unknown, so it was requeued and
ran to its end twice). A signal (HUP, INT, TERM: a kill, a machine going down) is held
until the command returns: it then ends with the command's own status (a trap's ``exit 3``)
or dies by the same signal if the command did, and writes no record either way, so a killed
task never leaves one (the killed mark, :meth:`EndRecords.mark_killed`, still guards a
record written before the signal). SIGKILL kills it as it does the command."""

TASK_SHELL_NAME = "hybridhpc-task"
"""The task shell's ``$0`` (its argv[3] in /proc): tells it from the command's own processes."""

WRAPPER = "__hpc_end_record=$2; __hpc_command=$1; shift 2; " + _RUN
"""``sh -c WRAPPER name COMMAND RECORD``: :data:`_RUN` COMMAND, its end recorded in RECORD.
The command's ``$$`` is still this shell's, the task's process group leader."""

OWNER_WRAPPER = '__hpc_command=$1; __hpc_end_record=$3; cd -- "$2" || exit 1; shift 3; ' + _RUN
"""``sh -c OWNER_WRAPPER name COMMAND DIR RECORD`` (--run-as-owner, the shell already the
task's owner): enter DIR as the owner, then as :data:`WRAPPER`, RECORD being ``/dev/fd/N``,
a descriptor of the record the agent opened and gave the owner (the owner cannot reach the
agent's folder), or empty for none. A DIR it cannot enter ends it with 1, no record."""


@dataclass(frozen=True)
class Leftover:
    job_id: int
    task_id: int
    attempt: int
    exit_code: int


class EndRecords:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: int, task_id: int, attempt: int) -> Path:
        return self.folder / attempt_key(job_id, task_id, attempt)

    def argv(self, command: str, record: Path) -> list[str]:
        """The process to start instead of ``sh -c command``."""
        record.unlink(missing_ok=True)
        return ["/bin/sh", "-c", WRAPPER, TASK_SHELL_NAME, command, str(record)]

    def read(self, key: str) -> int | None:
        """The exit code recorded for this attempt, or None (no record, or half written).
        Only its first bytes are read: with --run-as-owner the task's user can write it."""
        try:
            with (self.folder / key).open("rb") as f:
                text = f.read(64).decode(errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.lstrip("-").isdigit() and len(text) < 12 else None

    def mark_killed(self, key: str) -> None:
        """Before the agent signals a task that still runs: its record, if its shell writes
        one from now on (a trap's ``exit``), is the kill's doing, not an end of its own."""
        try:
            (self.folder / (key + KILLED)).touch()
        except OSError:
            log.warning("could not mark task %s as killed in %s", key, self.folder, exc_info=True)

    def unmark(self, key: str) -> None:
        """The attempt's process is known to have exited by itself (not by a signal) after
        all: its record, if any, stands for an end of its own."""
        with contextlib.suppress(OSError):
            (self.folder / (key + KILLED)).unlink()

    def killed(self, key: str) -> bool:
        return (self.folder / (key + KILLED)).exists()

    def killed_first(self, key: str) -> bool:
        """The attempt's killed mark is no younger than its record: the record may be the
        kill's doing (a trap's ``exit`` after the signal). A record older than the mark was
        written before any kill: the command had returned by itself (a probe: an agent paused
        past the lifeline's fence, which marks every task it still lists, then killed and
        restarted; the task had ended before the fence, and its recorded end was thrown
        away, so it ran to its end twice). Timestamps too close to tell apart count as
        killed: the task runs again rather than being said to have ended."""
        try:
            mark = (self.folder / (key + KILLED)).stat().st_mtime_ns
        except OSError:
            return False
        try:
            return (self.folder / key).stat().st_mtime_ns >= mark
        except OSError:
            return True

    def forget(self, key: str) -> None:
        for name in (key, key + KILLED):
            with contextlib.suppress(OSError):
                (self.folder / name).unlink()

    def leftovers(self, *, running: set[str]) -> list[Leftover]:
        """Ends a previous agent of this node recorded but may not have reported; records
        that cannot be read, and those of attempts the agent killed, are removed."""
        out = []
        for path in sorted(self.folder.iterdir()):
            key = path.name.removesuffix(KILLED)
            if key in running:
                continue
            if key != path.name:  # a killed mark: goes with its record (or alone)
                if not (self.folder / key).exists():
                    self.forget(key)
                continue
            parts = parse_attempt_key(key)
            code = self.read(key)
            if parts is None or code is None or self.killed_first(key):
                self.forget(key)
                continue
            out.append(Leftover(*parts, code))
        return out


def owner_argv(command: str, cwd: str, record: str) -> list[str]:
    """The process to start as the task's owner (:data:`OWNER_WRAPPER`); ``record``:
    ``/dev/fd/N`` or empty."""
    return ["/bin/sh", "-c", OWNER_WRAPPER, TASK_SHELL_NAME, command, cwd, record]
