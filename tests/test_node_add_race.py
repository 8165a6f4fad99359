"""Two node adds at once choose their names from the same list of nodes, so both may choose
``azure-1``. Before, the second to reach a name found the first's node and answered it as its
own (as a retry of a request that died after making it would): two adds of 2 made 2 nodes
and each said it made 2. Or its create failed with a 409 half-way. Each node now says which
add made it (``added_by``): an add that finds another's node under a name it chose takes the
next free name instead, and a keyed add's record is told the new name before it is made, so
a retry answers the nodes made."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py and tests/test_nodes_admin.py
from __future__ import annotations

import json
import threading

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.domain.cluster import Node, Principal
from shared.domain.idempotency import KeyRecord
from shared.errors import Conflict, NotFound
from shared.usecases.control_plane import ControlPlane
from shared.usecases.nodes_add import NodeAdd
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixture

ADMIN = Principal(name="root", role="admin")
GROUP = "AzureNodes"


def _names(nodes: list[Node]) -> list[str]:
    return [n.name for n in nodes]


def _members(cp: ControlPlane) -> list[str]:
    return sorted(n.name for n in cp.store.list_nodes() if GROUP in n.groups)


@pytest.fixture
def group(cp: ControlPlane, provider: LocalProvider) -> None:
    cp.set_group(GROUP, provider="local", max_nodes=20, node_cores=2)


def another_add_once_names_are_kept(
    cp: ControlPlane, monkeypatch: pytest.MonkeyPatch, count: int
) -> list[Node]:
    """Run an add of ``count`` (filled into the list returned) right after a keyed add kept
    its names in its record: it chooses from the same list."""
    put = cp.store.put_idempotency_key
    other: list[Node] = []

    def then_another_add(record: KeyRecord) -> None:
        put(record)
        if record.node_names and not other:
            other.extend(cp.add_nodes(GROUP, count))

    monkeypatch.setattr(cp.store, "put_idempotency_key", then_another_add)
    return other


def test_a_keyed_add_whose_names_an_add_takes_meanwhile_makes_its_own(
    cp: ControlPlane, provider: LocalProvider, group: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another add runs between the keyed add's choice of names and its first node."""
    other = another_add_once_names_are_kept(cp, monkeypatch, 2)  # azure-1, 2 too
    body = {"group": GROUP, "count": 2}
    answer = cp.add_nodes_once(
        body, ADMIN, "k1", NodeAdd(GROUP, 2), lambda nodes: json.dumps(_names(nodes))
    )
    assert _names(other) == ["azure-1", "azure-2"]
    assert json.loads(answer.body) == ["azure-3", "azure-4"]  # its own, not the other's
    assert _members(cp) == ["azure-1", "azure-2", "azure-3", "azure-4"]
    assert sorted(provider._vms) == ["azure-1", "azure-2", "azure-3", "azure-4"]
    record = cp.store.get_idempotency_key(ADMIN.name, "k1")
    assert record is not None and record.node_names == ["azure-3", "azure-4"]
    again = cp.add_nodes_once(
        body, ADMIN, "k1", NodeAdd(GROUP, 2), lambda nodes: json.dumps(_names(nodes))
    )
    assert again.replayed and again.body == answer.body


def test_an_add_whose_create_another_add_beat_takes_the_next_name(
    cp: ControlPlane, provider: LocalProvider, group: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other add makes the name between this add's read (none) and its create."""
    get = cp.store.get_node
    other: list[Node] = []

    def another_add_first(name: str) -> Node:
        if name == "azure-1" and not other:
            other.append(Node(name="-"))  # once: the other add reads for itself
            other[:] = cp.add_nodes(GROUP, 1)
            raise NotFound(name)  # what this add read just before
        return get(name)

    monkeypatch.setattr(cp.store, "get_node", another_add_first)
    mine = cp.add_nodes(GROUP, 2)
    assert _names(other) == ["azure-1"]
    assert sorted(_names(mine)) == ["azure-2", "azure-3"]  # no 409, and not the other's node
    assert _members(cp) == ["azure-1", "azure-2", "azure-3"]


def test_adds_at_once_make_every_node_they_answer(
    cp: ControlPlane, provider: LocalProvider, group: None
) -> None:
    answers: list[list[str]] = []
    errors: list[BaseException] = []

    def add() -> None:
        try:
            answers.append(_names(cp.add_nodes(GROUP, 3)))
        except BaseException as exc:  # the test reads it
            errors.append(exc)

    threads = [threading.Thread(target=add) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    answered = [name for names in answers for name in names]
    assert len(answered) == 15 and sorted(answered) == _members(cp)  # each once, all made
    assert sorted(provider._vms) == _members(cp)


def test_adds_at_once_stay_within_max_nodes(
    cp: ControlPlane, provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both passed the check on the same list (a review: with maxNodes 2, two adds of 2
    made 4): the one that finds the other's nodes counts again and refuses."""
    cp.set_group(GROUP, provider="local", max_nodes=2, node_cores=2)
    other = another_add_once_names_are_kept(cp, monkeypatch, 2)
    with pytest.raises(Conflict, match="another node add took node group AzureNodes's room"):
        cp.add_nodes_once(
            {"group": GROUP, "count": 2}, ADMIN, "k2", NodeAdd(GROUP, 2), lambda n: "[]"
        )
    assert _names(other) == ["azure-1", "azure-2"]
    assert _members(cp) == ["azure-1", "azure-2"] and sorted(provider._vms) == _members(cp)
