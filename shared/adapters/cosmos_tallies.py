"""The Cosmos DB Store's job counts: tally documents beside the job document, and folding.

A commit whose job changed only in its counts (:meth:`Job.counts_only`) does not replace
the job document: it creates a small tally document (``type`` "tally", ``id``
"tally-<uuid>", in the job's partition) holding the commit's delta, in the same
transactional batch as the tasks. Creates never conflict, so task events of one job no
longer collide on the job's etag, and a task event writes ~0.2 KB instead of the job.

A read of a job (:func:`job_and_tallies`: one single-partition query) sums the tallies into
the job document's counts. When a read sees more than :data:`FOLD_AT` tallies, and on every
reconciler run, they are folded back: the job document replaced under its etag with the
sums, the folded tallies deleted, in one transactional batch (at most :data:`MAX_FOLD`
tallies, so at most 100 operations). A fold that conflicts (another fold, or a write of the
job's own fields, got in first) is skipped: the tallies stay and are summed as before.

The job document also lists the ids of tallies it has already absorbed (``folded``), and
every read skips those. With a transactional batch the list stays empty (the deletes go in
the same batch); the stand-in's one-at-a-time fold writes it first, so a reader or another
fold that comes between the replace and the deletes (or after a crash there) never counts
a tally twice.

The queries over tallies are built here (parameterised, like those of
:mod:`shared.adapters.cosmos_docs`); :data:`CROSS_PARTITION` names the two that read
every partition (neither is on a hot path).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.domain.counts import CountsDelta
from shared.domain.models import Job
from shared.ports.store import MAX_BATCH

log = logging.getLogger(__name__)

Hook = Callable[..., None]

TALLY = "tally"
FOLD_AT = 50
"""A read that sees more tallies than this folds them into the job document."""
MAX_FOLD = MAX_BATCH - 1
"""Tallies folded at most per fold: with the job's replace, one batch of 100 operations."""
CROSS_PARTITION = ("tallies_of", "tallied_jobs")
"""The queries of this module that read every partition (list_jobs, the reconciler)."""


def tally_doc(job_id: int, delta: CountsDelta) -> dict[str, Any]:
    """A new tally document holding one commit's delta."""
    return {
        "id": f"{TALLY}-{uuid.uuid4().hex}",
        "jobId": job_id,
        "type": TALLY,
        "body": delta.to_json(),
    }


# --- queries ---------------------------------------------------------------------


def job_and_tallies(job_id: int) -> docs.Query:
    """The job document and its tallies: one query, in the job's partition."""
    return docs.Query(
        "SELECT * FROM c WHERE c.jobId = @jobId AND (c.id = @job OR c.type = @type)",
        [
            {"name": "@jobId", "value": job_id},
            {"name": "@job", "value": docs.JOB_DOC_ID},
            {"name": "@type", "value": TALLY},
        ],
        job_id,
    )


def tallies_of(job_ids: Iterable[int]) -> docs.Query:
    """The tallies of some jobs (a page of list_jobs): cross-partition."""
    return docs.Query(
        "SELECT * FROM c WHERE c.type = @type AND ARRAY_CONTAINS(@jobIds, c.jobId)",
        [{"name": "@type", "value": TALLY}, {"name": "@jobIds", "value": sorted(job_ids)}],
    )


def tallied_jobs() -> docs.Query:
    """The job id of every tally (the reconciler folds those jobs): cross-partition."""
    return docs.Query(
        "SELECT c.jobId FROM c WHERE c.type = @type", [{"name": "@type", "value": TALLY}]
    )


# --- reading ----------------------------------------------------------------------


def split(found: Iterable[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The job document and all its tallies from :func:`job_and_tallies` (:func:`live` tells
    the ones to count)."""
    job: dict[str, Any] | None = None
    tallies: list[dict[str, Any]] = []
    for doc in found:
        if doc.get("type") == TALLY:
            tallies.append(doc)
        elif doc["id"] == docs.JOB_DOC_ID:
            job = doc
    return job, tallies


def live(job: dict[str, Any] | None, tallies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tallies the job document has not absorbed yet."""
    absorbed = set((job or {}).get("folded") or ())
    return [t for t in tallies if t["id"] not in absorbed]


def summed(
    job: dict[str, Any], tallies: Iterable[dict[str, Any]], *, partial: bool = False
) -> dict[str, Any]:
    """The job's body with the tallies' deltas added to its counts (a copy). ``partial``:
    to be stored while other tallies stay live, so counts below zero are kept
    (:meth:`CountsDelta.apply`)."""
    total = CountsDelta()
    for tally in tallies:
        total.add(CountsDelta.from_json(tally["body"]))
    body = {**job["body"], "steps": {k: dict(v) for k, v in job["body"].get("steps", {}).items()}}
    return total.apply(body, partial=partial)


def load(job: dict[str, Any], tallies: Iterable[dict[str, Any]]) -> Job:
    """The job as the store returns it: counts summed, marked as loaded (Job.loaded)."""
    body = summed(job, tallies)
    record = Job.model_validate(body)
    record.etag = job["_etag"]
    record.loaded(body)
    return record


def by_job(tallies: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for tally in tallies:
        out[int(tally["jobId"])].append(tally)
    return out


def job_write(job: Job, current: dict[str, Any] | None) -> dict[str, Any]:
    """The document that replaces the job's when its own fields changed: its fields, the
    stored counts plus its delta (the tallies others committed stay and are still summed),
    and the stored ``folded`` list. Conflict if the stored document is gone or newer."""
    if current is None:
        raise docs.conflict(job, 404)
    if current["_etag"] != job.etag:
        raise docs.conflict(job, 412)
    doc = docs.job_doc(job, visible=current.get("visible", True) is not False)
    stored = current["body"]
    doc["body"]["taskCounts"], doc["body"]["steps"] = stored.get("taskCounts"), stored.get("steps")
    job.counts_delta().apply(doc["body"], partial=True)  # live tallies are summed on read
    if current.get("folded"):
        doc["folded"] = current["folded"]
    return doc


# --- folding ----------------------------------------------------------------------


def fold(
    jobs: ContainerProxy,
    hook: Hook,
    *,
    batch: bool,
    job: dict[str, Any],
    tallies: list[dict[str, Any]],
) -> bool:
    """Fold (up to MAX_FOLD of) the job's live tallies into its document; False if another
    writer got in first (nothing changed then) or there was nothing to fold. ``tallies``:
    all the job's tally documents, as :func:`split` found them."""
    folding = live(job, tallies)[:MAX_FOLD]
    if not folding:
        return False
    job_id = job["jobId"]
    new = {k: v for k, v in job.items() if not k.startswith("_")}
    new["body"] = summed(job, folding, partial=True)  # tallies beyond MAX_FOLD stay live
    present = {t["id"] for t in tallies}  # (absorbed ones already deleted are forgotten)
    kept = [i for i in job.get("folded") or () if i in present]
    if batch:
        new["folded"] = kept
        ops: list[tuple[Any, ...]] = [
            ("replace", (docs.JOB_DOC_ID, new), {"if_match_etag": job["_etag"]})
        ]
        ops += [("delete", (t["id"],)) for t in folding]
        try:
            jobs.execute_item_batch(ops, partition_key=job_id, response_hook=hook)
        except CosmosBatchOperationError:
            return False  # (the replace's etag or a tally's delete: another fold or write won)
        return True
    # The stand-in (no batch): the document first, naming what it absorbed, then the deletes.
    new["folded"] = [*kept, *(t["id"] for t in folding)]
    try:
        jobs.replace_item(
            docs.JOB_DOC_ID, new, etag=job["_etag"],
            match_condition=MatchConditions.IfNotModified, response_hook=hook,
        )  # fmt: skip
    except CosmosHttpResponseError as error:
        if error.status_code in (404, 412):
            return False
        raise
    for tally in folding:
        try:
            jobs.delete_item(tally["id"], partition_key=job_id, response_hook=hook)
        except CosmosHttpResponseError as error:
            if not docs.is_missing(error):
                log.warning("could not delete folded tally %s of job %s", tally["id"], job_id)
    return True
