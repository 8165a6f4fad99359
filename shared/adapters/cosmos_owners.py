"""The top-level ``owner`` of job documents written before ``list_jobs(owner=...)`` existed.

``list_jobs`` filters on ``c.owner``, a top-level copy of the body's owner that every job
write now adds (:func:`shared.adapters.cosmos_docs.job_doc`); the body is not indexed, so
a job stored by an older version (and not written since) would be missing from its
owner's listing. Each reconciler run's purge copies the owner of a page of such documents
to their top level (:func:`backfill`), until none is left; a document written meanwhile
by another writer (a 412) is skipped: that write added the copy, or the next run will.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters.cosmos_docs import Query
from shared.domain.models import Job

PAGE = 500
"""Documents one backfill run copies at most (a run is one reconciler run's purge)."""

DEFAULT_OWNER = Job.model_fields["owner"].default
"""The owner of a job body that has none (a version before owners): the model's default."""

CROSS_PARTITION = ("unowned_jobs",)
"""This module's queries that read every partition (the backfill only; no hot path)."""


def unowned_jobs(limit: int) -> Query:
    """Visible job documents without the top-level owner (hidden ones are ``add_job``'s
    own until it shows them: it must find their etag unchanged)."""
    return Query(
        "SELECT TOP @limit * FROM c WHERE c.type = @type AND c.visible = true "
        "AND NOT IS_DEFINED(c.owner)",
        [{"name": "@limit", "value": limit}, {"name": "@type", "value": "job"}],
    )


def owned(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document with its owner copied to the top level (system fields left out)."""
    out = {k: v for k, v in doc.items() if not k.startswith("_")}
    out["owner"] = (doc.get("body") or {}).get("owner") or DEFAULT_OWNER
    return out


def backfill(
    jobs: ContainerProxy,
    read: Callable[[Query], Iterable[dict[str, Any]]],
    hook: Callable[..., None],
    *,
    limit: int = PAGE,
) -> int:
    """Copy the owner of at most ``limit`` old job documents; how many were found (0: none
    is left). Each replace is under the etag read, so no concurrent write is undone."""
    found = list(read(unowned_jobs(limit)))
    for doc in found:
        try:
            jobs.replace_item(
                doc["id"], owned(doc), etag=doc["_etag"],
                match_condition=MatchConditions.IfNotModified, response_hook=hook,
            )  # fmt: skip
        except CosmosHttpResponseError as error:
            if error.status_code not in (404, 412):  # written or deleted meanwhile
                raise
    return len(found)
