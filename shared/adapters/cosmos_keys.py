"""The Cosmos DB Store's idempotency keys (the Store port's ``*_idempotency_key`` methods).

A container of their own, ``idempotency``, created with time-to-live on (``default_ttl``
-1: nothing expires unless its document says so) and every document carrying ``ttl``, so
Cosmos DB deletes a key by itself once its 24 h are over (the caller's rule forgets it at
its ``expires`` even if the deletion lags). Nothing queries it: the id is a digest of
(owner, key) and its own partition, so every call is a point operation (about 1 RU a read).

- A reservation is ``create_item``: Cosmos refuses an id that exists (409,
  ``CosmosResourceExistsError``), so of concurrent reservations one wins.
- A completion or take-over is ``replace_item`` under the etag it was read with
  (``IfNotModified``: a 412 is :class:`Conflict`), as every other replace here.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters.cosmos_connection import CosmosConnection
from shared.domain.idempotency import KeyRecord
from shared.errors import Conflict
from shared.ports.store import check_size, stored_size


def key_doc_id(owner: str, key: str) -> str:
    """A digest, not the key: Cosmos ids are at most 255 characters and may not hold
    ``/ \\ ? #``, and a key alone is 255 characters of any printable ASCII."""
    pair = json.dumps([owner, key])  # unambiguous, whatever either holds
    digest = hashlib.sha256(pair.encode()).hexdigest()
    return f"key:{digest}"


def key_doc(record: KeyRecord) -> dict[str, Any]:
    doc_id = key_doc_id(record.owner, record.key)
    lifetime = (record.expires - record.reserved_at).total_seconds()
    return {
        "id": doc_id,
        "pk": doc_id,
        "type": "idempotencyKey",
        "ttl": max(1, math.ceil(lifetime)),  # seconds from the last write
        "body": record.model_dump(mode="json", by_alias=True, exclude={"etag"}),
    }


class CosmosKeys(CosmosConnection):
    """``get_idempotency_key``, ``put_idempotency_key``, ``delete_idempotency_key``."""

    def get_idempotency_key(self, owner: str, key: str) -> KeyRecord | None:
        doc_id = key_doc_id(owner, key)
        doc = self._read(self._keys, doc_id, doc_id)
        return None if doc is None else docs.load(KeyRecord, doc)

    def put_idempotency_key(self, record: KeyRecord) -> None:
        check_size(record, stored_size(record))  # ValueError before anything is written
        doc = key_doc(record)
        what = f"idempotency key {record.key!r} of {record.owner}"
        try:
            new = self._write(self._keys, doc, record.etag)
        except CosmosHttpResponseError as error:
            if error.status_code == 409:
                raise Conflict(f"{what} is already reserved; nothing was written") from None
            if error.status_code == 412 or docs.is_missing(error):
                raise docs.conflict(record, 404 if docs.is_missing(error) else 412, what) from None
            raise
        record.etag = str(new["_etag"])

    def delete_idempotency_key(self, record: KeyRecord) -> None:
        doc_id = key_doc_id(record.owner, record.key)
        try:
            self._keys.delete_item(
                doc_id, partition_key=doc_id, etag=record.etag,
                match_condition=MatchConditions.IfNotModified, response_hook=self._hook,
            )  # fmt: skip
        except CosmosHttpResponseError as error:
            if docs.is_missing(error):
                return
            if error.status_code == 412:
                raise Conflict(
                    f"idempotency key {record.key!r} of {record.owner} changed since it was "
                    "read; nothing was deleted"
                ) from None
            raise
