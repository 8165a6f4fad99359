"""The Store port on Azure Cosmos DB (SQL API), for the control plane in Azure.

Layout, documents and queries are in :mod:`shared.adapters.cosmos_docs`; the
containers, partition keys and the request units of a task's life are in
``docs/cosmos.md``.

- Optimistic concurrency: every replace and delete carries the etag it was
  read with (``IfNotModified``); a 412 is :class:`Conflict`.
- ``commit`` is one transactional batch in the job's partition (the job and
  its tasks share it). A server without transactional batch (the local
  stand-in, ``@vercel/cosmosdb-server``) is detected once, logged, and served
  by a fallback that checks every etag first and then writes one document at
  a time, undoing the documents it wrote if a later write is refused. It is
  all-or-nothing for one writer, not against a writer racing it mid-commit:
  it exists for the stand-in, never for Cosmos DB.
- ``add_job`` writes tasks in batches of up to 100 and the job document last,
  deleting what it wrote if a later batch fails.
- ``next_job_id``: a counter document, read and replaced under its etag,
  retried with jittered backoff when another writer won.
- Auth: an account key, or (no key) ``DefaultAzureCredential``.

Each response's ``x-ms-request-charge`` is added to :attr:`CosmosStore.request_charge`.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_fallback as fallback
from shared.domain.models import (
    DEFAULT_GROUPS,
    Job,
    Meta,
    Node,
    NodeGroup,
    Principal,
    Record,
    Task,
)
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, NotFound
from shared.ports.store import MAX_BATCH, Store, check_batch

log = logging.getLogger(__name__)

COUNTER_RETRIES = 200
"""Attempts of ``next_job_id`` against other writers before it gives up."""

_BATCH_SUPPORT: dict[str, bool] = {}
"""Endpoint -> whether it runs transactional batches (detected once per process)."""
_BATCH_LOCK = threading.Lock()


class CosmosStore(Store):
    """The Store port on one Cosmos DB database (created with its containers if missing)."""

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
        self._client = client or _client(endpoint, key)
        try:
            db = self._client.create_database_if_not_exists(database)
            self._jobs = db.create_container_if_not_exists(
                docs.JOBS, PartitionKey(path="/jobId"), indexing_policy=docs.JOBS_INDEXING
            )
            self._cluster = db.create_container_if_not_exists(
                docs.CLUSTER, PartitionKey(path="/id"), indexing_policy=docs.CLUSTER_INDEXING
            )
        except CosmosHttpResponseError as error:
            if error.status_code != 403:
                raise
            # Entra ID data-plane roles cannot create databases or containers: Bicep did.
            db = self._client.get_database_client(database)
            self._jobs = db.get_container_client(docs.JOBS)
            self._cluster = db.get_container_client(docs.CLUSTER)
        self.database = db
        self._create_ignoring_conflict({"id": docs.COUNTER_ID, "type": "counter", "value": 0})
        for group in DEFAULT_GROUPS:
            self._create_ignoring_conflict(docs.named_doc("group", group.name, group))
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

    def close(self) -> None:
        self._client.__exit__(None, None, None)

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

    def add_job(self, job: Job, tasks: Sequence[Task]) -> None:
        if len({t.id for t in tasks}) != len(tasks):
            raise ValueError(f"job {job.id}: task ids must be unique")
        for task in tasks:
            if task.job_id != job.id:
                raise ValueError(f"task {task.key} does not belong to job {job.id}")
        if self._read(self._jobs, docs.JOB_DOC_ID, job.id) is not None:
            raise Conflict(f"job {job.id} already exists")
        written: list[str] = []
        etags: dict[str, str] = {}
        task_docs = [docs.task_doc(t) for t in tasks]
        try:
            if self.batch:
                self._create_batched(job.id, task_docs, docs.job_doc(job), written, etags)
            else:
                fallback.create_each(self._jobs, self._hook, task_docs, written, etags)
                etags[docs.JOB_DOC_ID] = fallback.create_one(
                    self._jobs, self._hook, docs.job_doc(job)
                )
                written.append(docs.JOB_DOC_ID)
        except Exception as failure:
            self._delete_quietly(job.id, written)  # nothing of the job stays stored
            if isinstance(failure, docs.Refused) and failure.status == 409:
                raise Conflict(f"job {job.id}, or tasks of it, already stored") from None
            if isinstance(failure, docs.Refused) and failure.__cause__ is not None:
                raise failure.__cause__ from None
            raise
        job.etag = etags[docs.JOB_DOC_ID]
        for task in tasks:
            task.etag = etags[docs.task_doc_id(task.id)]

    def _create_batched(
        self, job_id: int, task_docs: list[dict], job_doc: dict, written: list, etags: dict
    ) -> None:
        all_docs = [*task_docs, job_doc]  # the job document last
        for i in range(0, len(all_docs), MAX_BATCH):
            chunk = all_docs[i : i + MAX_BATCH]
            try:
                results = self._jobs.execute_item_batch(
                    [("create", (d,)) for d in chunk],
                    partition_key=job_id,
                    response_hook=self._hook,
                )
            except CosmosBatchOperationError as error:
                raise docs.Refused(docs.batch_status(error) or 500) from error
            written += [d["id"] for d in chunk]
            for d, result in zip(chunk, results, strict=True):
                etags[d["id"]] = docs.result_etag(result)

    def _delete_quietly(self, job_id: int, doc_ids: list[str]) -> None:
        for doc_id in doc_ids:
            try:
                self._jobs.delete_item(doc_id, partition_key=job_id, response_hook=self._hook)
            except CosmosHttpResponseError:
                log.exception("could not undo document %s of job %s", doc_id, job_id)

    def get_job(self, job_id: int) -> Job:
        doc = self._read(self._jobs, docs.JOB_DOC_ID, job_id)
        if doc is None:
            raise NotFound(f"job {job_id} does not exist")
        return docs.load(Job, doc)

    def list_jobs(
        self, *, states: Collection[JobState] | None = None, limit: int = 100
    ) -> list[Job]:
        if limit <= 0 or (states is not None and not states):
            return []
        return [docs.load(Job, d) for d in self._query(self._jobs, docs.list_jobs(states, limit))]

    def get_task(self, job_id: int, task_id: int) -> Task:
        doc = self._read(self._jobs, docs.task_doc_id(task_id), job_id)
        if doc is None:
            raise NotFound(f"task {job_id}.{task_id} does not exist")
        return docs.load(Task, doc)

    def get_tasks(self, job_id: int, task_ids: Collection[int]) -> list[Task]:
        ids = sorted(set(task_ids))
        out: list[Task] = []
        for i in range(0, len(ids), 1000):
            query = docs.get_tasks(job_id, ids[i : i + 1000])
            out += [docs.load(Task, d) for d in self._query(self._jobs, query)]
        return out

    def list_tasks(
        self,
        job_id: int,
        *,
        states: Collection[TaskState] | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> list[Task]:
        if limit <= 0 or (states is not None and not states):
            return []
        offset = max(offset, 0)
        query = docs.list_tasks(job_id, states, offset + limit)
        found = list(self._query(self._jobs, query))[offset:]
        return [docs.load(Task, d) for d in found]

    def queued_tasks(self, *, limit: int) -> list[Task]:
        if limit <= 0:
            return []
        return [docs.load(Task, d) for d in self._query(self._jobs, docs.queued_tasks(limit))]

    def active_tasks(self, *, node: str | None = None) -> list[Task]:
        return [docs.load(Task, d) for d in self._query(self._jobs, docs.active_tasks(node))]

    def commit(self, *, job: Job | None = None, tasks: Sequence[Task] = ()) -> None:
        if job is None and not tasks:
            return
        check_batch(job, tasks)
        records: list[Job | Task] = ([job] if job is not None else []) + list(tasks)
        for record in records:
            if record.etag is None:
                raise Conflict(
                    f"{docs.what(record)} has no etag: only records read from the store can be "
                    "written back; nothing was written"
                )
        job_id = job.id if job is not None else tasks[0].job_id
        pairs = [(r, docs.job_doc(r) if isinstance(r, Job) else docs.task_doc(r)) for r in records]
        if self.batch:
            etags = self._replace_batched(job_id, pairs)
        else:
            read = functools.partial(self._query, self._jobs)
            etags = fallback.replace_each(self._jobs, self._hook, read, job_id, pairs)
        for record, etag in zip(records, etags, strict=True):
            record.etag = etag

    def _replace_batched(self, job_id: int, pairs: list[tuple[Job | Task, dict]]) -> list[str]:
        ops = [
            ("replace", (doc["id"], doc), {"if_match_etag": record.etag}) for record, doc in pairs
        ]
        try:
            results = self._jobs.execute_item_batch(
                ops, partition_key=job_id, response_hook=self._hook
            )
        except CosmosBatchOperationError as error:
            index = error.error_index if error.error_index is not None else 0
            raise docs.conflict(pairs[index][0], docs.batch_status(error)) from None
        return [docs.result_etag(r) for r in results]

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
                doc_id, partition_key=doc_id, etag=node.etag,
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
        self._put("group", group.name, group)

    def get_meta(self, key: str) -> Meta:
        return self._get_named("meta", key, Meta)

    def put_meta(self, meta: Meta) -> None:
        self._put("meta", meta.key, meta)

    def _get_named(self, kind: str, name: str, model: type[Any]) -> Any:
        doc_id = docs.cluster_id(kind, name)
        doc = self._read(self._cluster, doc_id, doc_id)
        if doc is None:
            raise NotFound(f"{docs.KINDS[kind]} {name!r} does not exist")
        return docs.load(model, doc)

    def _put(self, kind: str, name: str, record: Record) -> None:
        """Create (etag None) or replace (etag must match) one named document."""
        doc = docs.named_doc(kind, name, record)
        try:
            if record.etag is None:
                new = self._cluster.create_item(doc, response_hook=self._hook)
            else:
                new = self._cluster.replace_item(
                    doc["id"], doc, etag=record.etag,
                    match_condition=MatchConditions.IfNotModified, response_hook=self._hook,
                )  # fmt: skip
        except CosmosHttpResponseError as error:
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

    # --- tokens -----------------------------------------------------------

    def add_token(self, token_sha256: str, principal: Principal) -> None:
        doc_id = docs.cluster_id("token", token_sha256)
        doc = {"id": doc_id, "type": "token", "body": principal.model_dump(mode="json")}
        self._cluster.upsert_item(doc, response_hook=self._hook)

    def find_token(self, token_sha256: str) -> Principal | None:
        doc_id = docs.cluster_id("token", token_sha256)
        doc = self._read(self._cluster, doc_id, doc_id)
        return None if doc is None else Principal.model_validate(doc["body"])


def _client(endpoint: str, key: str) -> CosmosClient:
    credential: Any = key
    if not key:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    # A plain-HTTP endpoint is the local stand-in: it has one region and no discovery.
    discovery = not endpoint.startswith("http://")
    return CosmosClient(endpoint, credential=credential, enable_endpoint_discovery=discovery)
