"""An admin's drain or offline is kept (``Node.held``) until an admin starts the node again:
a restarted agent or a rebooted machine does not bring it back, and the autoscaler does not
start it. The registration rule as a table, then the use cases on the embedded store and
bus (agents played by tests/agent_double.py) and the autoscaler's run."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import lifecycle
from shared.domain.cluster import Node
from shared.domain.messages import NodeStopping, RegisterNode, Superseded
from shared.domain.states import NodeState
from shared.errors import Conflict
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import hpc
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures
from tests.test_nodes_admin import managed, provider  # noqa: F401 - fixtures

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
N = NodeState


def stored(state: NodeState, held: str | None) -> Node:
    return Node(
        name="n1",
        groups=["OnPremNodes"],
        cores=4,
        state=state,
        held=held,
        incarnation=3,
        agent_id="agent-old1",
        host_id="host-aaaa",
        agent_started_at=NOW - timedelta(hours=1),
        last_heartbeat=NOW - timedelta(minutes=5),
    )


@pytest.mark.parametrize(
    ("state", "held", "after"),
    [
        (N.OFFLINE, None, N.ONLINE),  # as before: a registration brings it Online
        (N.DRAINING, None, N.ONLINE),
        (N.OFFLINE, "offline", N.OFFLINE),
        (N.UNREACHABLE, "offline", N.OFFLINE),
        (N.STARTING, "offline", N.OFFLINE),
        (N.DRAINING, "drain", N.DRAINING),
        (N.OFFLINE, "drain", N.DRAINING),  # drained, then its agent stopped
        (N.UNREACHABLE, "drain", N.DRAINING),
        (N.STOPPING, "drain", N.DRAINING),
    ],
)
def test_a_registration_keeps_an_admins_hold(state, held, after):
    node = stored(state, held)
    request = RegisterNode(
        node="n1",
        agent_id="agent-new2",
        host_id="host-aaaa",
        started_at=NOW,
        cores=4,
        groups=["OnPremNodes"],
    )
    decision = lifecycle.register(node, request, now=NOW, timeout=timedelta(seconds=15))
    assert decision.accepted and decision.incarnation == 4 and decision.previous == 3
    assert node.state is after and node.held == held
    if held:
        assert "by an admin, so it stays" in (node.state_reason or "")
        assert "hpc node online n1" in (node.state_reason or "")


@pytest.mark.parametrize(
    ("state", "held", "reason", "incarnation", "applied", "after"),
    [
        (N.ONLINE, None, "agent registered", 3, True, N.OFFLINE),
        (N.DRAINING, "drain", "drained by an admin", 3, True, N.OFFLINE),
        # Offline already: its stop is recorded, the hold kept (lifecycle.online refuses)
        (N.OFFLINE, "offline", "taken offline by an admin", 3, True, N.OFFLINE),
        (N.OFFLINE, None, "its agent did not register again", 3, True, N.OFFLINE),
        (N.OFFLINE, "offline", lifecycle.AGENT_STOPPED, 3, False, N.OFFLINE),  # applied already
        (N.OFFLINE, "offline", "taken offline by an admin", 2, False, N.OFFLINE),  # stale
        (N.ONLINE, None, "agent registered", 2, False, N.ONLINE),
    ],
)
def test_an_agents_stop(state, held, reason, incarnation, applied, after):
    node = stored(state, held)
    node.state_reason = reason
    before = node.model_copy(deep=True)
    ev = NodeStopping(node="n1", incarnation=incarnation, seq=9)
    assert lifecycle.stopping(node, ev, NOW) is applied
    if not applied:
        assert node == before
        return
    assert (node.state, node.state_reason, node.held) == (after, lifecycle.AGENT_STOPPED, held)
    assert node.state_time == NOW and node.incarnation == 3
    assert lifecycle.online_refusal(node, now=NOW, timeout=timedelta(seconds=15)) is not None


def test_stopping_an_on_prem_node_is_an_admins_drain_kept_across_agent_restarts(cp, clock):
    """An on-prem machine is not powered off: `hpc node stop` drains it, held as `hpc node
    drain` does, so a restarted agent does not silently bring it back Online."""
    agent = register(cp, "n1", cores=2)
    [node] = cp.node_action("stop", ["n1"])
    assert (node.state, node.held) == (N.DRAINING, "drain")
    assert "an on-prem machine is not powered off" in (node.state_reason or "")
    assert "hpc node online n1" in (node.state_reason or "")
    restarted = AgentDouble(cp, "n1", cores=2, host_id=agent.host_id)
    assert restarted.register().accepted
    node = cp.store.get_node("n1")
    assert (node.state, node.held) == (N.DRAINING, "drain")
    cp.submit({"command": "work"})
    assert cp.schedule_pass() == 0
    clock.advance(1)
    restarted.send(restarted.heartbeat())
    [node] = cp.node_action("start", ["n1"])  # hpc node start | online
    assert (node.state, node.held) == (N.ONLINE, None)
    assert cp.schedule_pass() == 1


def test_an_offlined_node_stays_offline_when_its_agent_restarts_until_an_admin_starts_it(cp, clock):
    agent = register(cp, "n1", cores=2)
    cp.node_action("offline", ["n1"])
    restarted = AgentDouble(cp, "n1", cores=2, host_id=agent.host_id)
    assert restarted.register().accepted  # the node is its again...
    node = cp.store.get_node("n1")
    assert (node.state, node.held) == (N.OFFLINE, "offline")  # ...but gets no work
    assert [n["held"] for n in cp.list_nodes()] == ["offline"]  # the API's node JSON
    cp.submit({"command": "work"})
    assert cp.schedule_pass() == 0

    clock.advance(1)
    restarted.send(restarted.heartbeat())  # its agent is heard: an admin may bring it back
    [node] = cp.node_action("start", ["n1"])
    assert (node.state, node.held) == (N.STARTING, None)
    restarted.send(restarted.heartbeat())
    [told] = restarted.replies()
    assert isinstance(told, Superseded)
    again = AgentDouble(cp, "n1", cores=2, host_id=agent.host_id)
    assert again.register().accepted
    assert cp.store.get_node("n1").state is N.ONLINE
    assert cp.schedule_pass() == 1


def test_a_drained_node_stays_draining_when_its_agent_restarts(cp, clock):
    agent = register(cp, "n1", cores=2)
    cp.node_action("drain", ["n1"])
    restarted = AgentDouble(cp, "n1", cores=2, host_id=agent.host_id)
    assert restarted.register().accepted
    node = cp.store.get_node("n1")
    assert (node.state, node.held) == (N.DRAINING, "drain")
    cp.submit({"command": "work"})
    assert cp.schedule_pass() == 0
    clock.advance(1)
    restarted.send(restarted.heartbeat())
    [node] = cp.node_action("start", ["n1"])
    assert (node.state, node.held) == (N.ONLINE, None)
    assert cp.schedule_pass() == 1


def test_the_autoscaler_never_starts_a_node_an_admin_took_offline(cp, provider):
    managed(cp, min_nodes=0)
    first, _second = cp.add_nodes("AzureNodes", 2)
    cp.node_action("offline", [first.name])
    cp.submit({"command": "x", "nodeGroups": ["AzureNodes"], "cores": 2})
    cp.submit({"command": "y", "nodeGroups": ["AzureNodes"], "cores": 2})
    cp.autoscale()
    states = {n.name: n.state for n in cp.store.list_nodes()}
    assert states == {"azure-1": N.OFFLINE, "azure-2": N.STARTING}
    notes = [e["reason"] for e in cp.autoscale_log() if e.get("action") == "note"]
    assert any("1 Offline and 1 held by an admin" in n for n in notes), notes  # says why
    [started] = cp.node_action("start", [first.name])  # an admin's start ends the hold
    assert (started.state, started.held) == (N.STARTING, None)


def test_a_release_lifts_the_hold_without_a_start_and_the_autoscaler_then_may(cp, provider):
    """A probe's cost freeze (offline --group AzureNodes) could be lifted only by a start,
    which booted every VM; `hpc node release` leaves them Offline for the autoscaler."""
    managed(cp, min_nodes=0)
    first, second = cp.add_nodes("AzureNodes", 2)
    cp.node_action("offline", [first.name, second.name])
    [released] = cp.node_action("release", [first.name])
    assert (released.state, released.held) == (N.OFFLINE, None)
    assert "the autoscaler starts it when work needs it" in (released.state_reason or "")
    assert cp.act_on_node("release", first.name)[1] == (
        "node azure-1 is already Offline: nothing to do"
    )
    cp.autoscale()  # no work: nothing starts
    assert {n.name: n.state for n in cp.store.list_nodes()} == {
        "azure-1": N.OFFLINE, "azure-2": N.OFFLINE
    }  # fmt: skip
    cp.submit({"command": "x", "nodeGroups": ["AzureNodes"], "cores": 2})
    cp.autoscale()  # the released one starts for the work, the held one does not
    states = {n.name: (n.state, n.held) for n in cp.store.list_nodes()}
    assert states == {"azure-1": (N.STARTING, None), "azure-2": (N.OFFLINE, "offline")}


def test_a_release_of_a_node_not_held_offline_is_refused_saying_what_to_do(cp, provider):
    managed(cp, min_nodes=0)
    register(cp, "n1")  # on-prem
    [vm] = cp.add_nodes("AzureNodes", 1)
    cp.node_action("start", [vm.name])
    with pytest.raises(Conflict, match="n1 is on-prem: .*hpc node online n1"):
        cp.act_on_node("release", "n1")
    with pytest.raises(Conflict, match="azure-1 is Starting; only an Offline VM's hold") as e:
        cp.act_on_node("release", "azure-1")
    assert "it is starting already, with no hold" in str(e.value)
    assert "Draining" not in str(e.value)  # (a probe read "brings a Draining one back")


def test_hpc_node_release_through_the_api(tmp_path, monkeypatch):
    """The CLI on the real function app: a held group released, each VM said, none started."""
    with served_app(tmp_path / "home", {"HPC_COMPUTE": "local"}) as app, app.client() as client:
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        made = client.patch("/api/nodegroups/AzureNodes", json={"provider": "local", "maxNodes": 2})
        assert made.status_code == 200, made.text
        assert (
            client.post("/api/nodes", json={"group": "AzureNodes", "count": 2}).status_code == 201
        )
        assert hpc("node", "offline", "--group", "azurenodes").exit_code == 0
        out = hpc("node", "release", "--group", "AzureNodes")
        assert out.exit_code == 0, out.output
        assert out.stdout.split() == ["azure-1:", "Offline", "azure-2:", "Offline"]
        nodes = client.get("/api/nodes").json()["nodes"]
        assert [(n["state"], n.get("held")) for n in nodes] == [("Offline", None)] * 2
        again = hpc("node", "release", "azure-1")
        assert again.exit_code == 0 and "already: nothing to do" in again.stdout
