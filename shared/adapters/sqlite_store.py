"""The embedded Store: one SQLite file, safe for several threads and processes.

Documents are kept as JSON (the same camelCase JSON the API speaks), next to
the few columns that queries filter or sort on. Those columns are written
from the document on every write, so they can never disagree with it.

Concurrency:

- WAL mode, so readers never block the writer and the writer never blocks
  readers; ``synchronous=NORMAL`` (durable across a process crash, may lose
  the last commits on power loss; about 40,000 commits/s here).
- One connection per thread (``sqlite3`` connections must not be shared);
  several processes open the same file each with their own ``SqliteStore``.
- Every write is one ``BEGIN IMMEDIATE`` transaction: it takes the write lock
  up front (waiting up to :data:`BUSY_TIMEOUT_S` for another writer), checks
  each etag with ``UPDATE ... WHERE etag = ?`` and rolls everything back on
  the first mismatch, which is what makes ``commit`` all-or-nothing.

Etags are random; one write transaction gives all documents it writes the
same fresh etag (an etag is only ever compared with the same document's
previous one, so sharing it is safe, and it saves a uuid per task when a
100,000-task job is added).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from shared.domain.models import (
    DEFAULT_GROUPS,
    Job,
    Meta,
    Node,
    NodeGroup,
    Principal,
    Record,
    Task,
)
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, NotFound
from shared.ports.store import Store, check_batch

BUSY_TIMEOUT_S = 10.0
"""How long a write waits for another writer (thread or process) before failing."""

SCHEMA_VERSION = 1
"""Kept in ``PRAGMA user_version``; a file written by newer code is refused."""

_QUEUED = TaskState.QUEUED.value
_ACTIVE = (TaskState.DISPATCHING.value, TaskState.RUNNING.value)

# The partial indexes' WHERE clauses; a query can use such an index only if its
# own WHERE clause repeats the term literally, so both are spelled once, here.
_QUEUED_WHERE = f"state = '{_QUEUED}'"
_ACTIVE_WHERE = f"state IN ('{_ACTIVE[0]}', '{_ACTIVE[1]}')"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id          INTEGER PRIMARY KEY,
        state       TEXT    NOT NULL,
        submit_time INTEGER NOT NULL,  -- microseconds since the epoch, UTC
        doc         TEXT    NOT NULL,
        etag        TEXT    NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id)",
    """CREATE TABLE IF NOT EXISTS tasks (
        job_id      INTEGER NOT NULL,
        id          INTEGER NOT NULL,
        state       TEXT    NOT NULL,
        priority    INTEGER NOT NULL,
        submit_time INTEGER NOT NULL,  -- microseconds since the epoch, UTC
        node        TEXT,
        doc         TEXT    NOT NULL,
        etag        TEXT    NOT NULL,
        PRIMARY KEY (job_id, id)
    )""",
    # Scheduling order over queued tasks only: queued_tasks(limit) reads the
    # first `limit` entries of this index and stops.
    f"""CREATE INDEX IF NOT EXISTS tasks_queued
        ON tasks (priority DESC, submit_time, job_id, id) WHERE {_QUEUED_WHERE}""",
    # Tasks that hold cores, by node: small (bounded by the cluster's cores).
    f"""CREATE INDEX IF NOT EXISTS tasks_active
        ON tasks (node, job_id, id) WHERE {_ACTIVE_WHERE}""",
    """CREATE TABLE IF NOT EXISTS nodes (
        name TEXT PRIMARY KEY,
        doc  TEXT NOT NULL,
        etag TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS groups (
        name TEXT PRIMARY KEY,
        doc  TEXT NOT NULL,
        etag TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS meta (
        name TEXT PRIMARY KEY,
        doc  TEXT NOT NULL,
        etag TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tokens (
        sha256 TEXT PRIMARY KEY,
        doc    TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('job_id', 0)",
)

_TASK_COLUMNS = "job_id, id, state, priority, submit_time, node, doc, etag"
_INSERT_TASK = f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_UPDATE_TASK = """UPDATE tasks SET state = ?, priority = ?, submit_time = ?, node = ?, doc = ?, etag = ?
    WHERE job_id = ? AND id = ? AND etag = ?"""
_INSERT_JOB = "INSERT INTO jobs (id, state, submit_time, doc, etag) VALUES (?, ?, ?, ?, ?)"
_UPDATE_JOB = """UPDATE jobs SET state = ?, submit_time = ?, doc = ?, etag = ?
    WHERE id = ? AND etag = ?"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

R = TypeVar("R", bound=Record)


class SqliteStore(Store):
    """The Store port on one SQLite file (created with its schema on first open)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
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

    # --- jobs and tasks -------------------------------------------------

    def next_job_id(self) -> int:
        with self._transaction() as con:
            rows = con.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'job_id' RETURNING value"
            ).fetchall()
        return int(rows[0][0])

    def add_job(self, job: Job, tasks: Sequence[Task]) -> None:
        if len({t.id for t in tasks}) != len(tasks):
            raise ValueError(f"job {job.id}: task ids must be unique")
        etag = _new_etag()

        def task_rows() -> Iterator[tuple]:
            for task in tasks:
                if task.job_id != job.id:
                    raise ValueError(f"task {task.key} does not belong to job {job.id}")
                yield _task_row(task, etag)

        try:
            with self._transaction() as con:
                con.executemany(_INSERT_TASK, task_rows())
                # The job last, as the port asks (no difference inside one transaction).
                con.execute(
                    _INSERT_JOB,
                    (job.id, job.state.value, _micros(job.submit_time), _doc(job), etag),
                )
        except sqlite3.IntegrityError:
            if self._exists("SELECT 1 FROM jobs WHERE id = ?", (job.id,)):
                raise Conflict(f"job {job.id} already exists") from None
            raise Conflict(f"tasks of job {job.id} are already stored") from None
        job.etag = etag
        for task in tasks:
            task.etag = etag

    def get_job(self, job_id: int) -> Job:
        row = self._con().execute("SELECT doc, etag FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        return _load(Job, row)

    def list_jobs(
        self, *, states: Collection[JobState] | None = None, limit: int = 100
    ) -> list[Job]:
        if limit <= 0 or (states is not None and not states):
            return []
        params: list[object]
        if states is None:
            sql, params = "SELECT doc, etag FROM jobs ORDER BY id DESC LIMIT ?", [limit]
        else:
            sql = (
                f"SELECT doc, etag FROM jobs WHERE state IN ({_marks(states)}) "
                "ORDER BY id DESC LIMIT ?"
            )
            params = [*(JobState(s).value for s in states), limit]
        return [_load(Job, row) for row in self._con().execute(sql, params)]

    def get_task(self, job_id: int, task_id: int) -> Task:
        row = (
            self._con()
            .execute("SELECT doc, etag FROM tasks WHERE job_id = ? AND id = ?", (job_id, task_id))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"task {job_id}.{task_id} does not exist")
        return _load(Task, row)

    def get_tasks(self, job_id: int, task_ids: Collection[int]) -> list[Task]:
        ids = sorted(set(task_ids))
        out: list[Task] = []
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[i : i + 500]
            rows = self._con().execute(
                f"SELECT doc, etag FROM tasks WHERE job_id = ? AND id IN ({_marks(chunk)}) ORDER BY id",
                [job_id, *chunk],
            )
            out += [_load(Task, row) for row in rows]
        return out

    def list_tasks(
        self,
        job_id: int,
        *,
        states: Collection[TaskState] | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> list[Task]:
        if limit <= 0 or (states is not None and not states):
            return []
        where = "job_id = ?"
        params: list[object] = [job_id]
        if states is not None:
            where += f" AND state IN ({_marks(states)})"
            params += [TaskState(s).value for s in states]
        sql = f"SELECT doc, etag FROM tasks WHERE {where} ORDER BY id LIMIT ? OFFSET ?"
        rows = self._con().execute(sql, [*params, limit, max(offset, 0)])
        return [_load(Task, row) for row in rows]

    def queued_tasks(self, *, limit: int) -> list[Task]:
        if limit <= 0:
            return []
        rows = self._con().execute(
            f"SELECT doc, etag FROM tasks WHERE {_QUEUED_WHERE} "
            "ORDER BY priority DESC, submit_time, job_id, id LIMIT ?",
            (limit,),
        )
        return [_load(Task, row) for row in rows]

    def active_tasks(self, *, node: str | None = None) -> list[Task]:
        sql = f"SELECT doc, etag FROM tasks WHERE {_ACTIVE_WHERE}"
        params: tuple = ()
        if node is not None:
            sql, params = sql + " AND node = ?", (node,)
        rows = self._con().execute(sql + " ORDER BY node, job_id, id", params)
        return [_load(Task, row) for row in rows]

    def commit(self, *, job: Job | None = None, tasks: Sequence[Task] = ()) -> None:
        if job is None and not tasks:
            return
        check_batch(job, tasks)
        etag = _new_etag()
        with self._transaction() as con:
            if job is not None:
                cur = con.execute(
                    _UPDATE_JOB,
                    (job.state.value, _micros(job.submit_time), _doc(job), etag, job.id, job.etag),
                )
                if cur.rowcount != 1:
                    raise _stale(con, f"job {job.id}", "jobs WHERE id = ?", (job.id,), job.etag)
            for task in tasks:
                cur = con.execute(
                    _UPDATE_TASK,
                    (
                        task.state.value,
                        task.priority,
                        _micros(task.submit_time),
                        task.node,
                        _doc(task),
                        etag,
                        task.job_id,
                        task.id,
                        task.etag,
                    ),
                )
                if cur.rowcount != 1:
                    raise _stale(
                        con,
                        f"task {task.key}",
                        "tasks WHERE job_id = ? AND id = ?",
                        (task.job_id, task.id),
                        task.etag,
                    )
        if job is not None:
            job.etag = etag
        for task in tasks:
            task.etag = etag

    # --- nodes ----------------------------------------------------------

    def get_node(self, name: str) -> Node:
        row = self._con().execute("SELECT doc, etag FROM nodes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"node {name!r} does not exist")
        return _load(Node, row)

    def list_nodes(self) -> list[Node]:
        rows = self._con().execute("SELECT doc, etag FROM nodes ORDER BY name")
        return [_load(Node, row) for row in rows]

    def put_node(self, node: Node) -> None:
        self._put("nodes", "node", node.name, node)

    def delete_node(self, node: Node) -> None:
        with self._transaction() as con:
            cur = con.execute(
                "DELETE FROM nodes WHERE name = ? AND etag = ?", (node.name, node.etag)
            )
            if cur.rowcount != 1:
                if not _row_exists(con, "SELECT 1 FROM nodes WHERE name = ?", (node.name,)):
                    raise NotFound(f"node {node.name!r} does not exist")
                raise _stale(
                    con, f"node {node.name!r}", "nodes WHERE name = ?", (node.name,), node.etag
                )

    # --- node groups ------------------------------------------------------

    def list_groups(self) -> list[NodeGroup]:
        rows = self._con().execute("SELECT doc, etag FROM groups ORDER BY name")
        return [_load(NodeGroup, row) for row in rows]

    def put_group(self, group: NodeGroup) -> None:
        self._put("groups", "node group", group.name, group)

    def _put(self, table: str, kind: str, name: str, record: Record) -> None:
        """Create (etag None) or replace (etag must match) one named document."""
        etag = _new_etag()
        with self._transaction() as con:
            if record.etag is None:
                try:
                    con.execute(
                        f"INSERT INTO {table} (name, doc, etag) VALUES (?, ?, ?)",
                        (name, _doc(record), etag),
                    )
                except sqlite3.IntegrityError:
                    raise Conflict(
                        f"{kind} {name!r} already exists: read it and replace that copy"
                    ) from None
            else:
                cur = con.execute(
                    f"UPDATE {table} SET doc = ?, etag = ? WHERE name = ? AND etag = ?",
                    (_doc(record), etag, name, record.etag),
                )
                if cur.rowcount != 1:
                    raise _stale(
                        con, f"{kind} {name!r}", f"{table} WHERE name = ?", (name,), record.etag
                    )
        record.etag = etag

    # --- meta -------------------------------------------------------------

    def get_meta(self, key: str) -> Meta:
        row = self._con().execute("SELECT doc, etag FROM meta WHERE name = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"meta document {key!r} does not exist")
        return _load(Meta, row)

    def put_meta(self, meta: Meta) -> None:
        self._put("meta", "meta document", meta.key, meta)

    # --- tokens -----------------------------------------------------------

    def add_token(self, token_sha256: str, principal: Principal) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO tokens (sha256, doc) VALUES (?, ?)",
                (token_sha256, principal.model_dump_json()),
            )

    def find_token(self, token_sha256: str) -> Principal | None:
        row = (
            self._con()
            .execute("SELECT doc FROM tokens WHERE sha256 = ?", (token_sha256,))
            .fetchone()
        )
        return None if row is None else Principal.model_validate_json(row[0])

    # --- helpers ------------------------------------------------------------

    def _exists(self, sql: str, params: tuple) -> bool:
        return _row_exists(self._con(), sql, params)


def _new_etag() -> str:
    return uuid.uuid4().hex


def _doc(record: Record) -> str:
    """The stored JSON: the API's camelCase document without its etag (kept in a column)."""
    return record.model_dump_json(by_alias=True, exclude={"etag"})


def _load(model: type[R], row: tuple[str, str]) -> R:
    """A fresh record from a (doc, etag) row: every read returns a new copy."""
    record = model.model_validate_json(row[0])
    record.etag = row[1]
    return record


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch: exact, and sorts like the datetimes (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _task_row(task: Task, etag: str) -> tuple:
    return (
        task.job_id,
        task.id,
        task.state.value,
        task.priority,
        _micros(task.submit_time),
        task.node,
        _doc(task),
        etag,
    )


def _marks(values: Collection[object]) -> str:
    return ", ".join("?" * len(values))


def _row_exists(con: sqlite3.Connection, sql: str, params: tuple) -> bool:
    return con.execute(sql, params).fetchone() is not None


def _stale(
    con: sqlite3.Connection, what: str, table_where: str, key: tuple, etag: str | None
) -> Conflict:
    """The Conflict for a write whose ``WHERE etag = ?`` matched nothing, saying why."""
    if not _row_exists(con, f"SELECT 1 FROM {table_where}", key):
        return Conflict(f"{what} does not exist (deleted, or never stored); nothing was written")
    if etag is None:
        return Conflict(
            f"{what} has no etag: only records read from the store can be written back; "
            "nothing was written"
        )
    return Conflict(
        f"{what} was changed by another writer since it was read (stale etag); "
        "nothing was written: read it again and retry"
    )
