"""The Cosmos DB Store's ids for names (marker ``cosmos``): a node group's id is its case-folded
name, a user's role is its user document; documents an older version stored (a group under
its spelt id, tokens without a user document) are still read and respected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters import cosmos_docs as docs
from shared.adapters.cosmos_store import CosmosStore
from shared.domain.cluster import DEFAULT_GROUPS, NodeGroup, Principal
from shared.errors import Conflict
from tests.emulators import COSMOS_KEY, cosmos_database_name, drop_cosmos_database

pytestmark = pytest.mark.cosmos


@pytest.fixture
def open_cosmos(cosmos_endpoint: str, tmp_path: Path) -> Iterator:
    opened: list[CosmosStore] = []

    def open_() -> CosmosStore:
        store = CosmosStore(cosmos_endpoint, COSMOS_KEY, cosmos_database_name(tmp_path))
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()
    drop_cosmos_database(tmp_path)


def store_legacy_group(store: CosmosStore, group: NodeGroup) -> None:
    """A group as older code stored it: under ``group:<its spelling>``."""
    legacy_id = docs.cluster_id("group", group.name)
    store._cluster.create_item(docs.named_doc("group", group.name, group, legacy_id))


def group_ids(store: CosmosStore) -> list[str]:
    return sorted(d["id"] for d in store._query(store._cluster, docs.list_named("group")))


def test_a_group_is_stored_under_its_case_folded_name(open_cosmos) -> None:
    store = open_cosmos()
    store.put_group(NodeGroup(name="GpuNodes"))
    assert group_ids(store) == ["group:azurenodes", "group:gpunodes", "group:onpremnodes"]
    assert [g.name for g in store.list_groups()] == ["AzureNodes", "GpuNodes", "OnPremNodes"]


def test_a_group_under_its_old_id_is_listed_refused_again_and_replaced(open_cosmos) -> None:
    store = open_cosmos()
    store_legacy_group(store, NodeGroup(name="Legacy", max_nodes=1))
    for spelling in ("Legacy", "legacy", "LEGACY"):
        with pytest.raises(Conflict):
            store.put_group(NodeGroup(name=spelling))
    mine = next(g for g in store.list_groups() if g.name == "Legacy")
    stale = mine.model_copy()
    mine.max_nodes = 4
    store.put_group(mine)  # replaced where it is
    with pytest.raises(Conflict):
        store.put_group(stale)
    assert next(g for g in store.list_groups() if g.name == "Legacy").max_nodes == 4
    assert "group:Legacy" in group_ids(store) and "group:legacy" not in group_ids(store)


def test_default_groups_under_their_old_ids_are_not_made_again(open_cosmos) -> None:
    store = open_cosmos()
    for group in DEFAULT_GROUPS:  # a database an older version made
        doc_id = docs.named_id("group", group.name)
        store._cluster.delete_item(doc_id, partition_key=docs.cluster_pk("group", doc_id))
        store_legacy_group(store, group)
    again = open_cosmos()
    assert [g.name for g in again.list_groups()] == ["AzureNodes", "OnPremNodes"]
    assert group_ids(again) == ["group:AzureNodes", "group:OnPremNodes"]


def test_tokens_stored_without_a_user_document_keep_their_role(open_cosmos) -> None:
    store = open_cosmos()
    doc_id = docs.cluster_id("token", "ab" * 32)
    body = Principal(name="alice", role="user").model_dump(mode="json")
    store._cluster.create_item({"id": doc_id, "pk": doc_id, "type": "token", "body": body})
    with pytest.raises(Conflict, match="role user"):
        store.add_token("cd" * 32, Principal(name="alice", role="admin"))
    store.add_token("ef" * 32, Principal(name="alice", role="user"))
    assert [p.role for _, p in store.list_tokens()] == ["user", "user"]
    assert store.remove_token("ab" * 32) and store.remove_token("ef" * 32)
    store.add_token("cd" * 32, Principal(name="alice", role="admin"))  # gone: a new role
    assert store.list_tokens() == [("cd" * 32, Principal(name="alice", role="admin"))]
