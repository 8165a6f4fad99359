"""The Store port on Azure Cosmos DB (SQL API), for the control plane in Azure.

Layout, documents and queries are in :mod:`shared.adapters.cosmos_docs`; the
containers, partition keys and the request units of a task's life are in
``docs/cosmos.md``. The store is cut by what each part does:
:mod:`~shared.adapters.cosmos_connection` (client, containers, reads, queries, RU),
:mod:`~shared.adapters.cosmos_jobs` (jobs, tasks, ranges), :mod:`~shared.adapters.cosmos_parts`
(``add_job``'s hidden writes), :mod:`~shared.adapters.cosmos_fallback` (commit without batch)
and this module (nodes, node groups, meta documents); users and tokens are in
:mod:`~shared.adapters.cosmos_users`, idempotency keys in :mod:`~shared.adapters.cosmos_keys`.

- Optimistic concurrency: every replace and delete carries the etag it was
  read with (``IfNotModified``); a 412 is :class:`Conflict`.
- ``commit`` is one transactional batch in the job's partition (the job and
  its tasks share it). A server without transactional batch (the local
  stand-in, ``@vercel/cosmosdb-server``) is detected once, logged, and served
  by a fallback that checks every etag first, stores a commit record naming
  every write, writes one document at a time and deletes the record; a refused
  write undoes the others, and a crash leaves the record, which the job's next
  commit or the reconciler finishes (:mod:`~shared.adapters.cosmos_intent`).
  It exists for the stand-in, never for Cosmos DB.
- ``add_job`` writes the job document hidden first, its parts in batches (100
  documents, 2 MB), and makes the job visible in one final write
  (:mod:`shared.adapters.cosmos_parts`); the reads through the index return nothing of
  a job that is not visible (each job's visibility is read once per process, then
  remembered: a visible job never becomes invisible), and
  ``purge_unfinished_jobs`` deletes what a crashed ``add_job`` left.
- The hot paths (``queued_tasks``, ``open_ranges``, ``active_tasks``, ``holdings``) read
  one partition of the ``index`` container, whose pointers ``add_job`` and ``commit``
  keep (:mod:`shared.adapters.cosmos_index`); each purge (a reconciler run) repairs it.
- ``next_job_id``: a counter document, read and replaced under its etag,
  retried with jittered backoff when another writer won.
- Auth: an account key, or (no key) ``DefaultAzureCredential``.

Each response's ``x-ms-request-charge`` is added to :attr:`CosmosStore.request_charge`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters.cosmos_jobs import CosmosJobs
from shared.adapters.cosmos_keys import CosmosKeys
from shared.adapters.cosmos_users import CosmosUsers
from shared.domain.cluster import Meta, Node, NodeGroup
from shared.domain.hosts import Holding
from shared.domain.models import Job, Task
from shared.domain.records import Record
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict, NotFound
from shared.ports.store import Store, check_batch, check_size, stored_size

log = logging.getLogger(__name__)


class CosmosStore(CosmosJobs, CosmosUsers, CosmosKeys, Store):
    """The Store port on one Cosmos DB database (created with its containers if missing)."""

    # --- the hot paths, through the index (cosmos_index) ------------------

    def add_job(self, job: Job, tasks: Sequence[Task], ranges: Sequence[TaskRange] = ()) -> None:
        made = self.index.before_add_job(tasks, ranges)  # add before: never missing
        try:
            super().add_job(job, tasks, ranges)
        except Exception:
            self.index.undo_add_job(made)
            raise
        self.index.remember(tasks, ranges)

    def commit(
        self,
        *,
        job: Job | None = None,
        tasks: Sequence[Task] = (),
        ranges: Sequence[TaskRange] = (),
    ) -> None:
        if not tasks and not ranges:
            super().commit(job=job)
            return
        check_batch(job, tasks, ranges)  # a refusal before any pointer is written
        plan = self.index.before_commit(tasks, ranges)
        try:
            self._write_commit(job, tasks, ranges)
        except Exception:
            self.index.after_failure(plan)
            raise
        self.index.after_commit(plan, tasks, ranges)

    def queued_tasks(self, *, limit: int, exclude_jobs: Collection[int] = ()) -> list[Task]:
        return self.index.queued("task", limit, exclude_jobs)

    def open_ranges(self, *, limit: int, exclude_jobs: Collection[int] = ()) -> list[TaskRange]:
        return self.index.queued("range", limit, exclude_jobs)

    def active_tasks(self, *, node: str | None = None) -> list[Task]:
        return self.index.active_tasks(node)

    def holdings(self) -> list[Holding]:
        return self.index.holdings()

    def purge_unfinished_jobs(self, older_than: datetime) -> int:
        try:  # a crashed commit's record first (the stand-in only), as its job's next commit would
            self.finish_commits()
        except Exception:
            log.exception("finishing crashed commits failed (it runs again with the next run)")
        purged = super().purge_unfinished_jobs(older_than)
        try:  # each reconciler run purges: the index is repaired then, when due
            self.index.repair_if_due()
        except Exception:
            log.exception("index repair failed (it runs again with the next reconciler run)")
        try:
            self.backfill_owners()
        except Exception:
            log.exception("owner backfill failed (it runs again with the next reconciler run)")
        return purged

    def repair_indexes(self) -> dict[str, int]:
        """Repair the index now (:meth:`CosmosIndex.repair`): pointers created and deleted."""
        return self.index.repair()

    # --- nodes, groups, meta (the cluster container) ---------------------

    def get_node(self, name: str) -> Node:
        return self._get_named("node", name, Node)

    def list_nodes(self) -> list[Node]:
        return [docs.load(Node, d) for d in self._query(self._cluster, docs.list_named("node"))]

    def put_node(self, node: Node) -> None:
        self._put("node", node.name, node)

    def delete_node(self, node: Node) -> None:
        doc_id = docs.cluster_id("node", node.name)
        if node.etag is None:
            self.get_node(node.name)  # NotFound if missing
            raise Conflict(f"node {node.name!r} has no etag: read it before deleting it")
        try:
            self._cluster.delete_item(
                doc_id, partition_key=docs.cluster_pk("node", doc_id), etag=node.etag,
                match_condition=MatchConditions.IfNotModified, response_hook=self._hook,
            )  # fmt: skip
        except CosmosHttpResponseError as error:
            if docs.is_missing(error):
                raise NotFound(f"node {node.name!r} does not exist") from None
            if error.status_code == 412:
                raise docs.conflict(node, 412) from None
            raise

    def list_groups(self) -> list[NodeGroup]:
        query = docs.list_named("group")
        return [docs.load(NodeGroup, d) for d in self._query(self._cluster, query)]

    def put_group(self, group: NodeGroup) -> None:
        """The id is the case-folded name (``docs.named_id``): a concurrent create of another
        spelling is Cosmos's own 409. A group stored under its spelt id by older code is
        refused by a read first on create (nothing writes such ids any more, so that check
        cannot race) and replaced where it is."""
        if group.etag is None:
            folded = group.name.casefold()
            for doc in self._query(self._cluster, docs.list_named("group")):
                if str(doc["name"]).casefold() == folded:
                    raise Conflict(
                        f"node group {group.name!r} already exists as {doc['name']!r} "
                        "(names match whatever the case): read it and replace that copy"
                    )
        legacy = docs.cluster_id("group", group.name)  # the id before case-folded ids
        old = legacy if legacy != docs.named_id("group", group.name) else None
        self._put("group", group.name, group, legacy_id=old)

    def delete_group(self, group: NodeGroup) -> None:
        """By its case-folded id, or the spelt id older code stored it under."""
        if group.etag is None:
            raise Conflict(f"node group {group.name!r} has no etag: read it before deleting it")
        spelt = docs.cluster_id("group", group.name)
        for doc_id in dict.fromkeys((docs.named_id("group", group.name), spelt)):
            try:
                self._cluster.delete_item(
                    doc_id, partition_key=docs.cluster_pk("group", doc_id), etag=group.etag,
                    match_condition=MatchConditions.IfNotModified, response_hook=self._hook,
                )  # fmt: skip
                return
            except CosmosHttpResponseError as error:
                if error.status_code == 412:
                    raise docs.conflict(group, 412) from None
                if not docs.is_missing(error):
                    raise
        raise NotFound(f"node group {group.name!r} does not exist")

    def get_meta(self, key: str) -> Meta:
        return self._get_named("meta", key, Meta)

    def put_meta(self, meta: Meta) -> None:
        self._put("meta", meta.key, meta)

    def _get_named(self, kind: str, name: str, model: type[Any]) -> Any:
        doc_id = docs.cluster_id(kind, name)
        doc = self._read(self._cluster, doc_id, docs.cluster_pk(kind, doc_id))
        if doc is None:
            raise NotFound(f"{docs.KINDS[kind]} {name!r} does not exist")
        return docs.load(model, doc)

    def _put(
        self,
        kind: str,
        name: str,
        record: Record,
        *,
        doc_id: str | None = None,
        legacy_id: str | None = None,
    ) -> None:
        """Create (etag None) or replace (etag must match) one named document; a replace
        that finds none tries ``legacy_id``, the id older code stored it under."""
        check_size(record, stored_size(record))
        doc = docs.named_doc(kind, name, record, doc_id)
        try:
            new = self._write(self._cluster, doc, record.etag)
        except CosmosHttpResponseError as error:
            if legacy_id and record.etag is not None and docs.is_missing(error):
                self._put(kind, name, record, doc_id=legacy_id)
                return
            if error.status_code == 409:
                raise Conflict(
                    f"{docs.KINDS[kind]} {name!r} already exists: read it and replace that copy"
                ) from None
            if error.status_code in (404, 412):
                raise docs.conflict(
                    record, error.status_code, f"{docs.KINDS[kind]} {name!r}"
                ) from None
            raise
        record.etag = str(new["_etag"])
