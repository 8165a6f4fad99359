"""The Cosmos Store's writes for a server without transactional batch (the local stand-in).

Cosmos DB runs ``commit`` and ``add_job`` as transactional batches; the stand-in
(``@vercel/cosmosdb-server``) lacks them, so :class:`CosmosStore` detects that once
and writes through these functions instead:

- :func:`replace_each` (``commit``): reads the documents, refuses (nothing written) if any
  is missing or its etag is stale, then stores a commit record naming every write
  (:mod:`shared.adapters.cosmos_intent`), replaces and creates one document at a time
  under their etags, and deletes the record. A write refused (a writer got in between)
  puts back what was written; a crash (kill -9) leaves the record, and the next commit of
  the job or the reconciler finishes it (all of it, or none), so no task is lost or
  counted twice. The record doubles as the job's commit lock on the stand-in. Never used
  on Cosmos DB, whose transactional batch is all-or-nothing by itself.
- :func:`create_each` (``add_job``): creates the task documents in parallel and reports
  what it wrote, so the caller can delete them if the job's documents cannot all be stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_intent as intent
from shared.domain.records import Record
from shared.errors import Conflict

log = logging.getLogger(__name__)

FINISH_ROUNDS = 3
"""Reads at most of a commit that keeps finding crashed commits in its way."""

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
    """Check every etag (and that no document to create exists), store the commit record,
    replace one at a time and create the new ones, then delete the record (see
    :mod:`cosmos_intent`: a crash at any point is finished by the next commit or the
    reconciler). The etags come back in the order replaced, then created."""
    records = [record for record, _ in [*pairs, *new]]
    ids = [doc["id"] for _, doc in [*pairs, *new]]
    current = _current(jobs, hook, read, job_id, ids)
    for record, doc in pairs:
        stored = current.get(doc["id"])
        if stored is None or stored["_etag"] != record.etag:
            raise docs.conflict(record, 404 if stored is None else 412)
    for record, doc in new:
        if doc["id"] in current:
            raise docs.conflict(record, 409)
    replaces = [(str(record.etag), doc) for record, doc in pairs]
    commit = intent.record(job_id, replaces, [doc for _, doc in new], current)
    commit["_etag"] = jobs.create_item(commit, response_hook=hook)["_etag"]
    try:
        etags = intent.apply(jobs, hook, commit, current)
    except intent.Undone as undone:
        intent.delete(jobs, hook, commit)
        raise docs.conflict(records[undone.index], undone.status) from None
    intent.delete(jobs, hook, commit)
    return etags


def _current(
    jobs: ContainerProxy,
    hook: Hook,
    read: Callable[[docs.Query], Iterable[dict[str, Any]]],
    job_id: int,
    ids: list[str],
) -> dict[str, dict[str, Any]]:
    """The documents of these ids, once no commit record names one: a live commit's makes
    this one busy (Conflict); a crashed one's is finished first."""
    for _ in range(FINISH_ROUNDS):
        found = list(read(intent.docs_and_commits(job_id, ids)))
        current = {d["id"]: d for d in found if d.get("type") != intent.COMMIT}
        blocking = [
            d for d in found if d.get("type") == intent.COMMIT and intent.names(d) & set(ids)
        ]
        if not blocking:
            return current
        if not all(intent.stale(commit) for commit in blocking):
            raise _busy(job_id)
        for commit in blocking:
            intent.finish(jobs, hook, read, commit)
    raise _busy(job_id)


def _busy(job_id: int) -> Conflict:
    return Conflict(
        f"job {job_id} is busy (another change to it is being saved); nothing was written: retry"
    )
