"""Publishing ended tasks' output off the agent's loop.

A task's end is reported once its output is in the Output store, so that a user who sees it
Finished can read all it wrote. With Blob output that is network I/O: several requests per
stream, for a 30 MB output many, and a request can hang for the SDK's timeouts. Done in the
agent's loop it stopped heartbeats: a live probe saw 80 tasks end together, their uploads
take longer than the lifeline's fence, the fence kill the node's other tasks, and 23 tasks
that had already run to their end run again elsewhere (or, past the heartbeat timeout, the
control plane would have declared the node lost for the same reason).

So uploads run on a few worker threads while the loop goes on heartbeating; each end is
reported, from the loop's own thread, when its upload is done (:meth:`Publisher.settle`).
Until then the heartbeat still lists the attempt as running (:meth:`Publisher.in_flight`), so the
control plane neither gives it up nor expects its end yet; its end record on disk stays until
the end is sent, so an agent killed meanwhile reports it at its next registration. Output
stores whose publish is local (the embedded default) publish inline, as before.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("agent.agent")

WORKERS = 4
"""Uploads at once: ends that come together (a sweep's wave) go out in parallel."""
REPORT_AFTER_S = 60.0
"""An end is reported this long after its upload began even if the upload still runs, its
output then owed (agent/owedoutput.py): however the Output store fails (refusing, or taking
connections and never answering: the SDK's timeouts then run for minutes), a task that ended
does not stay Running, holding its cores, for longer."""


class Publisher:
    def __init__(
        self, *, inline: bool, workers: int = WORKERS, report_after_s: float = REPORT_AFTER_S
    ) -> None:
        self.inline = inline
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        self.report_after_s = report_after_s
        self._pending: dict[str, tuple[Future[None], Callable[[], None], float]] = {}
        """attempt key -> its upload, what to do on the loop's thread once it is done, and
        when it began."""
        self._behind: ThreadPoolExecutor | None = None
        self._round: Future[None] | None = None
        """A round of output owed since its end (agent/owedoutput.py), on a worker of its own:
        a probe saw owed retries queue ahead of new ends on the shared workers in a long Blob
        outage, each end's first try waiting longer (20 s, then 74 s after 10 min)."""

    def publish(self, key: str, upload: Callable[[], None], then: Callable[[], None]) -> None:
        """Run ``upload`` (never raises: the runner logs its own failures), then ``then`` on
        the loop's thread: at once if inline, else at a later :meth:`settle`."""
        if self.inline:
            upload()
            then()
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="publish")
        self._pending[key] = (self._pool.submit(upload), then, time.monotonic())

    def behind(self, round_: Callable[[], None]) -> bool:
        """Run ``round_`` (never raises) for attempts whose ends are already reported (not
        :meth:`in_flight`: heartbeats do not list them), on one worker of its own, never two
        rounds at once; False (nothing done) while the last round still runs."""
        if self._round is not None and not self._round.done():
            return False
        if self._behind is None:
            self._behind = ThreadPoolExecutor(1, thread_name_prefix="publish-owed")
        self._round = self._behind.submit(round_)
        return True

    def in_flight(self) -> list[str]:
        """Attempts that ended but whose output is still being published."""
        return list(self._pending)

    def settle(self, *, wait_s: float = 0.0, anyway: bool = False) -> int:
        """Run ``then`` for every upload done (waiting up to ``wait_s`` for all of them);
        returns how many are still in flight. ``anyway`` (the agent stops): run ``then`` for
        the rest too, their uploads going on: an end not sent before the node says it stops
        is lost with its incarnation and runs again (a review: a stop during a Blob outage),
        while output not published yet is owed (agent/owedoutput.py)."""
        deadline = time.monotonic() + wait_s
        late = 0
        for key, (future, then, began) in list(self._pending.items()):
            if not future.done() and wait_s > 0:
                with contextlib.suppress(TimeoutError):  # said below, for all at once
                    future.exception(timeout=max(0.0, deadline - time.monotonic()))
            overdue = time.monotonic() - began >= self.report_after_s
            if future.done() or anyway or overdue:
                late += not future.done()
                del self._pending[key]
                then()
        if late:
            log.warning(
                "%d ended task(s) reported while their output is still being published: it "
                "is owed, and published once the Output store takes it",
                late,
            )
        elif self._pending and wait_s > 0:
            log.warning(
                "the output of %d ended task(s) is still being published after %g s",
                len(self._pending),
                wait_s,
            )
        return len(self._pending)

    def close(self) -> None:
        for pool in (self._pool, self._behind):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=False)
        self._pool = self._behind = None
