"""The Cosmos DB Store against the stand-in (marker ``cosmos``): the queries the adapter really
sends, the detection of the missing batch, the stand-in's 500 for a missing item, the purge of
a crashed ``add_job``, and the wiring that builds the store from settings.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters.cosmos_store import CosmosStore
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, NotFound
from tests.contract.cosmos_fixtures import check_parameterised, check_partition
from tests.emulators import COSMOS_KEY, cosmos_database_name, drop_cosmos_database

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
    # 5 reads above (queued_tasks and active_tasks read the index container instead,
    # recorded by test_cosmos_index.py), and the no-batch commit's own read
    assert len(sent) >= 6
    for kwargs in sent:
        query = docs.Query(kwargs["query"], kwargs["parameters"], kwargs.get("partition_key"))
        check_parameterised(query)
        if query.partition_key in ("nodes", "groups"):  # the cluster container's lists
            assert re.search(r"\bWHERE c\.pk = @pk\b", query.text), query.text
        elif query.partition_key is not None:
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
