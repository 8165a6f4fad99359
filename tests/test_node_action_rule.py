"""One rule for every admin node action: a result that already holds is a 200 saying so, an
action the state makes impossible a 409 saying what to do (shared/domain/nodeactions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.domain.autoscaler_notes import stopped
from shared.domain.cluster import Node
from shared.domain.nodeactions import already, with_held_why
from shared.domain.states import NodeState
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app

ON, OFF, START, DRAIN, STOP, GONE = (
    NodeState.ONLINE,
    NodeState.OFFLINE,
    NodeState.STARTING,
    NodeState.DRAINING,
    NodeState.STOPPING,
    NodeState.UNREACHABLE,
)


@pytest.mark.parametrize(
    ("action", "state", "provider", "held", "said"),
    [
        ("start", ON, "onprem", None, "node n1 is already Online: nothing to do"),
        ("start", ON, "azure", None, "node n1 is already Online: nothing to do"),
        (
            "start",
            START,
            "local",
            None,
            "node n1 is already Starting: it is Online once its agent registers: nothing to do",
        ),
        ("start", OFF, "azure", None, None),  # its VM starts
        ("start", DRAIN, "onprem", "drain", None),  # back Online
        ("start", STOP, "azure", None, None),  # a 409: start it once it is Offline
        ("start", GONE, "onprem", None, None),  # a 409: it comes back by itself
        ("stop", OFF, "azure", None, "node n1 is already Offline: nothing to do"),
        (
            "stop",
            STOP,
            "azure",
            None,
            "node n1 is already Stopping: it is Offline once its VM is deallocated: nothing to do",
        ),
        ("stop", ON, "azure", None, None),
        ("stop", DRAIN, "azure", None, None),  # draining to stop: stopped once idle
        ("stop", DRAIN, "onprem", "drain", "node n1 is already Draining (held): nothing to do"),
        ("stop", ON, "onprem", None, None),  # an on-prem stop is a held drain
        ("drain", DRAIN, "onprem", "drain", "node n1 is already Draining (held): nothing to do"),
        ("drain", DRAIN, "azure", None, None),  # not held yet: the drain holds it (a change)
        ("drain", ON, "onprem", None, None),
        ("drain", OFF, "onprem", None, None),  # a 409: only an Online node can be drained
        ("offline", OFF, "onprem", "offline", "node n1 is already Offline (held): nothing to do"),
        ("offline", OFF, "onprem", None, None),  # not held: taking it offline holds it
        ("offline", ON, "azure", None, None),
        ("remove", OFF, "azure", None, None),  # never "already": a removed node is a 404
    ],
)
def test_which_actions_find_their_result_already_there(
    action: str, state: NodeState, provider: str, held: str | None, said: str | None
) -> None:
    node = Node(name="n1", groups=["G"], cores=4, state=state, provider=provider, held=held)  # type: ignore[arg-type]
    assert already(action, node) == said


def test_every_repeated_node_action_is_a_200_that_says_so(tmp_path: Path) -> None:
    """A probe found a repeated drain, stop or offline a 200 and a repeated start a 409."""
    with served_app(tmp_path / "home") as app, app.client() as client:
        for name in ("p-1", "p-2"):
            assert AgentDouble(app.cp, name).register().accepted

        def act(name: str, action: str) -> tuple[int, bool | None, str | None]:
            r = client.post(f"/api/nodes/{name}/{action}")
            body = r.json()
            return r.status_code, body.get("changed"), body.get("message")

        assert act("p-1", "start") == (200, False, "node p-1 is already Online: nothing to do")
        assert act("p-1", "drain") == (200, True, None)
        said = "node p-1 is already Draining (held): nothing to do"
        assert act("p-1", "drain") == (200, False, said)
        assert act("p-1", "stop") == (200, False, said)  # an on-prem stop is a held drain
        assert act("p-2", "offline") == (200, True, None)
        said = "node p-2 is already Offline (held): nothing to do"
        assert act("p-2", "offline") == (200, False, said)
        refused = client.post("/api/nodes/p-2/drain")  # impossible: a 409 saying what to do
        assert refused.status_code == 409 and refused.json()["state"] == "Offline"
        assert act("p-1", "start") == (200, True, None)
        assert app.cp.store.get_node("p-1").state is ON


def test_a_repeated_stop_of_a_vm_says_it_is_already_offline(tmp_path: Path) -> None:
    with served_app(tmp_path / "home", {"HPC_COMPUTE": "local"}) as app, app.client() as client:
        group = {"name": "Vms", "provider": "local", "maxNodes": 2}
        assert client.post("/api/nodegroups", json=group).status_code == 201
        [vm] = client.post("/api/nodes", json={"group": "Vms", "count": 1}).json()["nodes"]
        r = client.post(f"/api/nodes/{vm['name']}/stop")
        assert r.status_code == 200
        assert r.json()["message"] == f"node {vm['name']} is already Offline: nothing to do"
        assert "warnings" not in r.json()


@pytest.mark.parametrize(
    ("reason", "held", "kept"),
    [
        ("drained by admin", "drained by admin: bad DIMM, ticket 77",
         "drained by admin: bad DIMM, ticket 77"),
        ("taken offline by bob", "drained by alice: bad DIMM",
         "taken offline by bob: bad DIMM"),
        ("drained by admin: new why", "drained by admin: old why", "drained by admin: new why"),
        ("drained by admin", "drained by admin", "drained by admin"),  # no why to keep
        ("drained by admin", None, "drained by admin"),  # not held
        (None, "drained by admin: x", None),  # a start: no reason
    ],
)  # fmt: skip
def test_an_action_with_no_why_keeps_the_holds(reason, held, kept) -> None:
    node = Node(name="n1", state=DRAIN, held="drain" if held else None, held_reason=held)
    assert with_held_why(reason, node) == kept


@pytest.mark.parametrize(
    ("reason", "after"),
    [
        ("stopped by admin: stuck boot, INC-9", "stopped by admin: stuck boot, INC-9; its VM is deallocated"),
        ("stopped by admin", "stopped by admin; its VM is deallocated"),
        ("idle 300 s", "its VM is deallocated: the stop is done"),
        (None, "its VM is deallocated: the stop is done"),
    ],
)  # fmt: skip
def test_an_admins_stop_keeps_who_and_why_once_the_vm_is_off(reason, after) -> None:
    """A probe's stop of a Starting VM, "stuck boot, INC-9", became "the stop is done"."""
    node = Node(name="azure-1", state=STOP, provider="local", state_reason=reason)
    assert stopped(node, "deallocated") == after
