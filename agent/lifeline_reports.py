"""The lifeline's own reports: the ends of tasks whose agent is silent or gone.

Why: an agent paused (``kill -STOP``, a debugger, a hang) or killed while its task ran on.
The task's command returns by itself and its shell writes its end record, but nobody tells
the control plane: the agent cannot, and the next agent of the node, if there is one, says
it only when it registers. Meanwhile the control plane gives the attempt up (at
HPC_HEARTBEAT_TIMEOUT_S, after ``hpc node offline``'s wait of one, or as its VM is
deallocated) and runs the next attempt: a task that had run to its end ran to its end twice
(a probe, 2026-12-03: an on-prem node and two VMs).

The watchdog is a separate process that a paused agent does not stop. Once its agent has
not been heard for half the fence (agent/watch.py), and when its agent dies, it looks at the
tasks it tracks and reports each whose command returned by itself. It sends the TaskEnded
the agent would have sent: that attempt, under the agent's incarnation, with its stdout's
tail. It sends on a bus of its own, opened from the agent's settings. The control plane
keeps an attempt's first end and drops the same end from the agent, heard again (ends are
idempotent by attempt and incarnation). All of this is before the fence and well before the
control plane's timeout, so the next attempt is never started.

Not reported:
- a task the agent killed (its killed mark: a cancel, a runtime or memory limit, its stop);
- one with no end record (killed by a signal);
- one still running: the fence kills it, and the control plane requeues it.

The output itself is published by the agent once heard again, or by the next agent (owed
output, agent/owedoutput.py). Until then the task shows its tail only.

What no watchdog can do: report from a machine cut off from the bus (the watchdog is cut off
too), or one powered off before the report went out. There the end is known only when the
machine comes back, and the attempt may run again: at-least-once, as Slurm's and HPC Pack's
requeue is.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from agent.endrecords import EndRecords
from agent.groups import exited
from agent.tail import read_tail
from agent.watch import Tracked
from shared.domain.messages import EVENTS_QUEUE, LIFELINE_SEQ, TaskEnded, parse_attempt_key
from shared.ports.bus import Bus, OutgoingMessage
from shared.settings import Settings
from shared.wiring import build_bus

RETRY_S = 1.0
"""A report the bus refused is sent again after this long (for as long as the watchdog lives)."""
EXIT_WAIT_S = 5.0
"""A watchdog whose agent died waits at most this long for its reports to go out."""


def _say(text: str) -> None:
    print(f"lifeline: {text}", file=sys.stderr, flush=True)


class EndReports:
    """Finds the ends to report (:meth:`look`) and sends them on a thread of their own: the
    watchdog's loop must fence on time whatever the bus does."""

    def __init__(self, node: str, marks: Path) -> None:
        self.node = node
        self._records = EndRecords(marks)
        self._done: set[str] = set()
        """Attempt keys reported (or queued to be), never looked at again."""
        self._queue: list[bytes] = []
        self._cond = threading.Condition()
        self._sending = False
        self._thread: threading.Thread | None = None

    def look(self, groups: Mapping[int, Tracked], why: str) -> int:
        """Report the tracked tasks that ended by themselves and were not reported yet;
        returns how many."""
        found = 0
        for pgid, tracked in groups.items():
            if tracked.key in self._done or tracked.incarnation is None or not exited(pgid):
                continue
            code = self._records.read(tracked.key)
            if code is None or self._records.killed_first(tracked.key):
                continue  # killed (by a signal, or by the agent: its mark came first)
            body = self._event(tracked, code)
            if body is None:
                continue
            self._done.add(tracked.key)
            _say(f"{why}: reporting the end of task {tracked.key} (exit code {code}) for it")
            self._put(body)
            found += 1
        return found

    def _event(self, tracked: Tracked, code: int) -> bytes | None:
        parts = parse_attempt_key(tracked.key)
        if parts is None or tracked.incarnation is None:
            return None
        job_id, task_id, attempt = parts
        end = TaskEnded(
            node=self.node,
            incarnation=tracked.incarnation,
            seq=LIFELINE_SEQ,
            job_id=job_id,
            task_id=task_id,
            attempt=attempt,
            exit_code=code,
            output=read_tail(Path(tracked.stdout)) if tracked.stdout else "",
        )
        return end.to_bytes()

    def _put(self, body: bytes) -> None:
        with self._cond:
            self._queue.append(body)
            self._cond.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reports", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        bus: Bus | None = None
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                batch, self._sending = list(self._queue), True
                self._queue.clear()
            try:
                bus = bus or build_bus(Settings())  # the agent's, from the environment it gave
                ended = "application/json"
                bus.send(
                    EVENTS_QUEUE,
                    [OutgoingMessage(b, content_type=ended, subject="ended") for b in batch],
                )
                batch = []
            except Exception as exc:  # the bus is out of reach, or refused: try again
                _say(f"could not report {len(batch)} end(s) ({exc}); trying again")
                time.sleep(RETRY_S)
            with self._cond:
                self._queue[:0] = batch
                self._sending = False
                self._cond.notify_all()

    def wait(self, timeout_s: float = EXIT_WAIT_S) -> bool:
        """Wait until every report is sent; False if some are not by ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queue or self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    _say(f"{len(self._queue)} end(s) not reported: the bus did not take them")
                    return False
                self._cond.wait(left)
        return True
