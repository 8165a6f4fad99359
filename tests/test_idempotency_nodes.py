"""A node add with an ``Idempotency-Key`` whose request dies half-way (the control plane
stopped between two VMs): the names are kept in the key's record before any node is made, so
its retry, once the dead request's lease is over, makes the nodes it had not made and
answers all of them; nothing is made twice. Before, the retry got a 409 saying to check
``hpc node list`` and add what was missing with a new key."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py and tests/test_nodes_admin.py
from __future__ import annotations

import json

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.domain.cluster import Node, Principal
from shared.domain.idempotency import LEASE
from shared.ports.compute import VmSpec
from shared.usecases.control_plane import ControlPlane
from shared.usecases.idempotency import Answer, KeyHeld
from shared.usecases.nodes_add import NodeAdd
from tests.test_control import Clock, clock, cp  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixture

ADMIN = Principal(name="root", role="admin")
BODY = {"group": "AzureNodes", "count": 3}


class Crash(BaseException):
    """The process died here."""


def add(cp: ControlPlane, key: str = "k") -> Answer:
    def render(nodes: list[Node]) -> str:
        return json.dumps([n.name for n in nodes])

    return cp.add_nodes_once(BODY, ADMIN, key, NodeAdd("AzureNodes", 3), render)


def dies_at_the_second_vm(provider: LocalProvider, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The provider's creates, recorded; the second one kills the request before it is made."""
    made: list[str] = []
    create = provider.create

    def crash_at_the_second(spec: VmSpec, **kw: object) -> object:
        if len(made) == 1:
            raise Crash
        made.append(spec.name)
        return create(spec, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(provider, "create", crash_at_the_second)
    return made


def test_a_node_add_dead_half_way_is_finished_by_its_retry(
    cp: ControlPlane, provider: LocalProvider, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp.set_group("AzureNodes", provider="local", max_nodes=3, node_cores=2)
    made = dies_at_the_second_vm(provider, monkeypatch)
    with pytest.raises(Crash):
        add(cp)
    assert made == ["azure-1"]
    with pytest.raises(KeyHeld):  # within the dead request's lease: it might still be working
        add(cp)
    monkeypatch.undo()
    clock.advance(LEASE.total_seconds() + 1)
    answer = add(cp)
    assert answer.status == 201 and json.loads(answer.body) == ["azure-1", "azure-2", "azure-3"]
    assert sorted(n.name for n in cp.store.list_nodes() if "AzureNodes" in n.groups) == [
        "azure-1",
        "azure-2",
        "azure-3",
    ]  # none twice, and the group's maxNodes (3) is not in the way of its own nodes
    assert sorted(provider._vms) == ["azure-1", "azure-2", "azure-3"]
    again = add(cp)
    assert again.replayed and again.body == answer.body


def test_a_node_of_the_dead_request_that_moved_on_is_answered_as_it_is(
    cp: ControlPlane, provider: LocalProvider, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp.set_group("AzureNodes", provider="local", max_nodes=3, node_cores=2)
    dies_at_the_second_vm(provider, monkeypatch)
    with pytest.raises(Crash):
        add(cp)
    monkeypatch.undo()
    cp.node_action("offline", ["azure-1"])  # an admin acted on it meanwhile
    clock.advance(LEASE.total_seconds() + 1)
    creates: list[str] = []
    create = provider.create

    def counted(spec: VmSpec, **kw: object) -> object:
        creates.append(spec.name)
        return create(spec, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(provider, "create", counted)
    assert json.loads(add(cp).body) == ["azure-1", "azure-2", "azure-3"]
    assert creates == ["azure-2", "azure-3"]  # azure-1 moved on: not created again
    assert cp.store.get_node("azure-1").held == "offline"
