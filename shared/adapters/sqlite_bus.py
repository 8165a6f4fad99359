"""The embedded Bus: queues with Service Bus semantics in one SQLite file.

Several threads and several processes (the control plane and the agents)
share the file. Every read-modify-write step runs in ``BEGIN IMMEDIATE``, so
SQLite's single writer serialises receivers and no message is delivered twice.

Model: each message row has ``visible_at``, the time from which it may be
delivered, which is its scheduled time, then its lock expiry while it is
locked. So "available" is one index range (``visible_at <= now``), and a lock
that expires needs no sweeper: the message simply becomes visible again.
A session message's lock is its session's lock (as in Service Bus): its
``visible_at`` follows the session lock on renewal and is reset on close.

Choices where Service Bus leaves room:

- Expired messages (``time_to_live_ms``) are dead-lettered with reason
  ``TTLExpiredException`` (Service Bus with ``dead_lettering_on_message_expiration``),
  not dropped, so a lost assignment stays visible. A locked message does not
  expire while its lock is held.
- Messages delivered ``max_delivery_count`` times whose lock lapsed are
  dead-lettered when the queue is next touched (receive, accept, count).
- ``renew_message_lock`` on a session receiver renews the session lock (a
  session message's lock is the session's).
- ``purge_session`` deletes every non-dead-lettered message of the session,
  scheduled and locked ones included.
- Naive datetimes are taken as UTC; ``application_properties`` must be JSON-serialisable.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from shared.adapters import doorbell
from shared.ports.bus import (
    DEFAULT_LOCK_DURATION_MS,
    DEFAULT_MAX_DELIVERY_COUNT,
    MAX_DELIVERY_COUNT_EXCEEDED,
    TTL_EXPIRED,
    Bus,
    BusError,
    MessageLockLostError,
    NoSessionAvailable,
    OutgoingMessage,
    QueueNotFound,
    ReceivedMessage,
    Receiver,
    SessionLockedError,
    SessionLockLostError,
    SessionReceiver,
)

T = TypeVar("T")

_POLL_START_S = 0.002
_POLL_MAX_S = 0.025 if doorbell.SUPPORTED else 0.010
"""Longest pause between polls; with doorbells, polling is only the fallback."""
_BUSY_TIMEOUT_MS = 10_000
_BEGIN_RETRY_MAX_S = 0.002

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    requires_session INTEGER NOT NULL,
    max_delivery_count INTEGER NOT NULL,
    lock_duration_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    dlq INTEGER NOT NULL DEFAULT 0,
    session_id TEXT,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    subject TEXT,
    content_type TEXT,
    properties TEXT,
    enqueued_at REAL NOT NULL,
    scheduled_at REAL,
    expires_at REAL,
    visible_at REAL NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lock_token TEXT,
    dl_reason TEXT,
    dl_description TEXT
);
-- receive: first visible message, O(log n)
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, dlq, visible_at, seq);
-- session receive: the session's messages in sequence order
CREATE INDEX IF NOT EXISTS messages_session ON messages (queue, session_id, seq) WHERE dlq = 0;
-- sweeps: lapsed locks (max deliveries) and expiring messages
CREATE INDEX IF NOT EXISTS messages_locked ON messages (queue, visible_at)
    WHERE dlq = 0 AND lock_token IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_expiring ON messages (queue, expires_at)
    WHERE dlq = 0 AND expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS sessions (
    queue TEXT NOT NULL,
    session_id TEXT NOT NULL,
    holder TEXT,
    locked_until REAL NOT NULL DEFAULT 0,
    state BLOB,
    PRIMARY KEY (queue, session_id)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "seq, session_id, message_id, body, subject, content_type, properties, enqueued_at,"
    " scheduled_at, expires_at, delivery_count, dl_reason, dl_description"
)


@dataclass(frozen=True)
class _QueueOptions:
    name: str
    requires_session: bool
    max_delivery_count: int
    lock_duration_s: float


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _ts(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


class SqliteBus(Bus):
    """Service Bus queues in a SQLite file (WAL), shared by threads and processes."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._queues: dict[str, _QueueOptions] = {}
        # In-process waiters wake at once on a local send; other processes are polled.
        self._changed = threading.Condition()
        self._generation = 0
        with self._write() as conn:  # not executescript: it would commit on its own
            for statement in [*_SCHEMA.split(";"), doorbell.SCHEMA]:
                if statement.strip():
                    conn.execute(statement)
        # ...and other processes' waiters are woken by ringing their doorbells.
        self._doorbell = doorbell.Doorbell(
            str(self.path), read=self._read_rows, write=self._write_one, on_ring=self._wake_local
        )

    # --- connections and transactions ------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """One connection per thread (and per process: a forked child opens its own)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        for attempt in range(50):  # switching to WAL can race another process creating the file
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._connections_lock:
            self._connections.append((os.getpid(), conn))
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front, so concurrent receivers serialise."""
        conn = self._conn()
        self._begin(conn)
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _begin(conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, retried every millisecond or two while another writer holds it.

        SQLite's own busy handler backs off to 25-100 ms sleeps, so a process that
        writes in a loop starves the others; short jittered retries share the lock.
        """
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
            delay = _BEGIN_RETRY_MAX_S / 8
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as error:
                    busy = getattr(error, "sqlite_errorcode", sqlite3.SQLITE_BUSY) & 0xFF
                    if busy != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                        raise
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, _BEGIN_RETRY_MAX_S)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")

    def _read_rows(self, sql: str) -> list[tuple[str]]:
        return self._conn().execute(sql).fetchall()

    def _write_one(self, sql: str, params: tuple[object, ...]) -> None:
        """One statement in a write transaction taken with the fair retry of :meth:`_begin`."""
        with self._write() as conn:
            conn.execute(sql, params)

    def _notify(self) -> None:
        """The queues changed: wake waiting receivers here and in other processes."""
        self._wake_local()
        self._doorbell.ring()

    def _wake_local(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _poll(self, attempt: Callable[[], T | None], max_wait_ms: int) -> T | None:
        """Retry ``attempt`` until it returns something or the wait is over.

        Wakes at once when this process or another (through its doorbell) changes
        the queues; otherwise polls from 2 ms backing off to ``_POLL_MAX_S``.
        """
        deadline = time.monotonic() + max(0, max_wait_ms) / 1000
        if max_wait_ms > 0:
            self._doorbell.listen()
        interval = _POLL_START_S
        while True:
            seen = self._generation
            result = attempt()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self._changed:
                if self._generation == seen:
                    self._changed.wait(min(interval, remaining))
            interval = min(interval * 2, _POLL_MAX_S)

    def now(self) -> float:
        return self._clock()

    # --- queues -------------------------------------------------------------

    def _queue(self, name: str) -> _QueueOptions:
        """Queue options; cached once seen (declarations never change them)."""
        options = self._queues.get(name)
        if options is None:
            row = (
                self._conn()
                .execute(
                    "SELECT requires_session, max_delivery_count, lock_duration_ms"
                    " FROM queues WHERE name = ?",
                    (name,),
                )
                .fetchone()
            )
            if row is None:
                raise QueueNotFound(name)
            options = _QueueOptions(name, bool(row[0]), row[1], row[2] / 1000)
            self._queues[name] = options
        return options

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
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO queues VALUES (?, ?, ?, ?)",
                (name, int(requires_session), max_delivery_count, lock_duration_ms),
            )

    def _sweep(self, conn: sqlite3.Connection, queue: _QueueOptions, now: float) -> None:
        """Dead-letter what may not be delivered again: expired, or out of deliveries."""
        conn.execute(
            "UPDATE messages INDEXED BY messages_expiring"
            " SET dlq = 1, dl_reason = ?, lock_token = NULL, visible_at = ?"
            " WHERE queue = ? AND dlq = 0 AND expires_at IS NOT NULL AND expires_at <= ?"
            " AND visible_at <= ?",
            (TTL_EXPIRED, now, queue.name, now, now),
        )
        conn.execute(
            "UPDATE messages INDEXED BY messages_locked"
            " SET dlq = 1, dl_reason = ?, lock_token = NULL, visible_at = ?"
            " WHERE queue = ? AND dlq = 0 AND lock_token IS NOT NULL AND visible_at <= ?"
            " AND delivery_count >= ?",
            (MAX_DELIVERY_COUNT_EXCEEDED, now, queue.name, now, queue.max_delivery_count),
        )

    def _sweepable(self, conn: sqlite3.Connection, queue: _QueueOptions, now: float) -> bool:
        """Whether :meth:`_sweep` has work, checked without taking the write lock."""
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_locked"
            " WHERE queue = ? AND dlq = 0 AND lock_token IS NOT NULL AND visible_at <= ?"
            " AND delivery_count >= ?) OR EXISTS (SELECT 1 FROM messages"
            " INDEXED BY messages_expiring WHERE queue = ? AND dlq = 0"
            " AND expires_at IS NOT NULL AND expires_at <= ? AND visible_at <= ?)",
            (queue.name, now, queue.max_delivery_count, queue.name, now, now),
        ).fetchone()
        return bool(row[0])

    # --- sending --------------------------------------------------------------

    def send(self, queue: str, messages: OutgoingMessage | Sequence[OutgoingMessage]) -> None:
        """Send one message or a batch in one transaction (all or none)."""
        options = self._queue(queue)
        batch = [messages] if isinstance(messages, OutgoingMessage) else list(messages)
        if options.requires_session and any(m.session_id is None for m in batch):
            raise ValueError(f"queue {queue!r} requires a session id on every message")
        now = self.now()
        rows = []
        for m in batch:
            scheduled = None if m.scheduled_enqueue_time is None else _ts(m.scheduled_enqueue_time)
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
        self._notify()

    # --- receivers --------------------------------------------------------------

    def get_receiver(
        self, queue: str, *, sub_queue: Literal["deadletter"] | None = None
    ) -> Receiver:
        options = self._queue(queue)
        if sub_queue is None and options.requires_session:
            raise ValueError(f"queue {queue!r} requires sessions: use get_session_receiver")
        return _SqliteReceiver(self, options, dead_letter=sub_queue == "deadletter")

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
            return _SqliteSessionReceiver(self, options, session_id, holder, locked_until)

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
        return _SqliteSessionReceiver(self, options, found[0], holder, found[1])

    def _accept(self, options: _QueueOptions, session_id: str, holder: str) -> float | None:
        now = self.now()
        with self._write() as conn:
            self._sweep(conn, options, now)
            return self._lock_session(conn, options, session_id, holder, now)

    def _lock_session(
        self,
        conn: sqlite3.Connection,
        options: _QueueOptions,
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

    # --- administration ---------------------------------------------------------

    def purge_session(self, queue: str, session_id: str) -> int:
        self._queue(queue)
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM messages INDEXED BY messages_session"
                " WHERE queue = ? AND session_id = ? AND dlq = 0",
                (queue, session_id),
            )
        return cursor.rowcount

    def count(self, queue: str, *, sub_queue: Literal["deadletter"] | None = None) -> int:
        options = self._queue(queue)
        now = self.now()
        if self._sweepable(self._conn(), options, now):
            with self._write() as conn:
                self._sweep(conn, options, now)
        row = (
            self._conn()
            .execute(
                "SELECT COUNT(*) FROM messages WHERE queue = ? AND dlq = ?",
                (queue, int(sub_queue == "deadletter")),
            )
            .fetchone()
        )
        return int(row[0])

    def close(self) -> None:
        """Close this process's connections (they are reopened if the bus is used again).

        Connections inherited through ``fork`` belong to the parent and are left alone.
        """
        self._doorbell.close()
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for pid, conn in connections:
            if pid == os.getpid():
                conn.close()
        self._local = threading.local()


class _SqliteReceiver(Receiver):
    """Peek-lock receiver of a queue without sessions, or of a queue's dead letters."""

    def __init__(self, bus: SqliteBus, options: _QueueOptions, *, dead_letter: bool) -> None:
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
            f"SELECT {_COLUMNS} FROM messages WHERE queue = ? AND dlq = ? AND visible_at <= ?"
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
            locked_until=_dt(locked_until),
            lock_token=token,
            scheduled_enqueue_time=_dt(scheduled_at),
            expires_at=_dt(expires_at),
            dead_letter_reason=dl_reason,
            dead_letter_error_description=dl_description,
        )

    @contextmanager
    def _settle(self, message: ReceivedMessage) -> Iterator[tuple[sqlite3.Connection, float, int]]:
        """A transaction in which ``message`` is still locked by this delivery.

        Yields the connection, the time, and the message's delivery count.
        """
        now = self._bus.now()
        with self._bus._write() as conn:
            self._check(conn, now)
            row = conn.execute(
                "SELECT delivery_count FROM messages WHERE seq = ? AND queue = ? AND dlq = ?"
                " AND lock_token = ? AND visible_at > ?",
                (message.sequence_number, self.queue, self._dlq, message.lock_token, now),
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


class _SqliteSessionReceiver(_SqliteReceiver, SessionReceiver):
    """Holds one session's lock (a row in ``sessions``) and receives its messages in order."""

    def __init__(
        self,
        bus: SqliteBus,
        options: _QueueOptions,
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
            f"SELECT {_COLUMNS} FROM messages INDEXED BY messages_session"
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
