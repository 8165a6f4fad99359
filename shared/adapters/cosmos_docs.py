"""The Cosmos DB Store's documents, queries and error reading (no I/O here).

Three containers (``docs/cosmos.md`` says why):

- ``jobs``, partition key ``/jobId``: one job document (``id`` "job") and its
  task documents (``id`` "task-<n>") and range documents (``id`` "range-<n>"), so
  a job and its tasks commit together in one transactional batch. A job document
  with ``visible`` false is a job ``add_job`` has not finished writing: no read
  returns it or its parts (see :mod:`shared.adapters.cosmos_parts`).
- ``cluster``, partition key ``/pk``: nodes ("node:<name>") all in partition "nodes",
  node groups ("group:<casefolded name>") all in "groups", so that listing either (each scheduler
  pass, agent registration) reads one partition; meta documents ("meta:<key>"), the
  job-id counter ("counter:jobId"), tokens ("token:<sha256>") and users ("user:<name>",
  the role its tokens carry: :mod:`shared.adapters.cosmos_users`) each in its own
  (``pk`` = its id).

A third container, ``index``, holds the pointers the hot paths read
(:mod:`shared.adapters.cosmos_index_docs`).

A stored document is the record's camelCase JSON under ``body`` (not
indexed) next to the few top-level fields that queries filter or sort on,
written from the record on every write so they never disagree with it.

Every query is built here, parameterised: values travel only as parameters,
and a query over one job names its partition both in its text
(``c.jobId = @jobId``) and as the request's partition key.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.domain.models import Job, Task
from shared.domain.records import Record
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict

JOBS = "jobs"
CLUSTER = "cluster"
KEYS = "idempotency"
"""Idempotency keys (:mod:`shared.adapters.cosmos_keys`), with time-to-live on."""
JOB_DOC_ID = "job"
COUNTER_ID = "counter:jobId"
CLUSTER_PARTITIONS = {"node": "nodes", "group": "groups"}
"""Kinds of the cluster container kept together in one logical partition (they are listed);
every other kind is alone in its own (a point read by id)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

JOBS_INDEXING: dict[str, Any] = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": "/*"}],
    "excludedPaths": [{"path": "/body/*"}, {"path": '/"_etag"/?'}],
}
CLUSTER_INDEXING: dict[str, Any] = {
    "indexingMode": "consistent",
    "includedPaths": [{"path": "/*"}],
    "excludedPaths": [{"path": "/body/*"}, {"path": '/"_etag"/?'}],
}

KEYS_INDEXING: dict[str, Any] = {
    "indexingMode": "consistent",
    "includedPaths": [],
    "excludedPaths": [{"path": "/*"}],
}
"""Nothing indexed: idempotency keys are only read by id."""

R = TypeVar("R", bound=Record)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch (naive means UTC): exact, and sorts like the datetimes."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _body(record: Record) -> dict[str, Any]:
    return record.model_dump(mode="json", by_alias=True, exclude={"etag"})


def task_doc_id(task_id: int) -> str:
    return f"task-{task_id}"


def job_doc(job: Job, *, visible: bool = True) -> dict[str, Any]:
    """The job's document; ``visible`` False while ``add_job`` writes its parts."""
    return {
        "id": JOB_DOC_ID,
        "jobId": job.id,
        "type": "job",
        "visible": visible,
        "state": job.state.value,
        "submitTime": micros(job.submit_time),
        "owner": job.owner,
        "body": _body(job),
    }


def task_doc(task: Task) -> dict[str, Any]:
    return {
        "id": task_doc_id(task.id),
        "jobId": task.job_id,
        "taskId": task.id,
        "type": "task",
        "state": task.state.value,
        "priority": task.priority,
        "submitTime": micros(task.submit_time),
        "node": task.node,
        "body": _body(task),
    }


def range_doc_id(first_id: int) -> str:
    return f"range-{first_id}"


def range_doc(r: TaskRange) -> dict[str, Any]:
    """A sweep's range; ``taskId`` is its first task's id (its place in the scheduling
    order, as its pointer in the ``index`` container says)."""
    return {
        "id": range_doc_id(r.first_id),
        "jobId": r.job_id,
        "taskId": r.first_id,
        "type": "range",
        "open": r.open,
        "priority": r.priority,
        "submitTime": micros(r.template.submit_time),
        "body": _body(r),
    }


def doc_of(record: Record) -> dict[str, Any]:
    """The stored document of a job, task or range."""
    if isinstance(record, Job):
        return job_doc(record)
    if isinstance(record, Task):
        return task_doc(record)
    if isinstance(record, TaskRange):
        return range_doc(record)
    raise TypeError(f"{type(record).__name__} is not stored in the jobs container")


def named_doc(kind: str, name: str, record: Record, doc_id: str | None = None) -> dict[str, Any]:
    """A document of the cluster container: nodes, groups, meta (``doc_id``: a legacy id)."""
    doc_id = doc_id or named_id(kind, name)
    return {
        "id": doc_id,
        "pk": cluster_pk(kind, doc_id),
        "type": kind,
        "name": name,
        "body": _body(record),
    }


def cluster_pk(kind: str, doc_id: str) -> str:
    """The partition of a cluster document: its kind's shared one, else its own id."""
    return CLUSTER_PARTITIONS.get(kind, doc_id)


def cluster_id(kind: str, name: str) -> str:
    """The document id of a named thing; Cosmos ids may not hold / \\ ? # (escaped here)."""
    escaped = name.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C")
    return f"{kind}:" + escaped.replace("?", "%3F").replace("#", "%23")


def named_id(kind: str, name: str) -> str:
    """A node group's id is its case-folded name, so that creating ``rG0`` beside ``Rg0`` is
    a 409 from Cosmos itself (groups match whatever the case); the body keeps the spelling.
    Groups stored before this by their spelling (``group:Rg0``) are still read and replaced
    (:class:`shared.adapters.cosmos_store.CosmosStore` ``put_group``)."""
    return cluster_id(kind, name.casefold() if kind == "group" else name)


def load(model: type[R], doc: dict[str, Any]) -> R:
    """A fresh record from a stored document, with its etag."""
    record = model.model_validate(doc["body"])
    record.etag = doc["_etag"]
    return record


# --- queries -----------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One parameterised query and where it runs (``partition_key`` None: cross-partition)."""

    text: str
    parameters: list[dict[str, Any]]
    partition_key: int | str | None = None

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query": self.text, "parameters": self.parameters}
        if self.partition_key is None:
            out["enable_cross_partition_query"] = True
        else:
            out["partition_key"] = self.partition_key
        return out


CROSS_PARTITION = (
    "list_jobs",
    "unfinished_jobs",
)
"""The queries here that read every partition; none is a hot path (docs/cosmos.md, "How
the hot paths are found"). The scheduler's and heartbeats' reads go through one partition
of the ``index`` container (:mod:`shared.adapters.cosmos_index_docs`, whose own
``CROSS_PARTITION`` names the repair's scans)."""


def _in(name: str, values: Collection[str]) -> tuple[str, list[dict[str, Any]]]:
    """``c.<name> IN (@name0, @name1, ...)`` with one parameter per value."""
    params = [{"name": f"@{name}{i}", "value": v} for i, v in enumerate(sorted(values))]
    return f"c.{name} IN ({', '.join(p['name'] for p in params)})", params


def list_jobs(
    states: Collection[JobState] | None,
    limit: int,
    before: int | None = None,
    owner: str | None = None,
) -> Query:
    """Visible jobs, newest first; ``before``: ids below it (the continuation of a page);
    ``owner``: the top-level copy, indexed (documents from before it: cosmos_owners)."""
    where = "c.type = @type AND c.visible = true"
    params: list[dict[str, Any]] = [{"name": "@type", "value": "job"}]
    if owner is not None:
        where += " AND c.owner = @owner"
        params.append({"name": "@owner", "value": owner})
    if before is not None:
        where += " AND c.jobId < @before"
        params.append({"name": "@before", "value": before})
    if states is not None:
        term, more = _in("state", {JobState(s).value for s in states})
        where, params = f"{where} AND {term}", params + more
    text = f"SELECT TOP @limit * FROM c WHERE {where} ORDER BY c.jobId DESC"
    return Query(text, [{"name": "@limit", "value": limit}, *params])


def unfinished_jobs(before_micros: int) -> Query:
    """Job documents ``add_job`` never made visible, submitted before a time (the purge)."""
    return Query(
        "SELECT * FROM c WHERE c.type = @type AND c.visible = false AND c.submitTime < @before",
        [{"name": "@type", "value": "job"}, {"name": "@before", "value": before_micros}],
    )


def partition_ids(job_id: int) -> Query:
    """The ids of every document of one job (the purge deletes them)."""
    return Query(
        "SELECT c.id FROM c WHERE c.jobId = @jobId",
        [{"name": "@jobId", "value": job_id}],
        job_id,
    )


def get_tasks(job_id: int, task_ids: list[int]) -> Query:
    return Query(
        "SELECT * FROM c WHERE c.jobId = @jobId AND c.type = @type"
        " AND ARRAY_CONTAINS(@taskIds, c.taskId) ORDER BY c.taskId ASC",
        [
            {"name": "@jobId", "value": job_id},
            {"name": "@type", "value": "task"},
            {"name": "@taskIds", "value": task_ids},
        ],
        job_id,
    )


def list_tasks(
    job_id: int, states: Collection[TaskState] | None, top: int, after: int = 0
) -> Query:
    """The first ``top`` tasks with ids above ``after`` in id order (the caller skips
    ``offset``: the stand-in lacks OFFSET LIMIT, and Cosmos charges the skipped documents of
    an OFFSET anyway)."""
    where = "c.jobId = @jobId AND c.type = @type AND c.taskId > @after"
    params: list[dict[str, Any]] = [
        {"name": "@jobId", "value": job_id},
        {"name": "@type", "value": "task"},
        {"name": "@after", "value": after},
    ]
    if states is not None:
        term, more = _in("state", {TaskState(s).value for s in states})
        where, params = f"{where} AND {term}", params + more
    text = f"SELECT TOP @top * FROM c WHERE {where} ORDER BY c.taskId ASC"
    return Query(text, [{"name": "@top", "value": top}, *params], job_id)


def partition_docs(job_id: int, doc_ids: list[str]) -> Query:
    """The current documents of some ids of one job (the no-batch commit reads them first)."""
    return Query(
        "SELECT * FROM c WHERE c.jobId = @jobId AND ARRAY_CONTAINS(@ids, c.id)",
        [{"name": "@jobId", "value": job_id}, {"name": "@ids", "value": doc_ids}],
        job_id,
    )


def get_ranges(job_id: int) -> Query:
    return Query(
        "SELECT * FROM c WHERE c.jobId = @jobId AND c.type = @type ORDER BY c.taskId ASC",
        [{"name": "@jobId", "value": job_id}, {"name": "@type", "value": "range"}],
        job_id,
    )


def list_named(kind: str) -> Query:
    """Nodes or node groups, by name: one partition (``nodes`` or ``groups``)."""
    return Query(
        "SELECT * FROM c WHERE c.pk = @pk AND c.type = @type ORDER BY c.name ASC",
        [{"name": "@pk", "value": CLUSTER_PARTITIONS[kind]}, {"name": "@type", "value": kind}],
        partition_key=CLUSTER_PARTITIONS[kind],
    )


# --- errors -------------------------------------------------------------------


def is_missing(error: CosmosHttpResponseError) -> bool:
    """A read of a document that does not exist: 404 from Cosmos; the stand-in
    (@vercel/cosmosdb-server 1.0.1) answers 500 with a JavaScript TypeError reading the
    absent document instead, recognised here by its body and nothing else."""
    if error.status_code == 404:
        return True
    text = str(error.message or "")
    return error.status_code == 500 and "Cannot read properties of undefined" in text


def lacks_batch(error: CosmosHttpResponseError) -> bool:
    """The server has no transactional batch (the stand-in answers 500 to the batch route)."""
    return error.status_code in (400, 404, 405, 500, 501)


def batch_status(error: Exception) -> int | None:
    """The status of the operation that failed a transactional batch."""
    index = getattr(error, "error_index", None)
    responses = getattr(error, "operation_responses", None) or []
    if index is not None and 0 <= index < len(responses):
        status = responses[index].get("statusCode")
        return int(status) if status is not None else None
    return getattr(error, "status_code", None)


# --- refusals --------------------------------------------------------------------


KINDS = {"node": "node", "group": "node group", "meta": "meta document"}


class Refused(Exception):
    """A create was refused (status); add_job undoes what it wrote and raises Conflict."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def result_etag(result: Mapping[str, Any]) -> str:
    etag = result.get("eTag") or (result.get("resourceBody") or {}).get("_etag")
    return str(etag)


def what(record: Record) -> str:
    if isinstance(record, Job):
        return f"job {record.id}"
    if isinstance(record, Task):
        return f"task {record.key}"
    if isinstance(record, TaskRange):
        return f"range {record.key}"
    return f"{type(record).__name__.lower()} {getattr(record, 'name', '')!r}"


def conflict(record: Record, status: int | None, label: str | None = None) -> Conflict:
    """The Conflict for a refused conditional write, saying why; nothing was written."""
    label = label or what(record)
    if status == 409:
        return Conflict(f"{label} already exists; nothing was written")
    if status == 404:
        return Conflict(f"{label} does not exist (deleted, or never stored); nothing was written")
    return Conflict(
        f"{label} was changed by another writer since it was read (stale etag); "
        "nothing was written: read it again and retry"
    )
