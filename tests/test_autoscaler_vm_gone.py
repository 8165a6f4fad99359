"""A node whose VM the provider no longer lists: a probe killed the whole ``hpc up`` tree
while its AzureNodes VMs were Online; restarted, the local provider knew none of them, and
the nodes stayed Unreachable (and a stop of one Stopping) for 25 minutes, the job Queued.
When the provider's list is whole, an Unreachable or Stopping node with no VM is Offline
(its tasks were requeued when it went silent; a start creates its VM again). A failed list
judges nothing, and a node heard from (Online, Draining) is never judged by the list."""

from __future__ import annotations

import pytest

from shared.domain.autoscaler import AutoscalerState, ClusterView, autoscale
from shared.domain.autoscaler_notes import GONE
from shared.domain.states import NodeState
from shared.ports.compute import PowerState
from tests.test_autoscaler import T0, node, policy

N = NodeState


def orders(state: NodeState, *, listed: bool, power: dict | None = None) -> list[tuple]:
    view = ClusterView(nodes=[node("az-1", state)], queued=[], used_cores={},
                       power=power or {}, listed=listed)  # fmt: skip
    decision = autoscale(view, policy(max_nodes=2), AutoscalerState(), T0)
    return [(o.action, o.node, o.reason) for o in decision.orders]


@pytest.mark.parametrize("state", [N.UNREACHABLE, N.STOPPING])
def test_an_unheard_or_stopping_node_with_no_vm_listed_is_offline(state):
    assert orders(state, listed=True) == [("offline", "az-1", GONE)]


@pytest.mark.parametrize("state", [N.UNREACHABLE, N.STOPPING, N.ONLINE])
def test_a_failed_list_judges_nothing(state):
    assert orders(state, listed=False) == []


@pytest.mark.parametrize("state", [N.ONLINE, N.DRAINING, N.STARTING, N.OFFLINE])
def test_nodes_heard_from_starting_or_offline_are_not_judged_by_the_list(state):
    assert [o for o in orders(state, listed=True) if o[2] == GONE] == []


def test_a_listed_vm_is_judged_by_its_power_as_before():
    assert orders(N.UNREACHABLE, listed=True, power={"az-1": PowerState.RUNNING}) == []
