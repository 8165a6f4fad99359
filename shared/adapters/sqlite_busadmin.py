"""Administration of the embedded bus (the BusAdmin port): declare, count, purge.

It works on a :class:`~shared.adapters.sqlite_bus.SqliteBus`'s file, sharing its
connections and clock when given the bus, or opening the file itself when given
a path (as ``hpc`` would, beside running agents).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from shared.adapters.sqlite_bus_file import BusFile
from shared.ports.bus import DEFAULT_LOCK_DURATION_MS, DEFAULT_MAX_DELIVERY_COUNT
from shared.ports.busadmin import BusAdmin


class SqliteBusAdmin(BusAdmin):
    """Declares, counts and purges the queues of one bus file."""

    def __init__(self, bus: BusFile | str | Path, *, clock: Callable[[], float] | None = None):
        if isinstance(bus, BusFile):
            self._file, self._owned = bus, False
        else:
            self._file = BusFile(bus) if clock is None else BusFile(bus, clock=clock)
            self._owned = True

    def declare_queue(
        self,
        name: str,
        *,
        requires_session: bool = False,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS,
    ) -> None:
        """Create the queue; a queue that exists keeps its first options."""
        if max_delivery_count < 1 or lock_duration_ms <= 0:
            raise ValueError("max_delivery_count must be >= 1 and lock_duration_ms > 0")
        with self._file._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO queues VALUES (?, ?, ?, ?)",
                (name, int(requires_session), max_delivery_count, lock_duration_ms),
            )

    def purge_session(self, queue: str, session_id: str) -> int:
        """Deletes every non-dead-lettered message of the session, scheduled and locked ones
        included."""
        self._file._queue(queue)
        with self._file._write() as conn:
            cursor = conn.execute(
                "DELETE FROM messages INDEXED BY messages_session"
                " WHERE queue = ? AND session_id = ? AND dlq = 0",
                (queue, session_id),
            )
        return cursor.rowcount

    def count(self, queue: str, *, sub_queue: Literal["deadletter"] | None = None) -> int:
        """Exact at once (Service Bus's counts lag by seconds); sweeps what is due first."""
        bus = self._file
        options = bus._queue(queue)
        now = bus.now()
        if bus._sweepable(bus._conn(), options, now):
            with bus._write() as conn:
                bus._sweep(conn, options, now)
        row = (
            bus._conn()
            .execute(
                "SELECT COUNT(*) FROM messages WHERE queue = ? AND dlq = ?",
                (queue, int(sub_queue == "deadletter")),
            )
            .fetchone()
        )
        return int(row[0])

    def close(self) -> None:
        """Closes the file only if this admin opened it (a bus's file stays the bus's)."""
        if self._owned:
            self._file.close()
