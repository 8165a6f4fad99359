"""Timer triggers: each timer in its own thread, so a timer is a singleton (never two runs at once).

As in Functions, a run that overruns the next occurrence makes the timer skip
to the first occurrence after the run ends; ``past_due`` is set when an
invocation starts noticeably later than its scheduled time. ``runOnStartup``
runs the function once when the host starts. A failing run is logged and the
schedule goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest

from devhost.functions import FunctionSpec
from devhost.invoke import InvocationError, Invoker
from devhost.ncrontab import Schedule, parse_schedule

log = logging.getLogger(__name__)

PAST_DUE_AFTER = timedelta(seconds=1)
"""An invocation starting later than this after its due time is past due."""


def _now() -> datetime:
    return datetime.now(UTC)


class TimerRunner:
    """Runs one timer-triggered function on its schedule until stopped."""

    def __init__(
        self,
        spec: FunctionSpec,
        invoker: Invoker,
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.spec = spec
        self.schedule: Schedule = parse_schedule(spec.trigger["schedule"])
        self._invoker = invoker
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"timer-{spec.name}", daemon=True)
        self._last: datetime | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling; a running invocation finishes (see :meth:`join`)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True if it did."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        if self.spec.trigger.get("runOnStartup") and not self._stop.is_set():
            self._invoke(due=self._clock(), past_due=False)
        due = self.schedule.next_after(self._clock())
        while not self._stop.is_set():
            # Wall-clock waits in steps: an early wake-up (clock adjustments) just waits again.
            remaining = (due - self._clock()).total_seconds()
            if remaining > 0:
                self._stop.wait(remaining)
                continue
            now = self._clock()
            self._invoke(due=due, past_due=now - due > PAST_DUE_AFTER)
            due = self.schedule.next_after(max(self._clock(), due))

    def _invoke(self, *, due: datetime, past_due: bool) -> None:
        now = self._clock()
        nxt = self.schedule.next_after(max(now, due))
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": (self._last or now).isoformat(),
                "Next": nxt.isoformat(),
                "LastUpdated": now.isoformat(),
            },
            schedule={"AdjustForDST": True},
        )
        self._last = now
        started = time.perf_counter()
        try:
            self._invoker.call(self.spec, request)
        except InvocationError:
            pass  # logged with its traceback by the invoker; the schedule goes on
        except Exception:
            log.exception("timer %s could not be invoked", self.spec.name)
        log.debug("timer %s ran in %.1f ms", self.spec.name, (time.perf_counter() - started) * 1000)
