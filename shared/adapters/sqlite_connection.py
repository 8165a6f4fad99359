"""The embedded Store's connections, write transactions and schema creation.

One connection per thread (reopened after a fork), one ``BEGIN IMMEDIATE``
transaction per write; the concurrency model is described in
:mod:`shared.adapters.sqlite_store`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.adapters.sqlite_rows import _doc, _new_etag, _row_exists
from shared.adapters.sqlite_schema import _SCHEMA, BUSY_TIMEOUT_S, SCHEMA_VERSION
from shared.domain.cluster import DEFAULT_GROUPS


def create_private(path: Path) -> None:
    """Create the database file readable by its owner alone (0600) if it does not exist:
    SQLite gives its -wal and -shm files the same mode, and the cluster's state (tokens'
    digests, every job's commands and env, the bus's messages) is not other users' to read.
    An existing file keeps its mode."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class SqliteConnection:
    """One SQLite file's connections and transactions (created with its schema on first open)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create_private(self.path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._forked_away: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._create_schema()

    # --- connections and transactions -------------------------------------

    def _con(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use; reopened after a fork)."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None and self._pid == os.getpid():
            return con
        return self._open()

    def _open(self) -> sqlite3.Connection:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child must not use (or close) its parent's connections.
                self._forked_away = list(self._connections.values())
                self._connections = {}
                self._pid = os.getpid()
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()
            # isolation_level=None: no implicit transactions; we BEGIN ourselves.
            # check_same_thread=False only so that close() can close every thread's
            # connection; each connection is still used by its own thread alone.
            con = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            self._connections[threading.current_thread()] = con
            self._local.con = con
            return con

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the body returns, rolled back if it raises."""
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    def _create_schema(self) -> None:
        with self._transaction() as con:
            (version,) = con.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has store schema {version}, newer than this code's "
                    f"{SCHEMA_VERSION}: upgrade HybridHPC or use another HPC_HOME"
                )
            for statement in _SCHEMA:
                con.execute(statement)
            etag = _new_etag()
            con.executemany(
                "INSERT OR IGNORE INTO groups (name, doc, etag) VALUES (?, ?, ?)",
                [(g.name, _doc(g), etag) for g in DEFAULT_GROUPS],
            )
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close every thread's connection; the store reopens lazily if used again."""
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
            self._local = threading.local()
        for con in connections:
            con.close()

    # --- helpers ------------------------------------------------------------

    def _exists(self, sql: str, params: tuple) -> bool:
        return _row_exists(self._con(), sql, params)
