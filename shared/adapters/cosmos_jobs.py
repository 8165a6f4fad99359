"""The Cosmos DB Store's jobs, tasks and task ranges (the jobs container).

A job and its tasks share one partition, so ``commit`` is one transactional batch
(or the fallback of :mod:`shared.adapters.cosmos_fallback`).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_fallback as fallback
from shared.adapters import cosmos_intent as intent
from shared.adapters import cosmos_owners as owners
from shared.adapters import cosmos_parts as parts
from shared.adapters import cosmos_tallies as tallies
from shared.adapters.cosmos_connection import CosmosConnection
from shared.domain.models import Job, Task
from shared.domain.records import Record
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict, NotFound
from shared.ports.store import check_batch

OWNERS_RECHECK_S = 600.0
"""How often a clean owner backfill looks again (one cross-partition query)."""

COUNTER_RETRIES = 200
"""Attempts of ``next_job_id`` against other writers before it gives up."""


class CosmosJobs(CosmosConnection):
    """Jobs, tasks and ranges on Cosmos DB (the job half of :class:`CosmosStore`)."""

    add_job_fault: Callable[[int], None] | None  # the Store port's test hook (None there)
    _owners_clean_at: float | None = None
    """When (monotonic) a backfill last found no job document without its top-level owner:
    looked for again only after OWNERS_RECHECK_S (None: look at the next call)."""

    # --- jobs and tasks -------------------------------------------------

    def next_job_id(self) -> int:
        # Threads of one process take turns (they would only make each other retry);
        # other processes and instances are kept apart by the etag.
        with self._counter_lock:
            return self._take_job_id()

    def _take_job_id(self) -> int:
        for attempt in range(COUNTER_RETRIES):
            doc = self._read(self._cluster, docs.COUNTER_ID, docs.COUNTER_ID)
            if doc is None:
                raise RuntimeError("the job-id counter document is missing")
            doc["value"] = int(doc["value"]) + 1
            try:
                self._cluster.replace_item(
                    docs.COUNTER_ID,
                    doc,
                    etag=doc["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                    response_hook=self._hook,
                )
                return int(doc["value"])
            except CosmosHttpResponseError as error:
                if error.status_code != 412:
                    raise
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise Conflict("could not take a job id: too many concurrent writers, retry")

    def add_job(self, job: Job, tasks: Sequence[Task], ranges: Sequence[TaskRange] = ()) -> None:
        if len({t.id for t in tasks}) != len(tasks):
            raise ValueError(f"job {job.id}: task ids must be unique")
        if len({r.first_id for r in ranges}) != len(ranges):
            raise ValueError(f"job {job.id}: range ids must be unique")
        records: list[Task | TaskRange] = [*tasks, *ranges]
        for part in records:
            if part.job_id != job.id:
                raise ValueError(f"{docs.what(part)} does not belong to job {job.id}")
        etags = parts.write_job(
            self._jobs, self._hook, batch=self.batch, job=job, parts=records,
            fault=self.add_job_fault,
        )  # fmt: skip
        job.etag = etags[docs.JOB_DOC_ID]
        for task in tasks:
            task.etag = etags[docs.task_doc_id(task.id)]
        for r in ranges:
            r.etag = etags[docs.range_doc_id(r.first_id)]
        job.stored()
        self._visible.remember({job.id})

    def purge_unfinished_jobs(self, older_than: datetime) -> int:
        read = functools.partial(self._query, self._jobs)
        micros = docs.micros(older_than)
        return parts.purge(self._jobs, self._hook, read, micros, self.index.forget_job)

    def purge_unfinished_job(self, job_id: int) -> bool:
        doc = self._job_doc(job_id)
        if doc is None or doc.get("visible") is not False:
            return False
        read = functools.partial(self._query, self._jobs)
        return parts.purge_one(self._jobs, self._hook, read, doc, self.index.forget_job)

    def finish_commits(self, older_than_s: float | None = None) -> int:
        """Finish the commits a crash left half-done on a server without transactional
        batch (:mod:`cosmos_intent`; the reconciler's run); how many. None on Cosmos DB."""
        if self.batch:
            return 0
        read = functools.partial(self._query, self._jobs)
        found = [c for c in read(intent.all_commits()) if intent.stale(c, older_than_s)]
        for commit in found:
            intent.finish(self._jobs, self._hook, read, commit)
        return len(found)

    def backfill_owners(self) -> None:
        """Copy the owner of job documents of an older version to where ``list_jobs``
        finds it (:mod:`cosmos_owners`), a page a call, until none is left; then again
        every OWNERS_RECHECK_S, not never (review: during a rolling deploy an old instance
        writes job documents without it after the first clean look)."""
        now = time.monotonic()
        if self._owners_clean_at is not None and now - self._owners_clean_at < OWNERS_RECHECK_S:
            return
        read = functools.partial(self._query, self._jobs)
        clean = owners.backfill(self._jobs, read, self._hook) == 0
        self._owners_clean_at = now if clean else None

    def get_job(self, job_id: int) -> Job:
        """The job document and its tallies (one query in its partition), summed; more
        than FOLD_AT tallies are folded on the way (see :mod:`cosmos_tallies`)."""
        doc, found = tallies.split(self._query(self._jobs, tallies.job_and_tallies(job_id)))
        if doc is None or doc.get("visible") is False:
            raise NotFound(f"job {job_id} does not exist")
        counted = tallies.live(doc, found)
        if len(counted) > tallies.FOLD_AT:
            tallies.fold(self._jobs, self._hook, batch=self.batch, job=doc, tallies=found)
        return tallies.load(doc, counted)

    def fold_counts(self) -> int:
        """Fold the tallies of every job that has some (the reconciler's run)."""
        job_ids = {int(d["jobId"]) for d in self._query(self._jobs, tallies.tallied_jobs())}
        folded = 0
        for job_id in sorted(job_ids):
            doc, found = tallies.split(self._query(self._jobs, tallies.job_and_tallies(job_id)))
            if doc is not None and tallies.fold(
                self._jobs, self._hook, batch=self.batch, job=doc, tallies=found
            ):
                folded += 1
        return folded

    def list_jobs(
        self,
        *,
        states: Collection[JobState] | None = None,
        limit: int = 100,
        before: int | None = None,
        owner: str | None = None,
    ) -> list[Job]:
        if limit <= 0 or (states is not None and not states):
            return []
        query = docs.list_jobs(states, limit, before, owner)
        found = list(self._query(self._jobs, query))
        if not found:
            return []
        query = tallies.tallies_of(d["jobId"] for d in found)
        counts = tallies.by_job(self._query(self._jobs, query))
        return [tallies.load(d, tallies.live(d, counts.get(int(d["jobId"]), []))) for d in found]

    def get_task(self, job_id: int, task_id: int) -> Task:
        doc = self._read(self._jobs, docs.task_doc_id(task_id), job_id)
        if doc is None:
            raise NotFound(f"task {job_id}.{task_id} does not exist")
        return self.index.load_task(doc)

    def get_tasks(self, job_id: int, task_ids: Collection[int]) -> list[Task]:
        ids = sorted(set(task_ids))
        out: list[Task] = []
        for i in range(0, len(ids), 1000):
            query = docs.get_tasks(job_id, ids[i : i + 1000])
            out += [self.index.load_task(d) for d in self._query(self._jobs, query)]
        return out

    def list_tasks(
        self,
        job_id: int,
        *,
        states: Collection[TaskState] | None = None,
        offset: int = 0,
        limit: int = 1000,
        after: int = 0,
    ) -> list[Task]:
        if limit <= 0 or (states is not None and not states):
            return []
        offset = max(offset, 0)
        query = docs.list_tasks(job_id, states, offset + limit, after)
        found = list(self._query(self._jobs, query))[offset:]
        return [self.index.load_task(d) for d in found]

    def get_ranges(self, job_id: int) -> list[TaskRange]:
        return [self.index.load_range(d) for d in self._query(self._jobs, docs.get_ranges(job_id))]

    def commit(
        self,
        *,
        job: Job | None = None,
        tasks: Sequence[Task] = (),
        ranges: Sequence[TaskRange] = (),
    ) -> None:
        if job is None and not tasks and not ranges:
            return
        check_batch(job, tasks, ranges)
        self._write_commit(job, tasks, ranges)

    def _write_commit(
        self, job: Job | None, tasks: Sequence[Task], ranges: Sequence[TaskRange]
    ) -> None:
        """``commit`` past its checks (:func:`check_batch` done by the caller)."""
        # The job document is replaced only if the job's own fields changed; a counts-only
        # change is a tally created beside it (cosmos_tallies), its etag unchecked.
        counts_only = job is not None and job.counts_only()
        replaced: list[Record] = [*([job] if job is not None and not counts_only else [])]
        replaced += [r for r in ranges if r.etag is not None]
        replaced += [t for t in tasks if t.etag is not None]
        for record in replaced:
            if record.etag is None:
                raise Conflict(
                    f"{docs.what(record)} has no etag: only records read from the store can be "
                    "written back; nothing was written"
                )
        job_id = job.id if job is not None else (tasks[0].job_id if tasks else ranges[0].job_id)
        pairs = [(r, self._job_write(r) if r is job else docs.doc_of(r)) for r in replaced]
        new: list[tuple[Record, dict]] = [(r, docs.range_doc(r)) for r in ranges if r.etag is None]
        new += [(t, docs.task_doc(t)) for t in tasks if t.etag is None]
        if job is not None and counts_only and not job.counts_delta().empty:
            new.append((job, tallies.tally_doc(job.id, job.counts_delta())))
        if pairs or new:
            if self.batch:
                etags = self._write_batched(job_id, pairs, new)
            else:
                read = functools.partial(self._query, self._jobs)
                etags = fallback.replace_each(self._jobs, self._hook, read, job_id, pairs, new)
            for (record, _), etag in zip([*pairs, *new], etags, strict=True):
                if not (record is job and counts_only):  # (a tally's etag is not the job's)
                    record.etag = etag
        if job is not None:
            job.stored()

    def _job_write(self, job: Record) -> dict[str, Any]:
        """The replacing document of a job whose own fields changed (a point read of the
        stored one gives the counts its delta is added to)."""
        assert isinstance(job, Job)
        return tallies.job_write(job, self._read(self._jobs, docs.JOB_DOC_ID, job.id))

    def _write_batched(
        self,
        job_id: int,
        pairs: list[tuple[Record, dict]],
        new: list[tuple[Record, dict]],
    ) -> list[str]:
        ops: list[tuple[Any, ...]] = [
            ("replace", (doc["id"], doc), {"if_match_etag": record.etag}) for record, doc in pairs
        ]
        ops += [("create", (doc,)) for _, doc in new]
        try:
            results = self._jobs.execute_item_batch(
                ops, partition_key=job_id, response_hook=self._hook
            )
        except CosmosBatchOperationError as error:
            index = error.error_index if error.error_index is not None else 0
            record = [*pairs, *new][index][0]
            raise docs.conflict(record, docs.batch_status(error)) from None
        return [docs.result_etag(r) for r in results]
