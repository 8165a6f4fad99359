"""The Cosmos DB Store beyond the contract suite (which runs it in tests/contract).

- The query text itself: every query is parameterised, and every query over one job
  names its partition in its text, since the stand-in ignores a query's partition key
  (a query that forgot its filter would pass there and read every partition in Azure).
- The transactional-batch path, which the stand-in lacks: checked against a recording
  container that answers as Cosmos DB documents it (ops, etags, error index).
- Against the stand-in (marker ``cosmos``): the queries the adapter really sends, the
  detection of the missing batch, and the stand-in's 500 for a missing item.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_parts
from shared.adapters.cosmos_store import CosmosStore
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, NotFound
from shared.ports.store import MAX_BATCH_BYTES, stored_size
from tests.emulators import COSMOS_KEY, cosmos_database_name, drop_cosmos_database

ALL_QUERIES = {
    "list_jobs": docs.list_jobs(None, 10),
    "list_jobs_states": docs.list_jobs({JobState.QUEUED, JobState.RUNNING}, 10),
    "list_jobs_before": docs.list_jobs(None, 10, before=42),
    "unfinished_jobs": docs.unfinished_jobs(1_700_000_000_000_000),
    "partition_ids": docs.partition_ids(7),
    "get_tasks": docs.get_tasks(7, [1, 2]),
    "list_tasks": docs.list_tasks(7, None, 10),
    "list_tasks_states": docs.list_tasks(7, [TaskState.QUEUED], 10),
    "partition_docs": docs.partition_docs(7, ["job", "task-1"]),
    "queued_tasks": docs.queued_tasks(10),
    "queued_tasks_skip": docs.queued_tasks(10, [3, 4]),
    "open_ranges": docs.open_ranges(10),
    "open_ranges_skip": docs.open_ranges(10, [3]),
    "get_ranges": docs.get_ranges(7),
    "active_tasks": docs.active_tasks(None),
    "active_tasks_node": docs.active_tasks("n1"),
    "list_named": docs.list_named("node"),
}
PARTITIONED = {
    "get_tasks",
    "list_tasks",
    "list_tasks_states",
    "partition_docs",
    "get_ranges",
    "partition_ids",
}


def check_parameterised(query: docs.Query) -> None:
    text = query.text
    assert "'" not in text and '"' not in text, f"a literal string in: {text}"
    assert not re.search(r"(?<![@\w])\d", text), f"a literal number in: {text}"
    named = set(re.findall(r"@\w+", text))
    given = {p["name"] for p in query.parameters}
    assert named == given, (text, named, given)


def check_partition(query: docs.Query) -> None:
    """A query over one job names it twice: as the partition key and in its WHERE clause."""
    assert query.partition_key is not None
    assert re.search(r"\bWHERE c\.jobId = @jobId\b", query.text), query.text
    job = next(p["value"] for p in query.parameters if p["name"] == "@jobId")
    assert job == query.partition_key
    assert "enable_cross_partition_query" not in query.kwargs()


@pytest.mark.parametrize("name", sorted(ALL_QUERIES))
def test_every_query_is_parameterised(name: str) -> None:
    check_parameterised(ALL_QUERIES[name])


@pytest.mark.parametrize("name", sorted(PARTITIONED))
def test_queries_of_one_job_name_its_partition(name: str) -> None:
    check_partition(ALL_QUERIES[name])


def test_only_the_known_queries_cross_partitions() -> None:
    crossing = {n for n, q in ALL_QUERIES.items() if q.partition_key is None}
    names = {
        n.removesuffix("_states")
        .removesuffix("_node")
        .removesuffix("_skip")
        .removesuffix("_before")
        for n in crossing
    }
    assert names == set(docs.CROSS_PARTITION)
    for name in crossing:
        assert ALL_QUERIES[name].kwargs()["enable_cross_partition_query"] is True


def test_no_query_uses_what_the_stand_in_lacks() -> None:
    """OFFSET LIMIT, GROUP BY, DISTINCT: the adapter uses none (list_tasks skips its offset
    after a TOP, which costs what OFFSET costs on Cosmos DB)."""
    for query in ALL_QUERIES.values():
        for word in ("OFFSET", "GROUP BY", "DISTINCT"):
            assert word not in query.text.upper()


def test_sorting_queries_have_their_composite_index() -> None:
    composites = [[p["path"] for p in c] for c in docs.JOBS_INDEXING["compositeIndexes"]]
    for query in (docs.queued_tasks(1), docs.open_ranges(1), docs.active_tasks(None)):
        order = re.search(r"ORDER BY (.*)$", query.text)
        assert order is not None
        paths = ["/" + term.split()[0].removeprefix("c.") for term in order.group(1).split(",")]
        assert paths in composites, (query.text, composites)


def test_document_ids_escape_what_cosmos_forbids() -> None:
    assert docs.cluster_id("node", "a/b\\c?d#e%f") == "node:a%2Fb%5Cc%3Fd%23e%25f"


def _error(status: int, message: str) -> CosmosHttpResponseError:
    return CosmosHttpResponseError(status_code=status, message=message)


def test_only_a_missing_item_counts_as_missing() -> None:
    assert docs.is_missing(_error(404, "Resource Not Found"))
    # The stand-in's answer to reading an absent item:
    assert docs.is_missing(_error(500, "Cannot read properties of undefined (reading 'pk')"))
    assert not docs.is_missing(_error(500, "Internal Server Error"))
    assert not docs.is_missing(_error(412, "Precondition Failed"))


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


def batch_store() -> tuple[CosmosStore, BatchContainer]:
    store = CosmosStore.__new__(CosmosStore)
    container = BatchContainer()
    store._jobs = container  # type: ignore[assignment]
    store.batch = True
    store._read = lambda *_a, **_k: None  # type: ignore[method-assign]
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


# --- against the stand-in ---------------------------------------------------------


@pytest.fixture
def cosmos_store(cosmos_endpoint: str, tmp_path: Path):
    store = CosmosStore(cosmos_endpoint, COSMOS_KEY, cosmos_database_name(tmp_path))
    yield store
    store.close()
    drop_cosmos_database(tmp_path)


@pytest.mark.cosmos
def test_stand_in_lacks_transactional_batch_so_the_fallback_is_used(
    cosmos_endpoint: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """@vercel/cosmosdb-server 1.0.1 answers the batch route with 500: detected once, logged;
    the contract suite then runs commit and add_job through the fallback, and the tests above
    cover the batch path Cosmos DB takes."""
    from shared.adapters import cosmos_connection

    cosmos_connection._BATCH_SUPPORT.pop(cosmos_endpoint, None)
    with caplog.at_level(logging.WARNING, logger="shared.adapters.cosmos_connection"):
        store = CosmosStore(cosmos_endpoint, COSMOS_KEY, cosmos_database_name(tmp_path))
    try:
        assert store.batch is False
        assert "has no transactional batch" in caplog.text
    finally:
        store.close()
        drop_cosmos_database(tmp_path)


@pytest.mark.cosmos
def test_stand_in_answers_a_missing_item_with_500_which_reads_as_not_found(
    cosmos_store: CosmosStore,
) -> None:
    with pytest.raises(CosmosHttpResponseError) as raised:
        cosmos_store._jobs.read_item("job", partition_key=12345)
    assert raised.value.status_code in (404, 500)
    assert docs.is_missing(raised.value)


@pytest.mark.cosmos
def test_the_queries_the_store_sends_are_parameterised_and_partitioned(
    cosmos_store: CosmosStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[dict[str, Any]] = []
    for container in (cosmos_store._jobs, cosmos_store._cluster):
        real = container.query_items

        def record(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            sent.append(kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(container, "query_items", record)
    job = Job(id=cosmos_store.next_job_id(), state=JobState.QUEUED)
    tasks = [Task(job_id=job.id, id=i, command="x") for i in (1, 2, 3)]
    cosmos_store.add_job(job, tasks)
    cosmos_store.list_jobs(states={JobState.QUEUED})
    cosmos_store.get_tasks(job.id, {1, 3})
    cosmos_store.list_tasks(job.id, states={TaskState.QUEUED}, offset=1)
    cosmos_store.queued_tasks(limit=5)
    cosmos_store.active_tasks(node="n1")
    tasks[0].move_to(TaskState.DISPATCHING)
    cosmos_store.commit(job=job, tasks=[tasks[0]])
    cosmos_store.list_nodes()
    cosmos_store.list_groups()
    assert len(sent) >= 8  # 7 reads above, and the no-batch commit's own read
    for kwargs in sent:
        query = docs.Query(kwargs["query"], kwargs["parameters"], kwargs.get("partition_key"))
        check_parameterised(query)
        if query.partition_key is not None:
            check_partition(query)
        else:
            assert kwargs["enable_cross_partition_query"] is True


def _crashed_job(store: CosmosStore, submit_time: datetime) -> Job:
    class Crash(BaseException):
        pass

    def crash(_written: int) -> None:
        raise Crash

    job = Job(id=store.next_job_id(), state=JobState.QUEUED, submit_time=submit_time)
    store.add_job_fault = crash
    with pytest.raises(Crash):
        store.add_job(job, [Task(job_id=job.id, id=i, command="x") for i in (1, 2)])
    store.add_job_fault = None
    return job


@pytest.mark.cosmos
def test_a_crashed_add_job_leaves_a_hidden_job_that_only_the_purge_removes(
    cosmos_store: CosmosStore,
) -> None:
    early = datetime(2025, 1, 1, tzinfo=UTC)
    job = _crashed_job(cosmos_store, early)
    assert len(cosmos_store.list_tasks(job.id)) == 2  # its parts are there, unseen
    assert cosmos_store.queued_tasks(limit=10) == []
    with pytest.raises(Conflict):  # the id stays taken until purged
        cosmos_store.add_job(job, [])
    assert cosmos_store.purge_unfinished_jobs(early) == 0  # not older than the cut-off
    assert cosmos_store.purge_unfinished_jobs(early + timedelta(seconds=1)) == 1
    assert cosmos_store.list_tasks(job.id) == []
    assert cosmos_store._read(cosmos_store._jobs, docs.JOB_DOC_ID, job.id) is None
    assert cosmos_store.purge_unfinished_jobs(early + timedelta(seconds=1)) == 0


@pytest.mark.cosmos
def test_a_purge_racing_an_add_job_wins_and_the_job_never_appears(
    cosmos_store: CosmosStore,
) -> None:
    job = Job(
        id=cosmos_store.next_job_id(),
        state=JobState.QUEUED,
        submit_time=datetime(2025, 1, 1, tzinfo=UTC),
    )
    tasks = [Task(job_id=job.id, id=i, command="x") for i in range(1, 151)]
    purged: list[int] = []

    def purge_now(_written: int) -> None:
        if not purged:  # another reconciler, between add_job's parts
            purged.append(cosmos_store.purge_unfinished_jobs(datetime.now(UTC)))

    cosmos_store.add_job_fault = purge_now
    with pytest.raises(Conflict, match="purged as unfinished"):
        cosmos_store.add_job(job, tasks)
    cosmos_store.add_job_fault = None
    assert purged == [1]
    with pytest.raises(NotFound):
        cosmos_store.get_job(job.id)
    assert cosmos_store.list_tasks(job.id, limit=1000) == []


def test_wiring_needs_an_endpoint_for_cosmos(tmp_path: Path) -> None:
    from shared.settings import Settings
    from shared.wiring import build_store

    with pytest.raises(ValueError, match="HPC_COSMOS_ENDPOINT"):
        build_store(Settings(home=tmp_path, store="cosmos"))


@pytest.mark.cosmos
def test_wiring_builds_the_cosmos_store_from_settings(
    cosmos_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.settings import Settings
    from shared.wiring import build_store

    monkeypatch.setenv("HPC_STORE", "cosmos")
    monkeypatch.setenv("HPC_COSMOS_ENDPOINT", cosmos_endpoint)
    monkeypatch.setenv("HPC_COSMOS_KEY", COSMOS_KEY)
    monkeypatch.setenv("HPC_COSMOS_DATABASE", cosmos_database_name(tmp_path))
    store = build_store(Settings(home=tmp_path))
    try:
        assert isinstance(store, CosmosStore)
        assert store.next_job_id() == 1
    finally:
        store.close()
        drop_cosmos_database(tmp_path)
