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

``add_job`` is one transaction whatever the job's size, so the port's "visible only after
one final write" holds trivially: a crash at any point leaves nothing (SQLite rolls the
transaction back), and :meth:`SqliteStore.purge_unfinished_jobs` never finds anything.

Every document's size is checked as on Cosmos DB (``MAX_DOCUMENT_BYTES``, and
``MAX_BATCH_BYTES`` per ``commit``), so what works here also fits there.

The store is cut by what each part does: :mod:`~shared.adapters.sqlite_schema` (tables,
indexes, write statements), :mod:`~shared.adapters.sqlite_rows` (records to rows and back),
:mod:`~shared.adapters.sqlite_connection` (connections, transactions, schema creation),
:mod:`~shared.adapters.sqlite_jobs` (jobs, tasks, ranges), :mod:`~shared.adapters.sqlite_keys`
(idempotency keys) and this module (nodes, node groups, meta documents, tokens).

Etags are random; one write transaction gives all documents it writes the
same fresh etag (an etag is only ever compared with the same document's
previous one, so sharing it is safe, and it saves a uuid per task when a
100,000-task job is added).
"""

from __future__ import annotations

import sqlite3

from shared.adapters.sqlite_jobs import SqliteJobs
from shared.adapters.sqlite_keys import SqliteKeys
from shared.adapters.sqlite_rows import _load, _new_etag, _row_exists, _sized_doc, _stale
from shared.domain.access import role_conflict
from shared.domain.cluster import Meta, Node, NodeGroup, Principal
from shared.domain.records import Record
from shared.errors import Conflict, NotFound
from shared.ports.store import Store


class SqliteStore(SqliteJobs, SqliteKeys, Store):
    """The Store port on one SQLite file (created with its schema on first open)."""

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
        self._delete("nodes", "node", node.name, node.etag)

    # --- node groups ------------------------------------------------------

    def list_groups(self) -> list[NodeGroup]:
        rows = self._con().execute("SELECT doc, etag FROM groups ORDER BY name")
        return [_load(NodeGroup, row) for row in rows]

    def put_group(self, group: NodeGroup) -> None:
        self._put("groups", "node group", group.name, group, folded=True)

    def delete_group(self, group: NodeGroup) -> None:
        self._delete("groups", "node group", group.name, group.etag)

    def _delete(self, table: str, kind: str, name: str, etag: str | None) -> None:
        """Delete one named document as read (etag must match): NotFound if it is gone,
        Conflict if it changed since."""
        with self._transaction() as con:
            cur = con.execute(f"DELETE FROM {table} WHERE name = ? AND etag = ?", (name, etag))
            if cur.rowcount != 1:
                if not _row_exists(con, f"SELECT 1 FROM {table} WHERE name = ?", (name,)):
                    raise NotFound(f"{kind} {name!r} does not exist")
                raise _stale(con, f"{kind} {name!r}", f"{table} WHERE name = ?", (name,), etag)

    def _put(
        self, table: str, kind: str, name: str, record: Record, *, folded: bool = False
    ) -> None:
        """Create (etag None) or replace (etag must match) one named document. ``folded``:
        names match whatever the case (node groups), so a create is refused if a name of
        another spelling exists; the check is inside the write transaction, which holds the
        database's write lock, so two spellings created at once cannot both pass it."""
        etag = _new_etag()
        doc = _sized_doc(record)
        with self._transaction() as con:
            if record.etag is None:
                if folded:
                    _refuse_other_spelling(con, table, kind, name)
                try:
                    con.execute(
                        f"INSERT INTO {table} (name, doc, etag) VALUES (?, ?, ?)",
                        (name, doc, etag),
                    )
                except sqlite3.IntegrityError:
                    raise Conflict(
                        f"{kind} {name!r} already exists: read it and replace that copy"
                    ) from None
            else:
                cur = con.execute(
                    f"UPDATE {table} SET doc = ?, etag = ? WHERE name = ? AND etag = ?",
                    (doc, etag, name, record.etag),
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
        """The user's role is that of its tokens: checked inside the write transaction (it
        holds the database's write lock), so two adds of one name with different roles
        cannot both pass the check."""
        with self._transaction() as con:
            roles = con.execute(
                "SELECT DISTINCT json_extract(doc, '$.role') FROM tokens "
                "WHERE json_extract(doc, '$.name') = ?",
                (principal.name,),
            ).fetchall()
            for (role,) in roles:
                if role != principal.role:
                    raise role_conflict(principal.name, role, principal.role)
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

    def list_tokens(self) -> list[tuple[str, Principal]]:
        rows = self._con().execute("SELECT sha256, doc FROM tokens ORDER BY sha256").fetchall()
        return [(str(r[0]), Principal.model_validate_json(r[1])) for r in rows]

    def remove_token(self, token_sha256: str) -> bool:
        with self._transaction() as con:
            gone = con.execute("DELETE FROM tokens WHERE sha256 = ?", (token_sha256,))
            return gone.rowcount > 0


def _refuse_other_spelling(con: sqlite3.Connection, table: str, kind: str, name: str) -> None:
    """Conflict if ``table`` holds ``name`` in another case (Python's casefold, as Cosmos
    DB's adapter compares: SQLite's NOCASE folds ASCII only). A table of a few rows."""
    folded = name.casefold()
    for (other,) in con.execute(f"SELECT name FROM {table}"):
        if other != name and str(other).casefold() == folded:
            raise Conflict(
                f"{kind} {name!r} already exists as {other!r} (names match whatever the "
                "case): read it and replace that copy"
            )
