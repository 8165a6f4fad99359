"""Lock renewal for the local host's Service Bus triggers: one thread renews the message and
session locks of single-message invocations while they run (at half the remaining time, for
at most ``maxAutoLockRenewalDuration``), as the Functions Service Bus extension does."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

log = logging.getLogger(__name__)


@dataclass
class _Lease:
    what: str
    renew: Callable[[], datetime]
    renew_at: float
    give_up_at: float


@dataclass
class LockRenewer:
    """One thread that renews message and session locks while invocations run.

    A lock is renewed when half of its remaining time has passed, for at most
    ``max_renewal_s`` after it was registered; a failed renewal is logged and
    the lease dropped (the bus will redeliver, as in Azure).
    """

    max_renewal_s: float = 300.0
    _leases: dict[int, _Lease] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stopped: bool = False
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lock-renewer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def keep(
        self, what: str, renew: Callable[[], datetime], locked_until: datetime | None
    ) -> Iterator[None]:
        """Renew ``renew``'s lock (expiring at ``locked_until``) for the duration of the block."""
        if locked_until is None:
            yield
            return
        now = time.time()
        lease = _Lease(what, renew, _halfway(now, locked_until), now + self.max_renewal_s)
        with self._changed:
            key = next(self._ids)
            self._leases[key] = lease
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._leases.pop(key, None)

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                now = time.time()
                for key, lease in list(self._leases.items()):
                    if lease.give_up_at <= now:
                        self._leases.pop(key, None)
                due = [(k, lease) for k, lease in self._leases.items() if lease.renew_at <= now]
                if not due:
                    wake = min((lease.renew_at for lease in self._leases.values()), default=None)
                    self._changed.wait(None if wake is None else max(0.0, wake - now))
                    continue
                self._changed.release()
                try:
                    renewed = [(k, self._renew(lease)) for k, lease in due]
                finally:
                    self._changed.acquire()
                for key, until in renewed:
                    current = self._leases.get(key)
                    if current is None:
                        continue  # settled meanwhile
                    if until is None:
                        self._leases.pop(key, None)
                    else:
                        current.renew_at = _halfway(time.time(), until)

    @staticmethod
    def _renew(lease: _Lease) -> datetime | None:
        try:
            return lease.renew()
        except Exception as e:
            log.warning("could not renew the lock of %s: %r", lease.what, e)
            return None


def _halfway(now: float, until: datetime) -> float:
    return now + max(0.0, until.timestamp() - now) / 2
