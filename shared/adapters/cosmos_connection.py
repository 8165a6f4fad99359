"""The Cosmos DB Store's plumbing: client, containers, reads, queries and RU accounting.

Opens (or, with data-plane roles only, just binds) the database and its four
containers (``jobs``, ``cluster``, ``index``: the pointers of the hot paths, and
``idempotency``: :mod:`shared.adapters.cosmos_keys`), detects
once per endpoint whether transactional batch works, and adds each response's ``x-ms-request-charge`` to ``request_charge``. See
:mod:`shared.adapters.cosmos_store` for the store as a whole.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_index_docs as ix
from shared.adapters import cosmos_parts as parts
from shared.adapters.cosmos_index import CosmosIndex
from shared.domain.cluster import DEFAULT_GROUPS

log = logging.getLogger(__name__)

_BATCH_SUPPORT: dict[str, bool] = {}
"""Endpoint -> whether it runs transactional batches (detected once per process)."""
_BATCH_LOCK = threading.Lock()


class CosmosConnection:
    """One Cosmos DB database's client and containers (created if missing)."""

    def __init__(
        self,
        endpoint: str,
        key: str = "",
        database: str = "hybridhpc",
        *,
        client: CosmosClient | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.request_charge = 0.0
        self._charge_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._visible = parts.Visibility(self._job_doc)
        self._client = client or _client(endpoint, key)
        try:
            db = self._client.create_database_if_not_exists(database)
            self._jobs = db.create_container_if_not_exists(
                docs.JOBS, PartitionKey(path="/jobId"), indexing_policy=docs.JOBS_INDEXING
            )
            self._cluster = db.create_container_if_not_exists(
                docs.CLUSTER, PartitionKey(path="/pk"), indexing_policy=docs.CLUSTER_INDEXING
            )
            index = db.create_container_if_not_exists(
                ix.INDEX, PartitionKey(path="/pk"), indexing_policy=ix.INDEX_INDEXING
            )
            self._keys = db.create_container_if_not_exists(
                docs.KEYS, PartitionKey(path="/pk"), indexing_policy=docs.KEYS_INDEXING,
                default_ttl=-1,  # on, with no default: each document's ttl says
            )  # fmt: skip
        except CosmosHttpResponseError as error:
            if error.status_code != 403:
                raise
            # Entra ID data-plane roles cannot create databases or containers: Bicep did.
            db = self._client.get_database_client(database)
            self._jobs = db.get_container_client(docs.JOBS)
            self._cluster = db.get_container_client(docs.CLUSTER)
            index = db.get_container_client(ix.INDEX)
            self._keys = db.get_container_client(docs.KEYS)
        self.database = db
        self.index = CosmosIndex(self, index)
        """The pointers of the hot paths (:mod:`shared.adapters.cosmos_index`)."""
        self._create_ignoring_conflict(
            {"id": docs.COUNTER_ID, "pk": docs.COUNTER_ID, "type": "counter", "value": 0}
        )
        self._create_default_groups()
        self.batch = self._detect_batch()

    # --- plumbing ---------------------------------------------------------

    def _hook(self, headers: Mapping[str, Any], _result: object = None) -> None:
        charge = headers.get("x-ms-request-charge")
        if charge:
            with self._charge_lock:
                self.request_charge += float(charge)

    def _create_ignoring_conflict(self, doc: dict[str, Any]) -> None:
        try:
            self._cluster.create_item(doc, response_hook=self._hook)
        except CosmosHttpResponseError as error:
            if error.status_code != 409:
                raise

    def _create_default_groups(self) -> None:
        """The default groups, unless stored already in any spelling (an older database
        keeps them under their spelt ids, ``group:AzureNodes``: see ``docs.named_id``)."""
        stored = {
            d["name"].casefold() for d in self._query(self._cluster, docs.list_named("group"))
        }
        for group in DEFAULT_GROUPS:
            if group.name.casefold() not in stored:
                self._create_ignoring_conflict(docs.named_doc("group", group.name, group))

    def _detect_batch(self) -> bool:
        with _BATCH_LOCK:
            if self.endpoint not in _BATCH_SUPPORT:
                try:
                    self._cluster.execute_item_batch(
                        [("read", (docs.COUNTER_ID,))], partition_key=docs.COUNTER_ID
                    )
                    _BATCH_SUPPORT[self.endpoint] = True
                except CosmosBatchOperationError:
                    _BATCH_SUPPORT[self.endpoint] = True
                except CosmosHttpResponseError as error:
                    if not docs.lacks_batch(error):
                        raise
                    _BATCH_SUPPORT[self.endpoint] = False
                    log.warning(
                        "Cosmos endpoint %s has no transactional batch (HTTP %s): commit and "
                        "add_job use the one-document-at-a-time fallback (for the local "
                        "stand-in only; not atomic against concurrent writers)",
                        self.endpoint,
                        error.status_code,
                    )
            return _BATCH_SUPPORT[self.endpoint]

    def _query(self, container: ContainerProxy, query: docs.Query) -> Iterator[dict[str, Any]]:
        return iter(
            container.query_items(**query.kwargs(), max_item_count=1000, response_hook=self._hook)
        )

    def _read(self, container: ContainerProxy, doc_id: str, pk: int | str) -> dict | None:
        try:
            return dict(container.read_item(doc_id, partition_key=pk, response_hook=self._hook))
        except CosmosHttpResponseError as error:
            if docs.is_missing(error):
                self._hook(error.headers or {})  # a 404 is charged too
                return None
            raise

    def _write(self, container: ContainerProxy, doc: dict[str, Any], etag: str | None) -> dict:
        """Create (``etag`` None: a 409 if it exists) or replace under ``etag`` (a 412 if it
        changed): the optimistic write every named document of the store takes."""
        if etag is None:
            return container.create_item(doc, response_hook=self._hook)
        return container.replace_item(
            doc["id"], doc, etag=etag, match_condition=MatchConditions.IfNotModified,
            response_hook=self._hook,
        )  # fmt: skip

    def close(self) -> None:
        self.index.close()
        self._client.__exit__(None, None, None)

    def _job_doc(self, job_id: int) -> dict[str, Any] | None:
        return self._read(self._jobs, docs.JOB_DOC_ID, job_id)


def _client(endpoint: str, key: str) -> CosmosClient:
    credential: Any = key
    if not key:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    # A plain-HTTP endpoint is the local stand-in: it has one region and no discovery.
    discovery = not endpoint.startswith("http://")
    return CosmosClient(endpoint, credential=credential, enable_endpoint_discovery=discovery)
