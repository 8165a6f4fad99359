"""The embedded Store's SQLite schema: its tables, indexes and write statements.

Spelled once here so the store's queries and its schema cannot drift apart; see
:mod:`shared.adapters.sqlite_store` for how the store uses them.
"""

from __future__ import annotations

from shared.domain.states import TaskState

BUSY_TIMEOUT_S = 10.0
"""How long a write waits for another writer (thread or process) before failing."""

SCHEMA_VERSION = 2
"""Kept in ``PRAGMA user_version``; a file written by newer code is refused."""

_QUEUED = TaskState.QUEUED.value
_ACTIVE = (TaskState.DISPATCHING.value, TaskState.RUNNING.value)

# The partial indexes' WHERE clauses; a query can use such an index only if its
# own WHERE clause repeats the term literally, so both are spelled once, here.
_QUEUED_WHERE = f"state = '{_QUEUED}'"
_ACTIVE_WHERE = f"state IN ('{_ACTIVE[0]}', '{_ACTIVE[1]}')"

JOB_OWNER = "json_extract(doc, '$.owner')"
"""A job's owner, as the ``jobs_by_owner`` index keys it: an index on an expression serves
only queries that repeat it literally. An index on the document rather than a column of
its own, so a file written before it gets it on its next open (``CREATE INDEX IF NOT
EXISTS`` below) with no column to fill in, and older code can still write that file."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id          INTEGER PRIMARY KEY,
        state       TEXT    NOT NULL,
        submit_time INTEGER NOT NULL,  -- microseconds since the epoch, UTC
        doc         TEXT    NOT NULL,
        etag        TEXT    NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id)",
    # `hpc job list --owner`: one user's jobs, newest first, read from this index alone.
    f"CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs ({JOB_OWNER}, id)",
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
    # Sweeps stored as ranges; `open` is 1 while tasks are still to be created from one.
    """CREATE TABLE IF NOT EXISTS ranges (
        job_id      INTEGER NOT NULL,
        first_id    INTEGER NOT NULL,
        open        INTEGER NOT NULL,
        priority    INTEGER NOT NULL,
        submit_time INTEGER NOT NULL,  -- microseconds since the epoch, UTC
        doc         TEXT    NOT NULL,
        etag        TEXT    NOT NULL,
        PRIMARY KEY (job_id, first_id)
    )""",
    """CREATE INDEX IF NOT EXISTS ranges_open
        ON ranges (priority DESC, submit_time, job_id, first_id) WHERE open = 1""",
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
    # Idempotency keys (shared.domain.idempotency), per owner; `expires` (microseconds since
    # the epoch) is what the lazy deletion of expired rows scans, through its index.
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        owner   TEXT    NOT NULL,
        key     TEXT    NOT NULL,
        expires INTEGER NOT NULL,
        doc     TEXT    NOT NULL,
        etag    TEXT    NOT NULL,
        PRIMARY KEY (owner, key)
    )""",
    "CREATE INDEX IF NOT EXISTS idempotency_keys_by_expiry ON idempotency_keys (expires)",
    """CREATE TABLE IF NOT EXISTS counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO counters (name, value) VALUES ('job_id', 0)",
)

_EXCLUDE = "AND job_id NOT IN (SELECT value FROM json_each(?))"
"""Leaves out the jobs of one JSON-array parameter (any number of them, one parameter)."""

_TASK_COLUMNS = "job_id, id, state, priority, submit_time, node, doc, etag"
_INSERT_TASK = f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_UPDATE_TASK = """UPDATE tasks SET state = ?, priority = ?, submit_time = ?, node = ?, doc = ?, etag = ?
    WHERE job_id = ? AND id = ? AND etag = ?"""
_RANGE_COLUMNS = "job_id, first_id, open, priority, submit_time, doc, etag"
_INSERT_RANGE = f"INSERT INTO ranges ({_RANGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_UPDATE_RANGE = """UPDATE ranges SET open = ?, priority = ?, submit_time = ?, doc = ?, etag = ?
    WHERE job_id = ? AND first_id = ? AND etag = ?"""
_INSERT_JOB = "INSERT INTO jobs (id, state, submit_time, doc, etag) VALUES (?, ?, ?, ?, ?)"
_UPDATE_JOB = """UPDATE jobs SET state = ?, submit_time = ?, doc = ?, etag = ?
    WHERE id = ? AND etag = ?"""
