"""Records to SQLite rows and back, and the Conflict a refused write raises.

The stored JSON is the API's camelCase document without its etag (the etag is a column).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from shared.domain.models import Task
from shared.domain.records import Record
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict
from shared.ports.store import check_size, stored_size

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

R = TypeVar("R", bound=Record)


def _new_etag() -> str:
    return uuid.uuid4().hex


def _doc(record: Record) -> str:
    """The stored JSON: the API's camelCase document without its etag (kept in a column)."""
    return record.model_dump_json(by_alias=True, exclude={"etag"})


def _sized_doc(record: Record) -> str:
    """:func:`_doc`, refused (ValueError) over the port's MAX_DOCUMENT_BYTES."""
    doc = _doc(record)
    # stored_size's measure, from the text already made (it is the same JSON).
    size = len(doc) if doc.isascii() else stored_size(record)
    check_size(record, size)
    return doc


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
        _sized_doc(task),
        etag,
    )


def _range_row(r: TaskRange, etag: str) -> tuple:
    return (
        r.job_id,
        r.first_id,
        int(r.open),
        r.priority,
        _micros(r.template.submit_time),
        _sized_doc(r),
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
