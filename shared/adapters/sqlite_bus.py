"""The embedded Bus: queues with Service Bus semantics in one SQLite file.

Several threads and several processes (the control plane and the agents)
share the file (:mod:`shared.adapters.sqlite_bus_file`); receivers are in
:mod:`shared.adapters.sqlite_bus_receivers`, administration (declare, count,
purge) in :mod:`shared.adapters.sqlite_busadmin`.

Choices where Service Bus leaves room:

- Expired messages (``time_to_live_ms``) are dead-lettered with reason
  ``TTLExpiredException`` (Service Bus with ``dead_lettering_on_message_expiration``),
  not dropped, so a lost assignment stays visible. A locked message does not
  expire while its lock is held.
- Messages delivered ``max_delivery_count`` times whose lock lapsed are
  dead-lettered when the queue is next touched (receive, accept, count).
- ``renew_message_lock`` on a session receiver renews the session lock (a
  session message's lock is the session's).
- Sizes are Service Bus Standard's: a message over 256 KB (as
  :meth:`OutgoingMessage.size_bytes` counts it) is refused, and a list is
  committed in batches within the byte and count budgets, like the Service
  Bus adapter's sends.
- Naive datetimes are taken as UTC; ``application_properties`` must be JSON-serialisable.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from typing import Literal

from shared.adapters.sqlite_bus_file import BusFile, QueueOptions, to_timestamp
from shared.adapters.sqlite_bus_receivers import SqliteReceiver, SqliteSessionReceiver
from shared.ports.bus import (
    Bus,
    NoSessionAvailable,
    OutgoingMessage,
    Receiver,
    SessionLockedError,
    SessionReceiver,
    check_sizes,
    split_batches,
)


class SqliteBus(BusFile, Bus):
    """Service Bus queues in a SQLite file (WAL), shared by threads and processes.

    ``clock`` (seconds since the epoch) times enqueues, schedules, locks and expiry."""

    # --- sending --------------------------------------------------------------

    def send(self, queue: str, messages: OutgoingMessage | Sequence[OutgoingMessage]) -> None:
        """Send one message or a list: checked whole first, then one transaction per batch."""
        options = self._queue(queue)
        batch = [messages] if isinstance(messages, OutgoingMessage) else list(messages)
        if options.requires_session and any(m.session_id is None for m in batch):
            raise ValueError(f"queue {queue!r} requires a session id on every message")
        check_sizes(batch)
        for part in split_batches(batch):
            self._send_batch(queue, part)
            self._notify()

    def _send_batch(self, queue: str, batch: list[OutgoingMessage]) -> None:
        now = self.now()
        rows = []
        for m in batch:
            scheduled = (
                None if m.scheduled_enqueue_time is None else to_timestamp(m.scheduled_enqueue_time)
            )
            ready = max(now, scheduled) if scheduled is not None else now
            expires = None if m.time_to_live_ms is None else ready + m.time_to_live_ms / 1000
            rows.append(
                (
                    queue,
                    m.session_id,
                    m.message_id or uuid.uuid4().hex,
                    m.body,
                    m.subject,
                    m.content_type,
                    json.dumps(m.application_properties) if m.application_properties else None,
                    ready,
                    scheduled,
                    expires,
                    ready,
                )
            )
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO messages (queue, session_id, message_id, body, subject,"
                " content_type, properties, enqueued_at, scheduled_at, expires_at, visible_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    # --- receivers --------------------------------------------------------------

    def get_receiver(
        self, queue: str, *, sub_queue: Literal["deadletter"] | None = None
    ) -> Receiver:
        options = self._queue(queue)
        if sub_queue is None and options.requires_session:
            raise ValueError(f"queue {queue!r} requires sessions: use get_session_receiver")
        return SqliteReceiver(self, options, dead_letter=sub_queue == "deadletter")

    def get_session_receiver(
        self, queue: str, *, session_id: str | None = None, max_wait_ms: int = 0
    ) -> SessionReceiver:
        options = self._queue(queue)
        if not options.requires_session:
            raise ValueError(f"queue {queue!r} is not session-enabled")
        holder = uuid.uuid4().hex
        if session_id is not None:
            locked_until = self._accept(options, session_id, holder)
            if locked_until is None:
                raise SessionLockedError(f"session {session_id!r} of {queue!r} is held")
            return SqliteSessionReceiver(self, options, session_id, holder, locked_until)

        def free_session(conn: sqlite3.Connection, now: float) -> tuple[str] | None:
            return conn.execute(
                "SELECT session_id FROM messages WHERE queue = ? AND dlq = 0"
                " AND visible_at <= ? AND session_id NOT IN (SELECT session_id FROM"
                " sessions WHERE queue = ? AND locked_until > ?)"
                " ORDER BY visible_at, seq LIMIT 1",
                (queue, now, queue, now),
            ).fetchone()

        def next_session() -> tuple[str, float] | None:
            now = self.now()
            if free_session(self._conn(), now) is None:  # idle polls stay read-only
                return None
            with self._write() as conn:
                self._sweep(conn, options, now)
                row = free_session(conn, now)
                if row is None:
                    return None
                locked_until = self._lock_session(conn, options, row[0], holder, now)
                assert locked_until is not None  # checked free in this transaction
                return row[0], locked_until

        found = self._poll(next_session, max_wait_ms)
        if found is None:
            raise NoSessionAvailable(f"no session of {queue!r} has messages and no holder")
        return SqliteSessionReceiver(self, options, found[0], holder, found[1])

    def _accept(self, options: QueueOptions, session_id: str, holder: str) -> float | None:
        now = self.now()
        with self._write() as conn:
            self._sweep(conn, options, now)
            return self._lock_session(conn, options, session_id, holder, now)

    def _lock_session(
        self,
        conn: sqlite3.Connection,
        options: QueueOptions,
        session_id: str,
        holder: str,
        now: float,
    ) -> float | None:
        """Take the session lock if nobody holds it; returns its expiry, or None if held."""
        locked_until = now + options.lock_duration_s
        cursor = conn.execute(
            "INSERT INTO sessions (queue, session_id, holder, locked_until) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (queue, session_id) DO UPDATE SET holder = excluded.holder,"
            " locked_until = excluded.locked_until WHERE sessions.locked_until <= ?",
            (options.name, session_id, holder, locked_until, now),
        )
        return locked_until if cursor.rowcount == 1 else None
