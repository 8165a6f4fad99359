"""``hpc node start`` of a VM its group's maxNodes leaves no room for is a 409 that says so,
before anything starts (a probe started a node of a group at maxNodes 0: "Starting", exit 0,
and the autoscaler stopped it again within a minute, with no word to the admin)."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py and tests/test_nodes_admin.py

from __future__ import annotations

import pytest

from shared.domain.autoscaler_notes import over_max
from shared.domain.cluster import Node, NodeGroup
from shared.domain.states import NodeState
from shared.errors import Conflict
from tests.test_autoscale_faults_usecases import AZ, managed
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixture

OFF, ON, STOPPING = NodeState.OFFLINE, NodeState.ONLINE, NodeState.STOPPING


def vm(name: str, state: NodeState = OFF, groups: tuple[str, ...] = (AZ,)) -> Node:
    return Node(name=name, groups=list(groups), cores=1, provider="local", state=state)


def group(max_nodes: int, **kw: object) -> NodeGroup:
    return NodeGroup(**{"name": AZ, "provider": "local", "max_nodes": max_nodes, **kw})


@pytest.mark.parametrize(
    ("groups", "nodes", "start", "expected"),
    [
        ([group(0)], [vm("a")], ["a"], "AzureNodes has maxNodes 0 and 0 nodes up: the autoscaler "
         "would stop a again at its next run; raise it first, by one for each node to start (hpc node "
         "start --group asks node by node): hpc nodegroup set AzureNodes --max 1"),
        ([group(2)], [vm("a", ON), vm("b")], ["b"], None),  # room for one more
        ([group(2)], [vm("a", ON), vm("b", ON), vm("c")], ["c"], "AzureNodes has maxNodes 2 and "
         "2 nodes up: the autoscaler would stop c again at its next run; raise it first, by one "
         "for each node to start (hpc node start --group asks node by node): hpc nodegroup set "
         "AzureNodes --max 3"),
        ([group(2)], [vm("a", ON), vm("b"), vm("c")], ["b", "c"], "AzureNodes has maxNodes 2 and "
         "1 node up: the autoscaler would stop b, c again at its next run; raise it first, by one "
         "for each node to start (hpc node start --group asks node by node): hpc nodegroup set "
         "AzureNodes --max 3"),
        ([group(1)], [vm("a", STOPPING), vm("b")], ["b"], None),  # a stopping one is not up
        ([group(0, autoscale=False)], [vm("a")], ["a"], None),  # the autoscaler leaves it be
        ([group(0, provider="azure")], [vm("a")], ["a"], None),  # not this cluster's provider
    ],
)  # fmt: skip
def test_a_start_over_max_is_refused_with_how_to_make_room(groups, nodes, start, expected):
    starting = [n for n in nodes if n.name in start]
    assert over_max(starting, groups, nodes, "local") == expected


def test_hpc_node_start_over_max_is_a_409_and_starts_nothing(cp, provider, clock):
    names = managed(cp, provider, 2)
    cp.set_group(AZ, max_nodes=1)
    with pytest.raises(Conflict, match=r"AzureNodes has maxNodes 1 and 0 nodes up: .* --max 2"):
        cp.node_action("start", names)
    assert {cp.store.get_node(n).state for n in names} == {OFF}
    [started] = cp.node_action("start", names[:1])  # within the max: as before
    assert started.state is NodeState.STARTING
    clock.advance(1)
    cp.autoscale()
    assert cp.store.get_node(names[0]).state is NodeState.STARTING  # not stopped again
