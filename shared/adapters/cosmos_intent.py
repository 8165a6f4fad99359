"""The stand-in's commits made crash-safe: a commit record written before, deleted after.

Cosmos DB writes a ``commit`` as one transactional batch; the stand-in has none, so
:func:`shared.adapters.cosmos_fallback.replace_each` writes one document at a time, and a
kill -9 between two of them left a half-done commit (a probe: a sweep's range had moved
its cursor and the job counted the task, but the task document was never created, so
the task was lost). Now the fallback first creates a *commit record* in the job's
partition (``type`` "commit", id "commit-<token>"): every write the commit makes, each
document's etag as read and its body then. Every document the commit writes carries the
record's ``token`` (field :data:`MARK`), so whoever finishes it tells done from not.

- A record locks the documents it names: a fallback commit reads the job's records with
  its documents, and one that names a document it writes makes it conflict (retried by
  the use cases) while younger than :data:`STALE_S`; an older one is a crashed commit's,
  which it finishes first (:func:`finish`). Commits of other documents of the job (task
  events of distinct tasks) go on side by side. The reconciler finishes stale records too
  (``CosmosStore.finish_commits``). So nobody builds on a half-done commit's documents.
- Finishing rolls *forward*: each write not done yet is done under the etag the commit
  read; a document already carrying the token is done. If a document was changed by
  someone else meanwhile (a fold of the job's tallies, or a commit that stored its record
  at the same moment), it rolls *back*: documents carrying the token get their old
  bodies again, created ones are deleted. Either way the record is deleted last, so a
  crash while finishing leaves it to be finished again: each step is idempotent, and an
  undone document no longer carries the token, so a later finisher rolls back too.

A crash therefore leaves all of a commit or none of it once the record is finished,
never a task counted but missing; until then reads may see the partial state.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs

log = logging.getLogger(__name__)

Hook = Callable[..., None]
Read = Callable[[docs.Query], Iterable[dict[str, Any]]]

COMMIT = "commit"
MARK = "commitToken"
"""The field of a document written by a commit: the token of its commit record."""
STALE_S = 10.0
"""A commit record older than this is a crashed commit's (a live one takes well under a
second: one request per document, ~6 ms each on the stand-in)."""


class Undone(Exception):
    """The commit was rolled back: its write ``index`` met a document someone else changed
    (``status``: 412 changed, 404 gone, 409 created)."""

    def __init__(self, index: int, status: int) -> None:
        super().__init__(index, status)
        self.index = index
        self.status = status


def record(
    job_id: int,
    replaces: list[tuple[str, dict[str, Any]]],
    creates: list[dict[str, Any]],
    current: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The commit record: ``replaces`` (etag as read, new body), ``creates`` (bodies), and
    the bodies read (``current``), to put back on a roll-back."""
    token = uuid.uuid4().hex
    return {
        "id": f"{COMMIT}-{token}",
        "jobId": job_id,
        "type": COMMIT,
        "token": token,
        "atMicros": int(time.time() * 1_000_000),
        "writes": [
            {"etag": etag, "doc": {**doc, MARK: token}, "was": _plain(current[doc["id"]])}
            for etag, doc in replaces
        ]
        + [{"doc": {**doc, MARK: token}} for doc in creates],
    }


def stale(commit: dict[str, Any], older_than_s: float | None = None) -> bool:
    """The record is older than ``older_than_s`` (default :data:`STALE_S`): its writer died."""
    limit = STALE_S if older_than_s is None else older_than_s
    return time.time() * 1_000_000 - int(commit["atMicros"]) >= limit * 1_000_000


def names(commit: dict[str, Any]) -> set[str]:
    """The ids of the documents a commit record writes (and so locks)."""
    return {w["doc"]["id"] for w in commit["writes"]}


def docs_and_commits(job_id: int, doc_ids: list[str]) -> docs.Query:
    """Some documents of one job and every commit record of it (a fallback commit's read)."""
    return docs.Query(
        "SELECT * FROM c WHERE c.jobId = @jobId AND (ARRAY_CONTAINS(@ids, c.id) OR c.type = @type)",
        [
            {"name": "@jobId", "value": job_id},
            {"name": "@ids", "value": doc_ids},
            {"name": "@type", "value": COMMIT},
        ],
        job_id,
    )


def all_commits() -> docs.Query:
    """Every commit record (the reconciler finishes the stale ones): cross-partition, and
    only ever run on the stand-in."""
    return docs.Query("SELECT * FROM c WHERE c.type = @type", [{"name": "@type", "value": COMMIT}])


def apply(
    jobs: ContainerProxy, hook: Hook, commit: dict[str, Any], current: dict[str, dict[str, Any]]
) -> list[str]:
    """Do each write of the commit not done yet (``current``: the documents as read since
    the record was stored); the etag of each, in order. On a document someone else
    changed, roll back and raise Undone. Leaves the record in place (the caller deletes
    it)."""
    token, job_id = commit["token"], commit["jobId"]
    etags: list[str] = []
    for index, write in enumerate(commit["writes"]):
        doc = write["doc"]
        seen = current.get(doc["id"])
        if seen is not None and seen.get(MARK) == token:
            etags.append(str(seen["_etag"]))  # done before (by a crashed writer)
            continue
        status, etag = _write(jobs, hook, job_id, write, seen)
        if etag is None:
            again = _read_one(jobs, job_id, doc["id"])
            if again is None or again.get(MARK) != token:
                roll_back(jobs, hook, commit)
                raise Undone(index, status)
            etag = str(again["_etag"])  # another finisher did it meanwhile
        etags.append(etag)
    return etags


def _write(
    jobs: ContainerProxy,
    hook: Hook,
    job_id: int,
    write: dict[str, Any],
    seen: dict[str, Any] | None,
) -> tuple[int, str | None]:
    """One write: (200, its etag), or (the status refusing it, None)."""
    doc = write["doc"]
    if "etag" in write:
        if seen is None or seen["_etag"] != write["etag"]:
            return (404 if seen is None else 412), None
        try:
            new = jobs.replace_item(
                doc["id"], doc, etag=write["etag"],
                match_condition=MatchConditions.IfNotModified, response_hook=hook,
            )  # fmt: skip
        except CosmosHttpResponseError as error:
            return (404 if docs.is_missing(error) else error.status_code or 412), None
        return 200, str(new["_etag"])
    if seen is not None:
        return 409, None
    try:
        created = jobs.create_item(doc, response_hook=hook)
    except CosmosHttpResponseError as error:
        return error.status_code or 409, None
    return 200, str(created["_etag"])


def roll_back(jobs: ContainerProxy, hook: Hook, commit: dict[str, Any]) -> None:
    """Put back every document the commit wrote (those still carrying its token), last
    first; a created one is deleted. Errors are logged: the record stays, so the next
    finisher rolls back what is left."""
    token, job_id = commit["token"], commit["jobId"]
    for write in reversed(commit["writes"]):
        doc_id = write["doc"]["id"]
        stored = _read_one(jobs, job_id, doc_id)
        if stored is None or stored.get(MARK) != token:
            continue
        try:
            if "was" in write:
                jobs.replace_item(
                    doc_id, write["was"], etag=stored["_etag"],
                    match_condition=MatchConditions.IfNotModified, response_hook=hook,
                )  # fmt: skip
            else:
                jobs.delete_item(
                    doc_id, partition_key=job_id, etag=stored["_etag"],
                    match_condition=MatchConditions.IfNotModified, response_hook=hook,
                )  # fmt: skip
        except CosmosHttpResponseError:
            log.exception("could not put back document %s of job %s", doc_id, job_id)


def finish(jobs: ContainerProxy, hook: Hook, read: Read, commit: dict[str, Any]) -> bool:
    """Finish a crashed commit (forward if it can, else back) and delete its record; True
    if it went forward. Safe to run twice, or beside another finisher."""
    job_id = commit["jobId"]
    ids = [w["doc"]["id"] for w in commit["writes"]]
    current = {d["id"]: d for d in read(docs.partition_docs(job_id, ids))}
    try:
        apply(jobs, hook, commit, current)
        forward = True
    except Undone:
        forward = False
    delete(jobs, hook, commit)
    log.warning(
        "finished a commit of job %s that its writer left half-done (%d writes): %s",
        job_id, len(ids), "completed" if forward else "rolled back",
    )  # fmt: skip
    return forward


def delete(jobs: ContainerProxy, hook: Hook, commit: dict[str, Any]) -> None:
    """Delete the record; one already gone was deleted by another finisher."""
    try:
        jobs.delete_item(
            commit["id"], partition_key=commit["jobId"], etag=commit["_etag"],
            match_condition=MatchConditions.IfNotModified, response_hook=hook,
        )  # fmt: skip
    except CosmosHttpResponseError as error:
        if not (docs.is_missing(error) or error.status_code == 412):
            raise


def _read_one(jobs: ContainerProxy, job_id: int, doc_id: str) -> dict[str, Any] | None:
    try:
        return dict(jobs.read_item(doc_id, partition_key=job_id))
    except CosmosHttpResponseError as error:
        if docs.is_missing(error):
            return None
        raise


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    """A document as written (without the server's ``_`` fields)."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}
