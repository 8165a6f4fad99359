"""The embedded bus's file: schema, connections, transactions, sweeps and waiting.

Shared by the bus (:mod:`shared.adapters.sqlite_bus`), its receivers
(:mod:`shared.adapters.sqlite_bus_receivers`) and its administration
(:mod:`shared.adapters.sqlite_busadmin`). Several threads and processes share
the file; every read-modify-write step runs in ``BEGIN IMMEDIATE``, so SQLite's
single writer serialises receivers and no message is delivered twice.

Each thread has its own connection; a thread's connection is closed once the
thread has ended (checked whenever a thread opens one), so a long-lived process
that runs many short threads keeps as many open files as it has live threads.

Times (enqueue, schedule, lock, expiry) come from the injected ``clock``
(seconds since the epoch), so tests can drive locks and expiry by hand;
waits (``max_wait_ms``) are real time.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from shared.adapters import doorbell
from shared.adapters.sqlite_connection import create_private
from shared.ports.bus import MAX_DELIVERY_COUNT_EXCEEDED, TTL_EXPIRED, QueueNotFound

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

COLUMNS = (
    "seq, session_id, message_id, body, subject, content_type, properties, enqueued_at,"
    " scheduled_at, expires_at, delivery_count, dl_reason, dl_description"
)


@dataclass(frozen=True)
class QueueOptions:
    """A declared queue's options (fixed at declaration)."""

    name: str
    requires_session: bool
    max_delivery_count: int
    lock_duration_s: float


def to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def to_timestamp(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


class BusFile:
    """One bus file as seen by one process: per-thread connections, fair write
    transactions, queue options, sweeps, and waits woken by local and remote changes."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create_private(self.path)
        self._clock = clock
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._connections_lock = threading.Lock()
        self._pid = os.getpid()
        self._queues: dict[str, QueueOptions] = {}
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
        """This thread's connection (and this process's: a forked child opens its own)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        return self._open()

    def _open(self) -> sqlite3.Connection:
        with self._connections_lock:
            if self._pid != os.getpid():
                # A forked child must not use (or close) its parent's connections.
                self._connections, self._pid = {}, os.getpid()
            # Threads that ended cannot use their connections again: close them now.
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()
        conn = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,  # only so that another thread can close it
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        for attempt in range(50):  # switching to WAL can race another process creating the file
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    conn.close()
                    raise
                time.sleep(0.01)
        conn.execute("PRAGMA synchronous = NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._connections_lock:
            self._connections[threading.current_thread()] = conn
        return conn

    def open_connections(self) -> int:
        """How many connections this process holds on the file (one per live thread that used it)."""
        with self._connections_lock:
            return len(self._connections) if self._pid == os.getpid() else 0

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

    def _queue(self, name: str) -> QueueOptions:
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
            options = QueueOptions(name, bool(row[0]), row[1], row[2] / 1000)
            self._queues[name] = options
        return options

    def _sweep(self, conn: sqlite3.Connection, queue: QueueOptions, now: float) -> None:
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

    def _sweepable(self, conn: sqlite3.Connection, queue: QueueOptions, now: float) -> bool:
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
    def close(self) -> None:
        """Close this process's connections (they are reopened if the bus is used again).

        Connections inherited through ``fork`` belong to the parent and are left alone.
        """
        self._doorbell.close()
        with self._connections_lock:
            connections = list(self._connections.values()) if self._pid == os.getpid() else []
            self._connections = {}
            self._local = threading.local()
        for conn in connections:
            conn.close()
