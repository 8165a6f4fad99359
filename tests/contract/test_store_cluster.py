"""The Store contract, the cluster's records: nodes, node groups and API tokens."""

from __future__ import annotations

import pytest

from shared.domain.cluster import DEFAULT_GROUPS, Node, NodeGroup, Principal
from shared.domain.states import NodeState
from shared.errors import Conflict, NotFound
from shared.ports.store import Store
from tests.contract.store_fixtures import T0, OpenStore, same_document

# --- nodes ------------------------------------------------------------------


def test_put_node_creates_a_node(store: Store) -> None:
    node = Node(name="n1", groups=["OnPremNodes"], cores=8, last_heartbeat=T0)
    store.put_node(node)
    assert node.etag is not None
    got = store.get_node("n1")
    assert same_document(got, node)
    assert got.etag == node.etag


def test_put_node_with_an_existing_name_conflicts(store: Store) -> None:
    store.put_node(Node(name="n1", cores=2))
    duplicate = Node(name="n1", cores=99)
    with pytest.raises(Conflict):
        store.put_node(duplicate)
    assert store.get_node("n1").cores == 2
    assert duplicate.etag is None


def test_put_node_replaces_with_a_matching_etag(store: Store) -> None:
    store.put_node(Node(name="n1"))
    node = store.get_node("n1")
    old_etag = node.etag
    node.move_to(NodeState.ONLINE, reason="heartbeat")
    store.put_node(node)
    assert node.etag != old_etag
    assert store.get_node("n1").state is NodeState.ONLINE
    assert store.get_node("n1").etag == node.etag


def test_put_node_with_stale_etag_changes_nothing(store: Store) -> None:
    store.put_node(Node(name="n1"))
    mine, theirs = store.get_node("n1"), store.get_node("n1")
    theirs.move_to(NodeState.STARTING)
    store.put_node(theirs)
    mine.move_to(NodeState.ONLINE)
    stale_etag = mine.etag
    with pytest.raises(Conflict):
        store.put_node(mine)
    assert store.get_node("n1").state is NodeState.STARTING
    assert mine.etag == stale_etag


def test_put_node_of_a_deleted_node_conflicts(store: Store) -> None:
    store.put_node(Node(name="n1"))
    node = store.get_node("n1")
    store.delete_node(store.get_node("n1"))
    with pytest.raises(Conflict):
        store.put_node(node)
    with pytest.raises(NotFound):
        store.get_node("n1")


def test_get_node_of_unknown_name_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_node("nope")


def test_list_nodes_is_by_name(store: Store) -> None:
    for name in ("b", "c", "a"):
        store.put_node(Node(name=name))
    assert [n.name for n in store.list_nodes()] == ["a", "b", "c"]


def test_delete_node_removes_it(store: Store) -> None:
    store.put_node(Node(name="n1"))
    store.put_node(Node(name="n2"))
    store.delete_node(store.get_node("n1"))
    assert [n.name for n in store.list_nodes()] == ["n2"]


def test_delete_node_with_stale_etag_conflicts_and_keeps_it(store: Store) -> None:
    store.put_node(Node(name="n1"))
    stale = store.get_node("n1")
    fresh = store.get_node("n1")
    fresh.cores = 2
    store.put_node(fresh)
    with pytest.raises(Conflict):
        store.delete_node(stale)
    assert store.get_node("n1").cores == 2


def test_delete_node_of_unknown_name_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.delete_node(Node(name="nope", etag="made-up"))


# --- node groups ------------------------------------------------------------


def test_default_groups_exist_from_the_start(store: Store) -> None:
    assert [g.name for g in store.list_groups()] == sorted(g.name for g in DEFAULT_GROUPS)
    assert all(g.etag is not None for g in store.list_groups())


def test_default_groups_are_created_once(open_store: OpenStore) -> None:
    first = open_store()
    azure = next(g for g in first.list_groups() if g.name == "AzureNodes")
    azure.max_nodes = 10
    first.put_group(azure)
    second = open_store()
    assert [g.name for g in second.list_groups()] == ["AzureNodes", "OnPremNodes"]
    assert next(g for g in second.list_groups() if g.name == "AzureNodes").max_nodes == 10


def test_put_group_creates_and_lists_groups_by_name(store: Store) -> None:
    group = NodeGroup(name="Gpu", min_nodes=1, max_nodes=4)
    store.put_group(group)
    assert group.etag is not None
    assert [g.name for g in store.list_groups()] == ["AzureNodes", "Gpu", "OnPremNodes"]
    got = next(g for g in store.list_groups() if g.name == "Gpu")
    assert same_document(got, group)
    assert got.etag == group.etag


def test_put_group_with_an_existing_name_conflicts(store: Store) -> None:
    with pytest.raises(Conflict):
        store.put_group(NodeGroup(name="AzureNodes", max_nodes=5))
    assert all(g.max_nodes == 0 for g in store.list_groups())


def test_put_group_with_stale_etag_changes_nothing(store: Store) -> None:
    mine = next(g for g in store.list_groups() if g.name == "AzureNodes")
    theirs = mine.model_copy()
    theirs.max_nodes = 3
    store.put_group(theirs)
    mine.max_nodes = 7
    with pytest.raises(Conflict):
        store.put_group(mine)
    assert next(g for g in store.list_groups() if g.name == "AzureNodes").max_nodes == 3
    mine = next(g for g in store.list_groups() if g.name == "AzureNodes")
    mine.max_nodes = 7
    store.put_group(mine)
    assert next(g for g in store.list_groups() if g.name == "AzureNodes").max_nodes == 7


# --- tokens -------------------------------------------------------------------


def test_token_is_found_by_its_digest(store: Store) -> None:
    digest = "ab" * 32
    store.add_token(digest, Principal(name="alice", role="user"))
    assert store.find_token(digest) == Principal(name="alice", role="user")


def test_unknown_token_finds_nobody(store: Store) -> None:
    store.add_token("ab" * 32, Principal(name="alice"))
    assert store.find_token("cd" * 32) is None


def test_tokens_are_listed_and_a_removed_one_finds_nobody(store: Store) -> None:
    alice, bob = Principal(name="alice", role="user"), Principal(name="bob", role="admin")
    store.add_token("ab" * 32, alice)
    store.add_token("cd" * 32, bob)
    store.add_token("ef" * 32, alice)
    assert store.list_tokens() == [("ab" * 32, alice), ("cd" * 32, bob), ("ef" * 32, alice)]
    assert store.remove_token("ab" * 32) is True
    assert store.remove_token("ab" * 32) is False  # gone already
    assert store.find_token("ab" * 32) is None
    assert store.find_token("ef" * 32) == alice  # her other token still works
    assert [d for d, _ in store.list_tokens()] == ["cd" * 32, "ef" * 32]
