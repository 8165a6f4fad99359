"""One task as one process group.

The task's command runs through the shell in a new session, so the task is its
own process group: cancel and stop signal the whole group, which ends the
shell, its children and anything they put in the background. Streams go
straight to the files the Output store hands out for this attempt (no pipe
through the agent, so a task never blocks on a full pipe).

Each stream keeps at most ``max_output_bytes`` (HPC_MAX_OUTPUT_BYTES). The
files are opened in append mode, so the runner can cut them back to the cap
while the process writes on (checked every ``CAP_CHECK_S`` in :meth:`Runner.poll`,
which bounds the disk a runaway task takes); :meth:`Runner.finish` cuts them a
last time, appends :func:`~shared.ports.output.truncation_marker` and records
the truncation in the Output store, where the API reports it.

A stream the task names a file for (``--stdout`` / ``--stderr``) goes whole into
that file instead, and the Output store gets a copy of its first bytes (up to the
cap) as it grows: see agent/outputfiles.py.

With ``run_as`` (the agent's --run-as-owner) the process runs as the job's owner, and its
working directory and files are entered and opened as the owner: see agent/owners.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from agent import owedoutput
from agent.endrecords import EndRecords
from agent.groups import command_running, freeze, group_alive, signal_group, thaw
from agent.outputfiles import OutputFileError, TaskFiles
from agent.owners import OwnerError, OwnerStart, RunAsOwner
from agent.tail import read_tail
from agent.taskenv import work_dir
from agent.taskgroups import hold_mark
from shared.domain.messages import JOB_SUBMIT_ENV, RunTask
from shared.ports.output import STREAMS, OutputStore, Stream, job_stamp, truncation_marker
from shared.settings import Settings

log = logging.getLogger(__name__)

GRACE_S = 0.5
"""Time between SIGTERM and SIGKILL of a task's process group when the caller names none (a
task's own end, its leftovers; cancels and runtime limits: agent/stopping.py)."""
CAP_CHECK_S = 0.1
"""How often a running task's streams are cut back to the cap (at most)."""
MIRROR_STEP_BYTES = 16 << 20
"""At most this much of a user's --stdout / --stderr file is copied per check (the rest
follows at the next checks and at the end), so one poll never stalls the agent for long."""
PUBLISH_RETRY_S = (1.0, 4.0)
"""Pauses before a remote Output store's failed publish is tried again (then it is logged)."""
_WAIT_STEP_S = 0.01


def task_key(job_id: int, task_id: int, attempt: int) -> str:
    """The "job.task.attempt" form used in heartbeats and registrations."""
    return f"{job_id}.{task_id}.{attempt}"


class Runner:
    """Runs one task's command and reports how it ended.

    Lifecycle: :meth:`start` (returns an error string instead of raising), then
    :meth:`poll` until it returns the exit code (or :meth:`kill_tree`), then
    :meth:`finish` once, which clears up what the task left behind, ends its streams
    at the cap, publishes its output and returns the stdout tail.
    """

    def __init__(
        self,
        task: RunTask,
        *,
        output: OutputStore,
        env: Mapping[str, str],
        cwd: str | None = None,
        max_output_bytes: int | None = None,
        end_record: tuple[EndRecords, Path] | None = None,
        run_as: RunAsOwner | None = None,
    ) -> None:
        self.task = task
        self.key = task_key(task.job_id, task.task_id, task.attempt)
        self._output = output
        self._env = dict(env)
        self._cwd = work_dir(task.work_dir, home=None if run_as else env.get("HOME")) or cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._paths: dict[Stream, Path] = {}
        self._files = TaskFiles(task, cwd=self._cwd)
        """The files the task named for its streams (--stdout / --stderr), if any."""
        self.max_output_bytes = (
            Settings().max_output_bytes if max_output_bytes is None else max_output_bytes
        )
        """Bytes kept of each stream (HPC_MAX_OUTPUT_BYTES by default)."""
        if self.max_output_bytes < 1:
            raise ValueError(f"max_output_bytes must be at least 1, got {self.max_output_bytes}")
        self.truncated: set[Stream] = set()
        """Streams cut at the cap so far."""
        self._next_cap_check = 0.0
        self._end_record = end_record
        """Where the task's shell writes its exit code as its last act (agent/endrecords.py)."""
        self._run_as = run_as
        """--run-as-owner: the task runs as its job's owner (None: as the agent's user)."""
        self.started_at = time.monotonic()
        self.kill_reached = False
        """The agent's first SIGTERM went to the task while its shell still ran (not yet
        exited): its end is the kill's (canceled, runtime limit), whatever exit code its
        process tree ends with (a ``trap "exit 0" TERM`` too). False if it had ended first."""
        self._kill_sent = False

    @property
    def stdout_file(self) -> str:
        """The file the task's stdout goes to on this machine ("" before it started)."""
        return str(self._paths["stdout"]) if "stdout" in self._paths else ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._proc

    @property
    def _stamp(self) -> str | None:
        """The job's stamp on this attempt's output (shared.ports.output.job_stamp)."""
        return job_stamp(self.task.job_id, self.task.env.get(JOB_SUBMIT_ENV))

    def start(self) -> str | None:
        """Start the process; ``None`` on success, else why it could not start."""
        task = self.task
        owner: OwnerStart | None = None
        if self._run_as is not None:
            try:
                owner = self._run_as.prepare(task, self._files)  # the checks, as the owner
            except OwnerError as exc:
                return self._start_failed(str(exc))
        elif self._cwd is not None and not os.path.isdir(self._cwd):
            return self._start_failed(
                f"working directory {self._cwd!r} does not exist or is not a directory"
            )
        elif (error := self._files.resolve()) is not None:
            return self._start_failed(error)
        try:
            for stream in STREAMS:
                self._paths[stream] = self._output.sink(
                    task.job_id, task.task_id, stream, attempt=task.attempt, stamp=self._stamp
                )
            # Append mode: cutting a file back to the cap while the process writes on
            # leaves no hole, as the next write lands at the (new) end.
            with contextlib.ExitStack() as files:
                sinks = {s: files.enter_context(self._paths[s].open("ab")) for s in STREAMS}
                for sink in sinks.values():
                    sink.truncate(0)  # the same attempt started again starts afresh
                # A stream with a file of the user's goes there (the sink gets a copy).
                handles = {**sinks, **self._files.open(files)}
                records = self._end_record
                marks = hold_mark(records, self.key, files)  # for the next agent: taskgroups.py
                if owner is not None:
                    self._proc = owner.popen(
                        task,
                        self._env,
                        record=None if records is None else records[1],
                        stack=files,
                        marks=marks,
                        stdout=handles["stdout"],
                        stderr=handles["stderr"],
                    )
                else:
                    self._proc = subprocess.Popen(  # noqa: S602 - running the user's shell command is the point
                        task.command
                        if records is None
                        else records[0].argv(task.command, records[1]),
                        shell=records is None,
                        cwd=self._cwd,
                        env=self._env,
                        stdin=subprocess.DEVNULL,
                        stdout=handles["stdout"],
                        stderr=handles["stderr"],
                        start_new_session=True,
                        pass_fds=marks,
                    )
        except OutputFileError as exc:
            return self._start_failed(str(exc))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return self._start_failed(f"could not start the command: {exc}")
        self.started_at = time.monotonic()
        return None

    def _start_failed(self, error: str) -> str:
        """Leave the reason in the task's stderr too, where ``hpc task output`` shows it."""
        task = self.task
        self._files.close()  # what the owner opened for it, if anything
        try:
            path = self._output.sink(
                task.job_id, task.task_id, "stderr", attempt=task.attempt, stamp=self._stamp
            )
            path.write_text(error + "\n")
            self._output.publish(task.job_id, task.task_id, attempt=task.attempt, final=True)
        except Exception:  # the error string is what matters; its copy in stderr is a courtesy
            log.debug(
                "could not write the start error of %s to its stderr", self.key, exc_info=True
            )
        return error

    def poll(self) -> int | None:
        """The exit code once the process has ended (negative: killed by that signal).
        While it runs, its streams are cut back to the cap now and then."""
        if self._proc is None:
            return None
        code = self._proc.poll()
        if code is None and time.monotonic() >= self._next_cap_check:
            self._next_cap_check = time.monotonic() + CAP_CHECK_S
            self._mirror(MIRROR_STEP_BYTES)
            self._cap_streams()
        return code

    def _mirror(self, limit: int | None) -> None:
        """Copy what the task wrote to its own files into the Output store (up to the cap)."""
        if self._files:
            self._files.mirror(self._paths, cap=self.max_output_bytes, limit=limit)

    def _cap_streams(self) -> None:
        """Cut every stream longer than the cap back to it; record the first cut. Never raises."""
        cap = self.max_output_bytes
        for stream, path in self._paths.items():
            try:
                if path.stat().st_size <= cap:
                    continue
                os.truncate(path, cap)
            except OSError:
                log.warning("could not cut the %s of task %s to %d bytes", stream, self.key, cap)
                continue
            if stream not in self.truncated:
                self.truncated.add(stream)
                self._record_truncation(stream)

    def _record_truncation(self, stream: Stream) -> None:
        task = self.task
        try:
            self._output.mark_truncated(
                task.job_id, task.task_id, stream, attempt=task.attempt, cap=self.max_output_bytes
            )
        except Exception:
            log.exception("could not record that the %s of task %s was truncated", stream, self.key)

    def _end_streams(self) -> None:
        """After the process group is gone: cut the streams a last time and end each cut
        one with the marker line (on a line of its own). Never raises."""
        self._mirror(None)
        self._cap_streams()
        marker = truncation_marker(self.max_output_bytes)
        for stream in sorted(self.truncated):
            path = self._paths[stream]
            try:
                with path.open("r+b") as f:
                    f.truncate(self.max_output_bytes)
                    f.seek(-1, os.SEEK_END)
                    newline = f.read(1) == b"\n"
                    f.write(marker if newline else b"\n" + marker)
            except OSError:
                log.warning("could not end the truncated %s of task %s", stream, self.key)

    def terminate_tree(self) -> None:
        """SIGTERM to the whole process group (first step of :meth:`kill_tree`). The first
        time, decide :attr:`kill_reached` from the processes themselves (not from an end record
        written after this, which its own trap may write once signaled), and mark the end
        record killed before the signal (agent/endrecords.py). A command that has returned
        (its shell has no live child, asked with the group stopped: agent/groups.py), or a
        record already written, means its shell is finishing: no signal, its own end."""
        if self._proc is None:
            return
        if not self._kill_sent:
            self._kill_sent = True
            self.kill_reached = self._proc.poll() is None  # not exited (nor reaped) yet
            if self.kill_reached and self._end_record is not None:
                pgid = self._proc.pid
                freeze(pgid)
                try:
                    if command_running(pgid) is False:
                        # Its command returned a moment ago; its shell has yet to write the
                        # end record (a kill now would lose an end of its own).
                        self.kill_reached = False
                        return
                    records = self._end_record[0]
                    records.mark_killed(self.key)
                    if records.read(self.key) is not None:
                        # Written before the mark (read after it): its command has returned
                        # and its shell, still in its EXIT trap, is finishing: an end of its
                        # own, left to finish (chaos probes saw such ends counted as killed,
                        # and the task ran again). A record its trap writes once signaled
                        # comes after the mark.
                        records.unmark(self.key)
                        self.kill_reached = False
                        return
                    signal_group(pgid, signal.SIGTERM)  # delivered as the group goes on
                    return
                finally:
                    thaw(pgid)
        signal_group(self._proc.pid, signal.SIGTERM)

    def kill_tree(self, grace_s: float = GRACE_S) -> int | None:
        """End the whole process group: SIGTERM, then SIGKILL after ``grace_s``.
        Returns the exit code."""
        return kill_trees([self], grace_s=grace_s)[0]

    def tree_alive(self) -> bool:
        """Its process group has a process left (the leader alive: no scan of /proc, which
        a loop that waits out a grace asks every few ms)."""
        if self._proc is None:
            return False
        if self._proc.poll() is None:
            return True
        return group_alive(self._proc.pid)

    def finish(self, *, publish: bool = True) -> str:
        """After the process ended: kill what it left running in its group, publish the
        streams (unless ``publish`` is False: the caller runs :meth:`publish` later, off the
        agent's loop), return the last characters of stdout. Never raises."""
        if self._proc is None:
            return ""
        if self._proc.poll() is None:
            self.kill_tree()
        elif group_alive(self._proc.pid):
            signal_group(self._proc.pid, signal.SIGKILL)  # background leftovers of a finished task
        self._end_streams()
        self._files.close()
        # before publishing: a final publish may remove the local files (Blob output)
        tail = read_tail(self._paths["stdout"]) if "stdout" in self._paths else ""
        if publish:
            self.publish()
        return tail

    def publish(self) -> bool:
        """Put the ended attempt's streams in the Output store, the last time (a store that
        uploads them then removes its local copy, unless the upload failed). Never raises:
        False when it gave up (the output stays owed: agent/owedoutput.py). A remote store's
        failure is tried again after :data:`PUBLISH_RETRY_S` (off the agent's loop), beyond
        its SDK's own quick retries, so that a short outage does not delay the output."""
        waits = PUBLISH_RETRY_S if self._output.remote else ()
        for wait in (*waits, None):
            try:
                self._output.publish(
                    self.task.job_id, self.task.task_id, attempt=self.task.attempt, final=True
                )
                return True
            except Exception as exc:  # one line each (a probe: 2,000 lines of tracebacks)
                log.debug("the publish of task %s failed", self.key, exc_info=True)
                why = owedoutput.first_line(exc)
                if wait is None:
                    log.error("could not publish the output of task %s (%s): its end is reported "
                              "and its output published again every %g s until it is in",
                              self.key, why, owedoutput.RETRY_S)  # fmt: skip
                    return False
                log.warning("could not publish the output of task %s (%s); trying again in %g s",
                            self.key, why, wait)  # fmt: skip
                time.sleep(wait)
        return False  # not reached: the last try returns


def kill_trees(runners: Iterable[Runner], *, grace_s: float = GRACE_S) -> list[int | None]:
    """End several tasks' process groups at once (SIGTERM all, wait at most ``grace_s``
    for all of them, SIGKILL the rest), so stopping N tasks costs one grace, not N.
    Returns their exit codes in order."""
    runners = list(runners)
    for runner in runners:
        runner.terminate_tree()
    deadline = time.monotonic() + grace_s
    while any(r.tree_alive() for r in runners) and time.monotonic() < deadline:
        time.sleep(_WAIT_STEP_S)
    return [finish_kill(runner) for runner in runners]


def finish_kill(runner: Runner) -> int | None:
    """The last step of a kill: SIGKILL to what is left of the task's process group, and its
    exit code (None: no process, or unkillable)."""
    proc = runner.process
    if proc is None:
        return None
    if group_alive(proc.pid):
        signal_group(proc.pid, signal.SIGKILL)
    try:
        return proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:  # unkillable (D state): report it as still unknown
        log.warning("process %s of task %s did not die after SIGKILL", proc.pid, runner.key)
        return None
