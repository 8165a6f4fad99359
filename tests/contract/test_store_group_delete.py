"""The Store contract, deleting a node group (``delete_group``, for ``hpc nodegroup delete``):
under its etag, NotFound once gone, and the name (in any spelling) free again after."""

from __future__ import annotations

import pytest

from shared.domain.cluster import NodeGroup
from shared.errors import Conflict, NotFound
from shared.ports.store import Store
from tests.contract.store_fixtures import OpenStore


def _group(store: Store, name: str) -> NodeGroup:
    return next(g for g in store.list_groups() if g.name == name)


def test_delete_group_removes_it_and_keeps_the_others(store: Store) -> None:
    store.put_group(NodeGroup(name="OnPremNode", description="a typo"))
    store.delete_group(_group(store, "OnPremNode"))
    assert [g.name for g in store.list_groups()] == ["AzureNodes", "OnPremNodes"]


def test_delete_group_with_a_stale_etag_conflicts_and_keeps_it(store: Store) -> None:
    store.put_group(NodeGroup(name="Gpu"))
    stale = _group(store, "Gpu")
    fresh = _group(store, "Gpu")
    fresh.description = "changed since"
    store.put_group(fresh)
    with pytest.raises(Conflict):
        store.delete_group(stale)
    assert _group(store, "Gpu").description == "changed since"


def test_delete_group_of_a_group_never_read_conflicts(store: Store) -> None:
    store.put_group(NodeGroup(name="Gpu"))
    with pytest.raises(Conflict):
        store.delete_group(NodeGroup(name="Gpu"))  # no etag: not a copy read from the store
    assert "Gpu" in [g.name for g in store.list_groups()]


def test_delete_group_of_a_deleted_group_raises_not_found(store: Store) -> None:
    store.put_group(NodeGroup(name="Gpu"))
    group = _group(store, "Gpu")
    store.delete_group(group)
    with pytest.raises(NotFound):
        store.delete_group(group)
    with pytest.raises(NotFound):
        store.delete_group(NodeGroup(name="Nope", etag="made-up"))


def test_a_deleted_group_may_be_created_again_in_another_spelling(
    open_store: OpenStore,
) -> None:
    first, second = open_store(), open_store()
    first.put_group(NodeGroup(name="GpuNodes", max_nodes=3))
    first.delete_group(_group(first, "GpuNodes"))
    second.put_group(NodeGroup(name="gpuNODES"))
    assert _group(first, "gpuNODES").max_nodes == 0  # a new group, nothing of the old one
    assert "GpuNodes" not in [g.name for g in second.list_groups()]
