"""Checks the Cosmos DB Store tests share: a query is parameterised and names its partition;
a CosmosHttpResponseError as the SDK raises it.
"""

from __future__ import annotations

import re

from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs


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


def _error(status: int, message: str) -> CosmosHttpResponseError:
    return CosmosHttpResponseError(status_code=status, message=message)
