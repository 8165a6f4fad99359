"""Receivers of the embedded bus: peek-lock on a queue or its dead letters, and sessions.

Model: each message row has ``visible_at``, the time from which it may be
delivered, which is its scheduled time, then its lock expiry while it is
locked. So "available" is one index range (``visible_at <= now``), and a lock
that expires needs no sweeper: the message simply becomes visible again.
A session message's lock is its session's lock (as in Service Bus): its
``visible_at`` follows the session lock on renewal and is reset on close.
A received message's ``handle`` is its row's sequence number and lock token.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from shared.adapters.sqlite_bus_file import COLUMNS, BusFile, QueueOptions, to_datetime
from shared.ports.bus import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    BusError,
    MessageLockLostError,
    ReceivedMessage,
    Receiver,
    SessionLockLostError,
    SessionReceiver,
)


class SqliteReceiver(Receiver):
    """Peek-lock receiver of a queue without sessions, or of a queue's dead letters."""

    def __init__(self, bus: BusFile, options: QueueOptions, *, dead_letter: bool) -> None:
        self._bus = bus
        self._options = options
        self._dlq = int(dead_letter)
        self._closed = False
        self.queue = options.name

    # Hooks the session receiver overrides.

    def _check(self, conn: sqlite3.Connection, now: float) -> None:
        if self._closed:
            raise BusError("receiver is closed")

    def _lock_until(self, now: float) -> float:
        return now + self._options.lock_duration_s

    def _any_visible(self, conn: sqlite3.Connection, now: float) -> bool:
        if self._dlq and self._bus._sweepable(conn, self._options, now):
            return True
        return (
            conn.execute(
                "SELECT 1 FROM messages WHERE queue = ? AND dlq = ? AND visible_at <= ? LIMIT 1",
                (self.queue, self._dlq, now),
            ).fetchone()
            is not None
        )

    def _select(self, conn: sqlite3.Connection, now: float, limit: int) -> list[tuple]:
        return conn.execute(
            f"SELECT {COLUMNS} FROM messages WHERE queue = ? AND dlq = ? AND visible_at <= ?"
            " ORDER BY visible_at, seq LIMIT ?",
            (self.queue, self._dlq, now, limit),
        ).fetchall()

    def receive(self, *, max_messages: int = 1, max_wait_ms: int = 0) -> list[ReceivedMessage]:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        return self._bus._poll(lambda: self._receive_now(max_messages), max_wait_ms) or []

    def _receive_now(self, limit: int) -> list[ReceivedMessage]:
        now = self._bus.now()
        reader = self._bus._conn()
        self._check(reader, now)
        if not self._any_visible(reader, now):  # idle polls stay read-only
            return []
        with self._bus._write() as conn:
            self._check(conn, now)
            self._bus._sweep(conn, self._options, now)
            rows = self._select(conn, now, limit)
            if not rows:
                return []
            locked_until = self._lock_until(now)
            tokens = [uuid.uuid4().hex for _ in rows]
            conn.executemany(
                "UPDATE messages SET lock_token = ?, visible_at = ?,"
                " delivery_count = delivery_count + 1 WHERE seq = ?",
                [(token, locked_until, row[0]) for token, row in zip(tokens, rows, strict=True)],
            )
        return [
            self._message(row, token, locked_until) for row, token in zip(rows, tokens, strict=True)
        ]

    def _message(self, row: tuple, token: str, locked_until: float) -> ReceivedMessage:
        (
            seq,
            session_id,
            message_id,
            body,
            subject,
            content_type,
            properties,
            enqueued_at,
            scheduled_at,
            expires_at,
            delivery_count,
            dl_reason,
            dl_description,
        ) = row
        return ReceivedMessage(
            body=bytes(body),
            message_id=message_id,
            sequence_number=seq,
            delivery_count=delivery_count + 1,
            enqueued_time=datetime.fromtimestamp(enqueued_at, UTC),
            session_id=session_id,
            subject=subject,
            content_type=content_type,
            application_properties=json.loads(properties) if properties else {},
            locked_until=to_datetime(locked_until),
            lock_token=token,
            scheduled_enqueue_time=to_datetime(scheduled_at),
            expires_at=to_datetime(expires_at),
            dead_letter_reason=dl_reason,
            dead_letter_error_description=dl_description,
            handle=(seq, token),
        )

    @contextmanager
    def _settle(self, message: ReceivedMessage) -> Iterator[tuple[sqlite3.Connection, float, int]]:
        """A transaction in which ``message`` is still locked by this delivery.

        Yields the connection, the time, and the message's delivery count.
        """
        handle = message.handle
        if not (isinstance(handle, tuple) and handle[0] == message.sequence_number):
            raise MessageLockLostError(f"message {message.message_id} was not received here")
        now = self._bus.now()
        with self._bus._write() as conn:
            self._check(conn, now)
            row = conn.execute(
                "SELECT delivery_count FROM messages WHERE seq = ? AND queue = ? AND dlq = ?"
                " AND lock_token = ? AND visible_at > ?",
                (handle[0], self.queue, self._dlq, handle[1], now),
            ).fetchone()
            if row is None:
                raise MessageLockLostError(
                    f"message {message.message_id} is not locked (lock expired or settled)"
                )
            yield conn, now, row[0]

    def complete(self, message: ReceivedMessage) -> None:
        with self._settle(message) as (conn, _now, _count):
            conn.execute("DELETE FROM messages WHERE seq = ?", (message.sequence_number,))

    def abandon(self, message: ReceivedMessage) -> None:
        with self._settle(message) as (conn, now, delivery_count):
            if not self._dlq and delivery_count >= self._options.max_delivery_count:
                self._to_dead_letter(conn, message, now, MAX_DELIVERY_COUNT_EXCEEDED, None)
            else:
                conn.execute(
                    "UPDATE messages SET lock_token = NULL, visible_at = ? WHERE seq = ?",
                    (now, message.sequence_number),
                )
        self._bus._notify()

    def dead_letter(
        self, message: ReceivedMessage, *, reason: str, error_description: str | None = None
    ) -> None:
        if self._dlq:
            raise BusError("the message is dead-lettered already")
        with self._settle(message) as (conn, now, _count):
            self._to_dead_letter(conn, message, now, reason, error_description)
        self._bus._notify()

    @staticmethod
    def _to_dead_letter(
        conn: sqlite3.Connection,
        message: ReceivedMessage,
        now: float,
        reason: str,
        description: str | None,
    ) -> None:
        conn.execute(
            "UPDATE messages SET dlq = 1, lock_token = NULL, visible_at = ?, dl_reason = ?,"
            " dl_description = ? WHERE seq = ?",
            (now, reason, description, message.sequence_number),
        )

    def renew_message_lock(self, message: ReceivedMessage) -> datetime:
        with self._settle(message) as (conn, now, _count):
            locked_until = now + self._options.lock_duration_s
            conn.execute(
                "UPDATE messages SET visible_at = ? WHERE seq = ?",
                (locked_until, message.sequence_number),
            )
        message.locked_until = datetime.fromtimestamp(locked_until, UTC)
        return message.locked_until

    def close(self) -> None:
        self._closed = True


class SqliteSessionReceiver(SqliteReceiver, SessionReceiver):
    """Holds one session's lock (a row in ``sessions``) and receives its messages in order."""

    def __init__(
        self,
        bus: BusFile,
        options: QueueOptions,
        session_id: str,
        holder: str,
        locked_until: float,
    ) -> None:
        super().__init__(bus, options, dead_letter=False)
        self.session_id = session_id
        self._holder = holder
        self._locked_until = locked_until

    @property
    def session_locked_until(self) -> datetime:
        return datetime.fromtimestamp(self._locked_until, UTC)

    def _check(self, conn: sqlite3.Connection, now: float) -> None:
        super()._check(conn, now)
        row = conn.execute(
            "SELECT holder, locked_until FROM sessions WHERE queue = ? AND session_id = ?",
            (self.queue, self.session_id),
        ).fetchone()
        if row is None or row[0] != self._holder or row[1] <= now:
            raise SessionLockLostError(f"lock of session {self.session_id!r} was lost")
        self._locked_until = row[1]

    def _lock_until(self, now: float) -> float:
        return self._locked_until  # a session message's lock is its session's lock

    def _any_visible(self, conn: sqlite3.Connection, now: float) -> bool:
        return (
            conn.execute(
                "SELECT 1 FROM messages INDEXED BY messages_session"
                " WHERE queue = ? AND session_id = ? AND dlq = 0"
                " AND visible_at <= ? LIMIT 1",
                (self.queue, self.session_id, now),
            ).fetchone()
            is not None
        )

    def _select(self, conn: sqlite3.Connection, now: float, limit: int) -> list[tuple]:
        return conn.execute(
            f"SELECT {COLUMNS} FROM messages INDEXED BY messages_session"
            " WHERE queue = ? AND session_id = ? AND dlq = 0"
            " AND visible_at <= ? ORDER BY seq LIMIT ?",
            (self.queue, self.session_id, now, limit),
        ).fetchall()

    def renew_session_lock(self) -> datetime:
        now = self._bus.now()
        with self._bus._write() as conn:
            self._check(conn, now)
            self._extend(conn, now)
        return self.session_locked_until

    def _extend(self, conn: sqlite3.Connection, now: float) -> None:
        """Move the session lock and, with it, the locks of the messages it holds."""
        locked_until = now + self._options.lock_duration_s
        conn.execute(
            "UPDATE sessions SET locked_until = ? WHERE queue = ? AND session_id = ?",
            (locked_until, self.queue, self.session_id),
        )
        # Only this holder can have live locks in the session.
        conn.execute(
            "UPDATE messages SET visible_at = ? WHERE queue = ? AND session_id = ? AND dlq = 0"
            " AND lock_token IS NOT NULL AND visible_at > ?",
            (locked_until, self.queue, self.session_id, now),
        )
        self._locked_until = locked_until

    def renew_message_lock(self, message: ReceivedMessage) -> datetime:
        """Renews the session lock, which is the message's lock."""
        with self._settle(message) as (conn, now, _count):
            self._extend(conn, now)
        message.locked_until = self.session_locked_until
        return message.locked_until

    def get_session_state(self) -> bytes | None:
        with self._bus._write() as conn:
            self._check(conn, self._bus.now())
            row = conn.execute(
                "SELECT state FROM sessions WHERE queue = ? AND session_id = ?",
                (self.queue, self.session_id),
            ).fetchone()
        return None if row[0] is None else bytes(row[0])

    def set_session_state(self, state: bytes | None) -> None:
        with self._bus._write() as conn:
            self._check(conn, self._bus.now())
            conn.execute(
                "UPDATE sessions SET state = ? WHERE queue = ? AND session_id = ?",
                (state, self.queue, self.session_id),
            )

    def close(self) -> None:
        """Release the session now: its locked messages become available again."""
        if self._closed:
            return
        self._closed = True
        now = self._bus.now()
        with self._bus._write() as conn:
            held = conn.execute(
                "SELECT 1 FROM sessions WHERE queue = ? AND session_id = ? AND holder = ?"
                " AND locked_until > ?",
                (self.queue, self.session_id, self._holder, now),
            ).fetchone()
            if held is None:
                return  # lost already; another receiver may hold it now
            conn.execute(
                "UPDATE messages SET visible_at = ? WHERE queue = ? AND session_id = ?"
                " AND dlq = 0 AND lock_token IS NOT NULL AND visible_at > ?",
                (now, self.queue, self.session_id, now),
            )
            conn.execute(
                "UPDATE sessions SET holder = NULL, locked_until = 0"
                " WHERE queue = ? AND session_id = ?",
                (self.queue, self.session_id),
            )
            conn.execute(
                "DELETE FROM sessions WHERE queue = ? AND session_id = ? AND state IS NULL",
                (self.queue, self.session_id),
            )
        self._bus._notify()
