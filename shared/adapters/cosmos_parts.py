"""Writing a job in parts on Cosmos DB, and purging jobs a crash left half-written.

A transactional batch is one partition, 100 operations and 2 MB, so a job of any size
cannot be one atomic write. :func:`write_job` makes it *appear* atomic instead:

1. the job document is created first, with ``visible`` false (in the first batch);
2. its tasks and ranges follow, in batches of at most ``MAX_BATCH`` documents and
   ``MAX_BATCH_BYTES`` (or one at a time where the server has no batch);
3. one final conditional replace (under the etag of step 1) sets ``visible`` true.

No read returns a job that is not visible, nor its parts (``CosmosStore`` checks the job
of every task and range its cross-partition queries find). On an error the writer deletes
what it wrote; a crash leaves an invisible job that :func:`purge` deletes later. The purge
first replaces the job document (a new etag), so an ``add_job`` still running under it
fails at step 3 and the job never appears with parts missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_fallback as fallback
from shared.domain.models import Job
from shared.domain.records import Record
from shared.errors import Conflict
from shared.ports.store import MAX_BATCH, MAX_BATCH_BYTES, check_size, stored_size

log = logging.getLogger(__name__)

Hook = Callable[..., None]
Fault = Callable[[int], None] | None
Read = Callable[[docs.Query], Iterable[dict[str, Any]]]


HIDDEN_ROUNDS = 4
"""Reads at most of a scheduling query that keeps finding parts of invisible jobs (each
round leaves the jobs found out, so the window fills with visible work)."""

VISIBLE_CACHE = 100_000
"""Job ids remembered as visible (about 6 MB); the set is emptied when it grows past this."""


class Visibility:
    """Which jobs are visible, for the cross-partition queries that cannot join a task to
    its job: a point read (1 RU) of each job not yet known visible in this process, then
    remembered (a visible job never goes back; only invisible ones are ever deleted)."""

    def __init__(self, read_job: Callable[[int], dict[str, Any] | None]) -> None:
        self._read_job = read_job
        self._known: set[int] = set()

    def remember(self, job_ids: set[int]) -> None:
        if len(self._known) + len(job_ids) > VISIBLE_CACHE:
            self._known = set()
        self._known |= job_ids

    def of(self, job_ids: set[int]) -> set[int]:
        """Those of these jobs that are visible."""
        shown = {j for j in job_ids - self._known if _visible(self._read_job(j))}
        self.remember(shown)
        return job_ids & (self._known | shown)

    def only(
        self, run: Callable[[set[int]], list[dict[str, Any]]], exclude: Iterable[int]
    ) -> list[dict[str, Any]]:
        """A scheduling query's documents (``run(jobs to leave out)``) without the parts of
        invisible jobs: run again leaving those jobs out, so a crashed job's thousand tasks
        cannot fill the window."""
        skip = set(exclude)
        found: list[dict[str, Any]] = []
        hidden: set[int] = set()
        for _ in range(HIDDEN_ROUNDS):
            found = run(skip)
            job_ids = {int(d["jobId"]) for d in found}
            hidden = job_ids - self.of(job_ids)
            if not hidden:
                return found
            skip |= hidden
        return [d for d in found if d["jobId"] not in hidden]


def _visible(job_doc: dict[str, Any] | None) -> bool:
    return job_doc is not None and job_doc.get("visible") is not False


def sized(records: Sequence[Record]) -> list[int]:
    """Each record's stored size; ValueError (nothing written yet) if one is too big."""
    sizes = [stored_size(r) for r in records]
    for record, size in zip(records, sizes, strict=True):
        check_size(record, size)
    return sizes


def batches(sizes: Sequence[int]) -> Iterator[range]:
    """Consecutive index ranges of at most MAX_BATCH items and MAX_BATCH_BYTES each."""
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= MAX_BATCH or total + size > MAX_BATCH_BYTES):
            yield range(start, i)
            start, total = i, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


def write_job(
    jobs: ContainerProxy,
    hook: Hook,
    *,
    batch: bool,
    job: Job,
    parts: Sequence[Record],
    fault: Fault = None,
) -> dict[str, str]:
    """Write the job hidden, its parts, then make it visible; the etag of every document
    written, by document id. Raises Conflict (the job or a part exists, or the job was
    purged meanwhile) or ValueError (a document too big); nothing stays stored then."""
    records: list[Record] = [job, *parts]
    sizes = sized(records)
    all_docs = [docs.job_doc(job, visible=False), *(docs.doc_of(p) for p in parts)]
    written: list[str] = []
    etags: dict[str, str] = {}
    try:
        for span in batches(sizes):
            chunk = all_docs[span.start : span.stop]
            if batch:
                _create_batch(jobs, hook, job.id, chunk, etags)
                written += [d["id"] for d in chunk]
            elif span.start == 0:  # the job document alone first, then its parts
                etags[docs.JOB_DOC_ID] = fallback.create_one(jobs, hook, chunk[0])
                written.append(docs.JOB_DOC_ID)
                fallback.create_each(jobs, hook, chunk[1:], written, etags)
            else:
                fallback.create_each(jobs, hook, chunk, written, etags)
            if fault is not None:
                fault(len(written))
        etags[docs.JOB_DOC_ID] = _show(jobs, hook, job, etags[docs.JOB_DOC_ID])
    except Exception as failure:
        # The parts first, the job document last: a clean-up cut short stays invisible.
        undo = [d for d in written if d != docs.JOB_DOC_ID]
        undo += [docs.JOB_DOC_ID] if docs.JOB_DOC_ID in written else []
        delete_quietly(jobs, hook, job.id, undo)
        if isinstance(failure, docs.Refused) and failure.status == 409:
            raise Conflict(f"job {job.id}, or tasks of it, already stored") from None
        if isinstance(failure, docs.Refused) and failure.status in (404, 412):
            raise Conflict(
                f"job {job.id} was purged as unfinished while it was being added; "
                "nothing of it was stored: submit it again"
            ) from None
        if isinstance(failure, docs.Refused) and failure.__cause__ is not None:
            raise failure.__cause__ from None
        raise
    return etags


def _create_batch(
    jobs: ContainerProxy, hook: Hook, job_id: int, chunk: list[dict], etags: dict[str, str]
) -> None:
    try:
        results = jobs.execute_item_batch(
            [("create", (d,)) for d in chunk], partition_key=job_id, response_hook=hook
        )
    except CosmosBatchOperationError as error:
        raise docs.Refused(docs.batch_status(error) or 500) from error
    for d, result in zip(chunk, results, strict=True):
        etags[d["id"]] = docs.result_etag(result)


def _show(jobs: ContainerProxy, hook: Hook, job: Job, etag: str) -> str:
    """The final write: the job document, visible, under the etag it was created with."""
    try:
        new = jobs.replace_item(
            docs.JOB_DOC_ID, docs.job_doc(job), etag=etag,
            match_condition=MatchConditions.IfNotModified, response_hook=hook,
        )  # fmt: skip
    except CosmosHttpResponseError as error:
        raise docs.Refused(error.status_code or 500) from error
    return str(new["_etag"])


def delete_quietly(jobs: ContainerProxy, hook: Hook, job_id: int, doc_ids: list[str]) -> None:
    """Delete documents of one job; one already gone is fine, other errors are logged."""
    for doc_id in doc_ids:
        try:
            jobs.delete_item(doc_id, partition_key=job_id, response_hook=hook)
        except CosmosHttpResponseError as error:
            if not docs.is_missing(error):
                log.exception("could not delete document %s of job %s", doc_id, job_id)


def purge(
    jobs: ContainerProxy,
    hook: Hook,
    read: Read,
    before_micros: int,
    purged_job: Callable[[int], None] | None = None,
) -> int:
    """Delete the invisible jobs submitted before a time, with their parts; how many.
    ``purged_job`` is told each job claimed (the store deletes its index pointers then)."""
    found = list(read(docs.unfinished_jobs(before_micros)))
    return sum(purge_one(jobs, hook, read, doc, purged_job) for doc in found)


def purge_one(
    jobs: ContainerProxy,
    hook: Hook,
    read: Read,
    found: dict[str, Any],
    purged_job: Callable[[int], None] | None = None,
) -> bool:
    """Delete one invisible job (its job document as read, ``found``) with its parts; False
    if it became visible or another purger has it."""
    job_id = found["jobId"]
    body = {k: v for k, v in found.items() if not k.startswith("_")}
    try:  # claim it: a new etag, so an add_job still writing it cannot show it
        jobs.replace_item(
            docs.JOB_DOC_ID, {**body, "purging": True}, etag=found["_etag"],
            match_condition=MatchConditions.IfNotModified, response_hook=hook,
        )  # fmt: skip
    except CosmosHttpResponseError as error:
        if error.status_code == 412 or docs.is_missing(error):
            return False  # it became visible, or another purger has it
        raise
    if purged_job is not None:
        purged_job(job_id)
    ids = [d["id"] for d in read(docs.partition_ids(job_id)) if d["id"] != docs.JOB_DOC_ID]
    delete_quietly(jobs, hook, job_id, [*ids, docs.JOB_DOC_ID])
    log.warning("purged job %s: its add_job never finished (%d parts)", job_id, len(ids))
    return True
