"""The embedded Store's idempotency keys (the Store port's ``*_idempotency_key`` methods).

One row per (owner, key), the primary key: a create is an ``INSERT``, which SQLite refuses
for a key that exists, so of concurrent reservations one wins. Replaces and deletes check the
etag as every other write here. Expired rows are deleted lazily, by each create, through the
``expires`` index (no timer needed; a row past its time that is still there is forgotten by
the caller's rule anyway).
"""

from __future__ import annotations

import sqlite3

from shared.adapters.sqlite_connection import SqliteConnection
from shared.adapters.sqlite_rows import _load, _micros, _new_etag, _row_exists, _sized_doc, _stale
from shared.domain.idempotency import KeyRecord
from shared.errors import Conflict

_WHERE = "idempotency_keys WHERE owner = ? AND key = ?"


class SqliteKeys(SqliteConnection):
    """``get_idempotency_key``, ``put_idempotency_key``, ``delete_idempotency_key``."""

    def get_idempotency_key(self, owner: str, key: str) -> KeyRecord | None:
        row = self._con().execute(f"SELECT doc, etag FROM {_WHERE}", (owner, key)).fetchone()
        return None if row is None else _load(KeyRecord, row)

    def put_idempotency_key(self, record: KeyRecord) -> None:
        etag = _new_etag()
        doc = _sized_doc(record)  # ValueError over MAX_DOCUMENT_BYTES, as on Cosmos DB
        expires = _micros(record.expires)
        what = f"idempotency key {record.key!r} of {record.owner}"
        with self._transaction() as con:
            if record.etag is None:
                # lazily: the rows whose 24 h ended before this reservation began
                con.execute(
                    "DELETE FROM idempotency_keys WHERE expires <= ?",
                    (_micros(record.reserved_at),),
                )
                try:
                    con.execute(
                        "INSERT INTO idempotency_keys (owner, key, expires, doc, etag) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (record.owner, record.key, expires, doc, etag),
                    )
                except sqlite3.IntegrityError:
                    raise Conflict(f"{what} is already reserved; nothing was written") from None
            else:
                cur = con.execute(
                    "UPDATE idempotency_keys SET expires = ?, doc = ?, etag = ? "
                    "WHERE owner = ? AND key = ? AND etag = ?",
                    (expires, doc, etag, record.owner, record.key, record.etag),
                )
                if cur.rowcount != 1:
                    raise _stale(con, what, _WHERE, (record.owner, record.key), record.etag)
        record.etag = etag

    def delete_idempotency_key(self, record: KeyRecord) -> None:
        with self._transaction() as con:
            cur = con.execute(
                f"DELETE FROM {_WHERE} AND etag = ?", (record.owner, record.key, record.etag)
            )
            where = (record.owner, record.key)
            if cur.rowcount == 0 and _row_exists(con, f"SELECT 1 FROM {_WHERE}", where):
                raise Conflict(
                    f"idempotency key {record.key!r} of {record.owner} changed since it "
                    "was read; nothing was deleted"
                )
