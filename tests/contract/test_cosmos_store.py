"""The Cosmos DB Store beyond the contract suite (which runs it in tests/contract): the query text.

Every query is parameterised, and every query over one job names its partition in its
text, since the stand-in ignores a query's partition key (a query that forgot its filter
would pass there and read every partition in Azure). The transactional-batch path is in
test_cosmos_batch.py, the checks against the stand-in in test_cosmos_stand_in.py.
"""

from __future__ import annotations

import re

import pytest

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_index_docs as ix
from shared.domain.states import JobState, TaskState
from tests.contract.cosmos_fixtures import _error, check_parameterised, check_partition

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
    "get_ranges": docs.get_ranges(7),
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
    """The queue's order (the hot paths read it from the index: test_cosmos_index.py)."""
    composites = [[p["path"] for p in c] for c in ix.INDEX_INDEXING["compositeIndexes"]]
    for query in (ix.queue("task", 1), ix.queue("range", 1)):
        order = re.search(r"ORDER BY (.*)$", query.text)
        assert order is not None
        paths = ["/" + term.split()[0].removeprefix("c.") for term in order.group(1).split(",")]
        assert paths in composites, (query.text, composites)


def test_document_ids_escape_what_cosmos_forbids() -> None:
    assert docs.cluster_id("node", "a/b\\c?d#e%f") == "node:a%2Fb%5Cc%3Fd%23e%25f"


def test_only_a_missing_item_counts_as_missing() -> None:
    assert docs.is_missing(_error(404, "Resource Not Found"))
    # The stand-in's answer to reading an absent item:
    assert docs.is_missing(_error(500, "Cannot read properties of undefined (reading 'pk')"))
    assert not docs.is_missing(_error(500, "Internal Server Error"))
    assert not docs.is_missing(_error(412, "Precondition Failed"))
