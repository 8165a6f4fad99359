"""The ``index`` container's own requests: pointers read, created, written without ever
replacing a later period's, and deleted under their etags.

:class:`Pointers` is the container half of :class:`~shared.adapters.cosmos_index.CosmosIndex`
(which decides *which* pointers to write and when). On Cosmos DB several pointers of one
partition go in one transactional batch; on a server without batch (the stand-in) one
request each, on a small thread pool.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_index_docs as ix
from shared.adapters.cosmos_parts import Visibility
from shared.errors import Conflict


class Connection(Protocol):
    """What the index needs of the store's connection (``CosmosConnection`` is one);
    named here so that the index does not import the connection that builds it."""

    _jobs: ContainerProxy
    _visible: Visibility
    batch: bool

    def _hook(self, headers: Mapping[str, Any], _result: object = None) -> None: ...

    def _query(self, container: ContainerProxy, query: docs.Query) -> Iterator[dict[str, Any]]: ...

    def _read(self, container: ContainerProxy, doc_id: str, pk: int | str) -> dict | None: ...


log = logging.getLogger(__name__)

READERS = 8
"""Requests in flight at once when pointers or the records they name are read or written."""


class Pointers:
    """Requests to one store's ``index`` container."""

    def __init__(self, conn: Connection, container: ContainerProxy) -> None:
        self._conn = conn
        self._container = container
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _hook(self, *args: Any) -> None:
        self._conn._hook(*args)  # looked up each time: a test may count requests

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1:
            return [fn(i) for i in items]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="cosmos-index")
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _query(self, query: docs.Query) -> list[dict[str, Any]]:
        return list(self._conn._query(self._container, query))

    def _upsert(self, pointers: list[dict]) -> dict[tuple[str, str], str]:
        """Write pointers, but never over a pointer of a later period: a writer whose read
        is stale (its commit will fail) must not replace the pointer a newer version needs.
        The current pointers are read (one query per partition), then each is created or
        replaced under its etag; a race with another writer starts over (at most 3 times,
        then Conflict: nothing is committed yet, the use case retries). Their new etags."""
        for _ in range(3):
            existing: dict[tuple[str, str], dict] = {}
            by_pk: dict[str, list[str]] = defaultdict(list)
            for p in pointers:
                by_pk[p["pk"]].append(p["id"])
            for pk, ids in by_pk.items():
                for i in range(0, len(ids), 1000):
                    for e in self._query(ix.pointers(pk, ids[i : i + 1000])):
                        existing[(pk, e["id"])] = e
            ops: list[tuple[dict, str | None]] = []
            for p in pointers:
                stored = existing.get((p["pk"], p["id"]))
                if stored is None or not ix.later(stored, p):
                    ops.append((p, None if stored is None else str(stored["_etag"])))
            try:
                return self._apply(ops)
            except _Raced:
                continue
        raise Conflict("the index pointers of this commit keep changing under it; retry")

    def _apply(self, ops: list[tuple[dict, str | None]]) -> dict[tuple[str, str], str]:
        """Create (etag None) or replace under its etag each pointer: batches of 100 per
        partition on Cosmos DB, one request each on a server without batch."""
        etags: dict[tuple[str, str], str] = {}
        if self._conn.batch:
            by_pk: dict[str, list[tuple[dict, str | None]]] = defaultdict(list)
            for op in ops:
                by_pk[op[0]["pk"]].append(op)
            for pk, some in by_pk.items():
                for i in range(0, len(some), 100):
                    chunk = some[i : i + 100]
                    batch: list[tuple[Any, ...]] = [
                        ("create", (p,)) if etag is None
                        else ("replace", (p["id"], p), {"if_match_etag": etag})
                        for p, etag in chunk
                    ]  # fmt: skip
                    try:
                        results = self._container.execute_item_batch(
                            batch, partition_key=pk, response_hook=self._hook
                        )
                    except CosmosBatchOperationError as error:
                        if docs.batch_status(error) in (404, 409, 412):
                            raise _Raced from None
                        raise
                    for (p, _), res in zip(chunk, results, strict=True):
                        etags[(pk, p["id"])] = docs.result_etag(res)
            return etags
        lock = threading.Lock()
        raced = False

        def one(op: tuple[dict, str | None]) -> None:
            nonlocal raced
            p, etag = op
            try:
                if etag is None:
                    new = self._container.create_item(p, response_hook=self._hook)
                else:
                    new = self._container.replace_item(
                        p["id"], p, etag=etag, match_condition=MatchConditions.IfNotModified,
                        response_hook=self._hook,
                    )  # fmt: skip
            except CosmosHttpResponseError as error:
                if error.status_code in (404, 409, 412) or docs.is_missing(error):
                    raced = True
                    return
                raise
            with lock:
                etags[(p["pk"], p["id"])] = str(new["_etag"])

        self._map(one, ops)
        if raced:
            raise _Raced
        return etags

    def _create_all(self, pointers: list[dict]) -> dict[tuple[str, str], str]:
        """Create pointers: transactional batches of 100 per partition on Cosmos
        DB, one request each (in parallel) on a server without batch. Their new etags; a
        create of a pointer that exists raises :class:`Taken` with those written."""
        etags: dict[tuple[str, str], str] = {}
        if not pointers:
            return etags
        if self._conn.batch:
            by_pk: dict[str, list[dict]] = defaultdict(list)
            for p in pointers:
                by_pk[p["pk"]].append(p)
            for pk, some in by_pk.items():
                for i in range(0, len(some), 100):
                    chunk = some[i : i + 100]
                    try:
                        results = self._container.execute_item_batch(
                            [("create", (p,)) for p in chunk],
                            partition_key=pk,
                            response_hook=self._hook,
                        )
                    except CosmosBatchOperationError as error:
                        if docs.batch_status(error) == 409:
                            raise Taken(etags) from None
                        raise
                    for p, res in zip(chunk, results, strict=True):
                        etags[(pk, p["id"])] = docs.result_etag(res)
            return etags
        write = self._container.create_item
        lock = threading.Lock()
        taken = False

        def one(p: dict) -> None:
            nonlocal taken
            try:
                new = write(p, response_hook=self._hook)
            except CosmosHttpResponseError as error:
                if error.status_code != 409:
                    raise
                taken = True
                return
            with lock:
                etags[(p["pk"], p["id"])] = str(new["_etag"])

        self._map(one, pointers)
        if taken:
            raise Taken(etags)
        return etags

    def _drop(self, pk: str, pointer: dict) -> bool:
        """Delete a pointer under the etag it was read with; False if it changed or is gone."""
        try:
            self._container.delete_item(
                pointer["id"], partition_key=pk, etag=pointer["_etag"],
                match_condition=MatchConditions.IfNotModified, response_hook=self._hook,
            )  # fmt: skip
            return True
        except CosmosHttpResponseError as error:
            if error.status_code == 412 or docs.is_missing(error):
                return False
            raise

    def _drop_quietly(self, pk: str, pointer: dict) -> None:
        try:
            self._drop(pk, pointer)
        except CosmosHttpResponseError:
            log.exception("index: could not delete stale pointer %s/%s", pk, pointer["id"])

    def _replace(self, stale: dict, pointer: dict) -> bool:
        try:
            self._container.replace_item(
                stale["id"], pointer, etag=stale["_etag"],
                match_condition=MatchConditions.IfNotModified, response_hook=self._hook,
            )  # fmt: skip
            return True
        except CosmosHttpResponseError as error:
            if error.status_code != 412 and not docs.is_missing(error):
                raise
            return False

    def _create(self, pointer: dict) -> bool:
        try:
            self._container.create_item(pointer, response_hook=self._hook)
            return True
        except CosmosHttpResponseError as error:
            if error.status_code == 409:
                return False  # written meanwhile by a writer: it is newer than the scan
            raise


class _Raced(Exception):
    """Another writer changed a pointer between our read of it and our write."""


class Taken(Exception):
    """A pointer to create exists already (the job id is taken)."""

    def __init__(self, written: dict[tuple[str, str], str]) -> None:
        super().__init__("taken")
        self.written = written
