"""The Cosmos Store's writes for a server without transactional batch (the local stand-in).

Cosmos DB runs ``commit`` and ``add_job`` as transactional batches; the stand-in
(``@vercel/cosmosdb-server``) lacks them, so :class:`CosmosStore` detects that once
and writes through these functions instead:

- :func:`replace_each` (``commit``): reads the documents, refuses (nothing written) if any
  is missing or its etag is stale, then replaces them one at a time under their etags; if a
  replace is refused (another writer got in between) it puts back the documents it already
  wrote and raises Conflict. All-or-nothing for one writer; a writer racing it mid-commit
  can see a partial state for a moment. Good enough for the stand-in, never used on Cosmos DB.
- :func:`create_each` (``add_job``): creates the task documents in parallel and reports
  what it wrote, so the caller can delete them if the job's documents cannot all be stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.domain.records import Record

log = logging.getLogger(__name__)

Hook = Callable[..., None]


def create_one(jobs: ContainerProxy, hook: Hook, doc: dict[str, Any]) -> str:
    """Create one document; its etag, or Refused(status)."""
    try:
        created = jobs.create_item(doc, response_hook=hook)
    except CosmosHttpResponseError as error:
        raise docs.Refused(error.status_code or 500) from error
    return str(created["_etag"])


def create_each(
    jobs: ContainerProxy,
    hook: Hook,
    task_docs: list[dict[str, Any]],
    written: list[str],
    etags: dict[str, str],
) -> None:
    """Create the documents (16 at a time); ``written`` and ``etags`` get each one stored."""
    if not task_docs:
        return
    lock = threading.Lock()

    def create(doc: dict[str, Any]) -> None:
        etag = create_one(jobs, hook, doc)
        with lock:
            written.append(doc["id"])
            etags[doc["id"]] = etag

    with ThreadPoolExecutor(max_workers=min(16, len(task_docs))) as pool:
        futures = [pool.submit(create, d) for d in task_docs]
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


def replace_each(
    jobs: ContainerProxy,
    hook: Hook,
    read: Callable[[docs.Query], Iterable[dict[str, Any]]],
    job_id: int,
    pairs: list[tuple[Record, dict[str, Any]]],
    new: Sequence[tuple[Record, dict[str, Any]]] = (),
) -> list[str]:
    """Check every etag (and that no document to create exists), then replace one at a time
    and create the new ones, putting back what was written on refusal. The etags come back
    in the order replaced, then created."""
    query = docs.partition_docs(job_id, [doc["id"] for _, doc in [*pairs, *new]])
    current = {d["id"]: d for d in read(query)}
    for record, doc in pairs:
        stored = current.get(doc["id"])
        if stored is None or stored["_etag"] != record.etag:
            raise docs.conflict(record, 404 if stored is None else 412)
    for record, doc in new:
        if doc["id"] in current:
            raise docs.conflict(record, 409)
    done: list[tuple[dict[str, Any], str]] = []  # (previous document, etag we gave it)
    for record, doc in pairs:
        try:
            new_doc = jobs.replace_item(
                doc["id"], doc, etag=record.etag,
                match_condition=MatchConditions.IfNotModified, response_hook=hook,
            )  # fmt: skip
        except CosmosHttpResponseError as error:
            _undo(jobs, hook, job_id, done)
            raise docs.conflict(record, error.status_code) from None
        done.append((current[doc["id"]], str(new_doc["_etag"])))
    made: list[str] = []
    for record, doc in new:
        try:
            made.append(create_one(jobs, hook, doc))
        except docs.Refused as refused:
            _undo(jobs, hook, job_id, done)
            for _, created in reversed(new[: len(made)]):
                _delete(jobs, hook, job_id, created["id"])
            raise docs.conflict(record, refused.status) from None
    return [etag for _, etag in done] + made


def _delete(jobs: ContainerProxy, hook: Hook, job_id: int, doc_id: str) -> None:
    try:
        jobs.delete_item(doc_id, partition_key=job_id, response_hook=hook)
    except CosmosHttpResponseError:
        log.exception("could not undo document %s of job %s", doc_id, job_id)


def _undo(
    jobs: ContainerProxy, hook: Hook, job_id: int, done: list[tuple[dict[str, Any], str]]
) -> None:
    for previous, etag in reversed(done):
        body = {k: v for k, v in previous.items() if not k.startswith("_")}
        try:
            jobs.replace_item(
                body["id"], body, etag=etag,
                match_condition=MatchConditions.IfNotModified, response_hook=hook,
            )  # fmt: skip
        except CosmosHttpResponseError:
            log.exception("could not put back document %s of job %s", body["id"], job_id)
