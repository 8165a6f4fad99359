"""The Cosmos DB Store's transactional-batch path, which the stand-in lacks: checked against a
recording container that answers as Cosmos DB documents it (ops, etags, error index).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.cosmos.exceptions import CosmosBatchOperationError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_parts
from shared.adapters.cosmos_index import CosmosIndex
from shared.adapters.cosmos_store import CosmosStore
from shared.domain.models import Job, Task
from shared.errors import Conflict
from shared.ports.store import MAX_BATCH_BYTES, stored_size
from tests.contract.cosmos_fixtures import _error

# --- the transactional batch path (real Cosmos DB; the stand-in lacks it) ------------


class BatchContainer:
    """Answers execute_item_batch as Cosmos DB does: all ops or none, per-op results."""

    def __init__(self) -> None:
        self.docs: dict[tuple[Any, str], dict] = {}
        self.batches: list[tuple[Any, list]] = []
        self.serial = 0

    def execute_item_batch(self, ops: list, partition_key: Any, **_: Any) -> list[dict]:
        self.batches.append((partition_key, ops))
        staged = dict(self.docs)
        results = []
        for index, op in enumerate(ops):
            kind, args = op[0], op[1]
            options = op[2] if len(op) > 2 else {}
            doc = args[-1]
            key = (partition_key, doc["id"])
            assert doc["jobId"] == partition_key
            status = 201 if kind == "create" else 200
            if kind == "create" and key in staged:
                status = 409
            elif kind == "replace" and key not in staged:
                status = 404
            elif kind == "replace" and staged[key]["_etag"] != options.get("if_match_etag"):
                status = 412
            if status >= 400:
                responses = [{"statusCode": 424}] * len(ops)
                responses[index] = {"statusCode": status}
                raise CosmosBatchOperationError(
                    error_index=index, headers={}, status_code=status,
                    message="batch failed", operation_responses=responses,
                )  # fmt: skip
            self.serial += 1
            staged[key] = {**doc, "_etag": f"e{self.serial}"}
            results.append({"statusCode": status, "eTag": f"e{self.serial}"})
        self.docs = staged
        return results

    def replace_item(self, item: str, body: dict, *, etag: str, **_: Any) -> dict:
        key = (body["jobId"], item)
        if key not in self.docs:
            raise _error(404, "Not Found")
        if self.docs[key]["_etag"] != etag:
            raise _error(412, "Precondition Failed")
        self.serial += 1
        self.docs[key] = {**body, "_etag": f"e{self.serial}"}
        return self.docs[key]


class PointerContainer:
    """The ``index`` container of :func:`batch_store`: pointers by (pk, id), batches recorded
    (tests/contract/test_cosmos_index.py checks what the index sends on Cosmos DB)."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict] = {}
        self.batches: list[tuple[str, list]] = []
        self.serial = 0

    def execute_item_batch(self, ops: list, partition_key: str, **_: Any) -> list[dict]:
        self.batches.append((partition_key, ops))
        for index, (kind, args, *options) in enumerate(ops):
            stored = self.docs.get((partition_key, args[-1]["id"]))
            refused = 409 if kind == "create" and stored is not None else None
            if kind == "replace" and (stored or {}).get("_etag") != options[0]["if_match_etag"]:
                refused = 412
            if refused:
                raise CosmosBatchOperationError(
                    error_index=index, headers={}, status_code=refused, message="refused",
                    operation_responses=[{"statusCode": refused}],
                )  # fmt: skip
        results = []
        for _kind, args, *_options in ops:
            doc = args[-1]
            self.serial += 1
            self.docs[(partition_key, doc["id"])] = {**doc, "_etag": f"p{self.serial}"}
            results.append({"statusCode": 200, "eTag": f"p{self.serial}"})
        return results

    def query_items(self, *, parameters: list, partition_key: str, **_: Any) -> list[dict]:
        ids = next((p["value"] for p in parameters if p["name"] == "@ids"), None)
        return [d for (pk, i), d in self.docs.items() if pk == partition_key and i in (ids or [i])]

    def delete_item(self, item: str, *, partition_key: str, etag: str, **_: Any) -> None:
        if self.docs.get((partition_key, item), {}).get("_etag") != etag:
            raise _error(412, "Precondition Failed")
        del self.docs[(partition_key, item)]


def batch_store() -> tuple[CosmosStore, BatchContainer]:
    store = CosmosStore.__new__(CosmosStore)
    container = BatchContainer()
    store._jobs = container  # type: ignore[assignment]
    store.index = CosmosIndex(store, PointerContainer())  # type: ignore[arg-type]
    store.batch = True
    # A point read answers from the container (a job write reads the stored job first).
    store._read = lambda _c, doc_id, pk, **_k: container.docs.get((pk, doc_id))  # type: ignore[method-assign]
    store._visible = cosmos_parts.Visibility(lambda _job_id: None)
    return store, container


def test_add_job_on_cosmos_writes_the_job_hidden_first_and_shows_it_last() -> None:
    store, container = batch_store()
    job = Job(id=7)
    tasks = [Task(job_id=7, id=i, command="x") for i in range(1, 251)]
    shown_between: list[bool] = []
    store.add_job_fault = lambda _n: shown_between.append(container.docs[(7, "job")]["visible"])
    store.add_job(job, tasks)
    assert [len(ops) for _, ops in container.batches] == [100, 100, 51]
    assert {pk for pk, _ in container.batches} == {7}
    first = container.batches[0][1][0][1][0]
    assert (first["id"], first["visible"]) == (docs.JOB_DOC_ID, False)
    assert shown_between == [False, False, False]
    assert container.docs[(7, "job")]["visible"] is True  # the final replace
    assert job.etag == container.docs[(7, "job")]["_etag"]
    assert tasks[0].etag == container.docs[(7, "task-1")]["_etag"]


def test_add_job_on_cosmos_batches_by_bytes_as_well_as_count() -> None:
    store, container = batch_store()
    tasks = [Task(job_id=7, id=i, command="z" * 700_000) for i in range(1, 6)]
    store.add_job(Job(id=7), tasks)
    sizes = [
        sum(len(json.dumps(op[1][0]["body"], separators=(",", ":"))) for op in ops)
        for _, ops in container.batches
    ]
    assert [len(ops) for _, ops in container.batches] == [3, 2, 1]
    assert max(sizes) <= MAX_BATCH_BYTES
    assert sum(stored_size(t) for t in tasks) > MAX_BATCH_BYTES


def test_commit_on_cosmos_is_one_batch_of_etag_checked_replaces() -> None:
    store, container = batch_store()
    job = Job(id=7)
    tasks = [Task(job_id=7, id=i, command="x") for i in (1, 2)]
    store.add_job(job, tasks)
    container.batches.clear()
    job.name, tasks[1].name = "renamed", "renamed"
    old = [job.etag, tasks[1].etag]
    store.commit(job=job, tasks=[tasks[1]])
    ((pk, ops),) = container.batches
    assert pk == 7
    assert [(op[0], op[2]["if_match_etag"]) for op in ops] == [("replace", e) for e in old]
    assert container.docs[(7, "job")]["body"]["name"] == "renamed"
    assert job.etag == container.docs[(7, "job")]["_etag"] != old[0]


def test_a_stale_task_fails_the_whole_batch_on_cosmos() -> None:
    store, container = batch_store()
    job = Job(id=7)
    tasks = [Task(job_id=7, id=i, command="x") for i in (1, 2)]
    store.add_job(job, tasks)
    before = dict(container.docs)
    tasks[1].etag = "stale"
    job.name = "renamed"
    with pytest.raises(Conflict, match="task 7.2 was changed by another writer"):
        store.commit(job=job, tasks=tasks)
    assert container.docs == before


def test_add_job_on_cosmos_undoes_earlier_batches_when_a_later_one_fails() -> None:
    store, container = batch_store()
    deleted: list[str] = []
    container.delete_item = lambda doc_id, **_: deleted.append(doc_id)  # type: ignore[attr-defined]
    container.docs[(7, "task-150")] = {"id": "task-150", "jobId": 7, "_etag": "x"}
    with pytest.raises(Conflict):
        store.add_job(Job(id=7), [Task(job_id=7, id=i, command="x") for i in range(1, 201)])
    # The first batch held the hidden job and tasks 1-99: the parts go first, the job last.
    assert deleted == [docs.task_doc_id(i) for i in range(1, 100)] + [docs.JOB_DOC_ID]
