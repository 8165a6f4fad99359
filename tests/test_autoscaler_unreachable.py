"""An Unreachable VM that stays so past the deployment timeout is deallocated, as a table on
a fake clock. A probe SIGSTOPped a VM's agent: the node went Unreachable (its tasks were
requeued) and its VM ran, billing, for as long as one waited, with no word in the log
(Slurm powers down a node DOWN past its timeouts; CycleCloud terminates unresponsive nodes)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.autoscaler import AutoscalerState
from shared.domain.autoscaler_notes import deallocation_done
from shared.domain.growshrink import NodeMemory
from shared.domain.states import NodeState
from shared.ports.compute import PowerState
from tests.test_autoscaler import AZ, MIN, OFF, ON, T0, S, actions, node, policy, run, started
from tests.test_autoscaler import tasks as queued

N, P = NodeState, PowerState
TIMEOUT = 20 * MIN
ON_VM = {"az-1": P.RUNNING}


def silent(name: str = "az-1", *, held: str | None = None, state: NodeState = N.UNREACHABLE):
    """A node gone Unreachable at T0 (its state's time: the reconciler's move)."""
    n = node(name, state)
    n.held = held  # type: ignore[assignment]
    if state is N.UNREACHABLE:
        n.state_reason = "no heartbeat for 15 s"
    return n


def decide(nodes, *, after: timedelta, power=None, **kw):
    pol = kw.pop("pol", None) or policy(deployment_timeout=TIMEOUT)
    return run(nodes, pol=pol, now=T0 + after, power=ON_VM if power is None else power, **kw)


@pytest.mark.parametrize(
    ("after", "power", "expected"),
    [
        (0 * S, ON_VM, []),
        (TIMEOUT - S, ON_VM, []),  # not yet
        (TIMEOUT, ON_VM, [("stop", "az-1")]),  # billed the timeout with no agent heard
        (3 * TIMEOUT, ON_VM, [("stop", "az-1")]),
        (TIMEOUT, {"az-1": P.STARTING}, [("stop", "az-1")]),
        (TIMEOUT, {}, []),  # no power known (a failed list): nothing judged
        (TIMEOUT, {"az-1": P.DEALLOCATED}, [("offline", "az-1")]),  # off already: evicted
    ],
)
def test_an_unreachable_vm_is_deallocated_once_past_the_deployment_timeout(after, power, expected):
    assert actions(decide([silent()], after=after, power=power)) == expected


def test_the_stop_says_why_and_the_vm_is_started_last_until_it_joins():
    d = decide([silent()], after=TIMEOUT + 5 * MIN)
    [order] = d.orders
    assert order.reason.startswith("unreachable for 25 min (no agent heard, past the deploy")
    assert "its VM is stopped (it billed with no agent heard)" in order.reason
    assert d.state.nodes["az-1"] == NodeMemory(failed_at=T0 + TIMEOUT + 5 * MIN)
    assert AZ not in d.state.groups or d.state.groups[AZ].backoff_until is None  # no back-off


@pytest.mark.parametrize("state", [N.ONLINE, N.DRAINING, N.STOPPING, N.STARTING])
def test_a_node_whose_agent_came_back_or_that_is_not_unreachable_is_not_stopped_for_it(state):
    """Its agent heard again before the timeout: the node is Online (or Draining, held) and
    its VM serves; Stopping and Starting nodes have their own rules."""
    d = decide([silent(state=state)], after=TIMEOUT)
    assert not [o for o in d.orders if "unreachable" in o.reason]


def test_an_agent_heard_again_before_the_timeout_keeps_its_vm():
    d = decide([silent()], after=TIMEOUT - MIN)  # still unheard: waits
    back = node("az-1", ON, since=T0 + TIMEOUT - 30 * S)  # it registered again
    d = decide([back], after=TIMEOUT, state=d.state, used={"az-1": 1})
    assert d.orders == []


def test_an_admins_drain_of_an_unreachable_vm_does_not_keep_it_billing_but_stays_held():
    """The drain keeps the node held (never started by the autoscaler) but not its VM up:
    an unheard VM serves no admin looking at it through the cluster."""
    d = decide([silent(held="drain")], after=TIMEOUT)
    assert actions(d) == [("stop", "az-1")]
    assert "held by an admin's drain: it stays held" in d.orders[0].reason


def test_a_group_whose_autoscale_is_off_still_gets_this_repair():
    pol = policy(deployment_timeout=TIMEOUT, exclude_node_groups=frozenset({AZ}))
    assert actions(decide([silent()], after=TIMEOUT, pol=pol)) == [("stop", "az-1")]


def test_the_stop_rate_limit_holds_back_the_rest_to_a_later_run():
    pol = policy(deployment_timeout=TIMEOUT, max_stops_per_run=1, max_nodes=3)
    power = {f"az-{i}": P.RUNNING for i in (1, 2)}
    d = decide([silent("az-1"), silent("az-2")], after=TIMEOUT, power=power, pol=pol)
    assert actions(d) == [("stop", "az-1")]


def test_once_stopped_the_node_is_offline_with_that_reason_and_a_replacement_starts():
    d = decide([silent(), node("az-2", OFF)], after=TIMEOUT, power={**ON_VM})
    why = d.orders[0].reason
    stopping = node("az-1", N.STOPPING, since=T0 + TIMEOUT)
    stopping.state_reason = why
    pol = policy(deployment_timeout=TIMEOUT, grow_interval=0 * S, max_nodes=1)
    d = run([stopping, node("az-2")], pol=pol, state=d.state, now=T0 + TIMEOUT + MIN,
            power={"az-1": P.DEALLOCATING})  # fmt: skip
    assert actions(d) == [("offline", "az-1")]
    assert d.orders[0].reason == f"{why}; its VM is deallocating"  # not "deallocated" yet
    d = run([node("az-1"), node("az-2")], queued(1), pol=pol, state=d.state,
            now=T0 + TIMEOUT + 2 * MIN)  # fmt: skip
    assert started(d) == ["az-2"]  # the healthy one, the unheard one last


def test_state_with_it_survives_the_store():
    d = decide([silent()], after=TIMEOUT)
    assert AutoscalerState.from_dict(d.state.to_dict()) == d.state


@pytest.mark.parametrize(
    ("reason", "after"),
    [
        ("its VM is deallocating: the stop is done", "its VM is deallocated: the stop is done"),
        ("stopped by an admin; its VM is deallocating", "stopped by an admin; its VM is deallocated"),
        ("failed: its agent did not join ...; deallocating", "failed: its agent did not join ...; deallocated"),
        ("its VM is deallocated: the stop is done", None),  # said right already
        ("taken offline by an admin", None),
        (None, None),
    ],
)  # fmt: skip
def test_an_offline_nodes_reason_says_deallocated_once_its_deallocation_is_done(reason, after):
    """A probe: the reason still said "deallocating" after its VM had gone."""
    assert deallocation_done(reason) == after
