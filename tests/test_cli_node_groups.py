"""``hpc node ACTION --group G``: ``--group`` is repeatable (the nodes of every group, each
once), the command goes on past refused nodes and prints each refusal, and it fails (exit 1)
if any node was refused for a reason other than already being as the action leaves it.

Found on a live cluster: ``hpc node drain --group Pin1 --group Pin2`` drained only Pin2's nodes,
and ``hpc node online --group G`` exited 0 past a node refused because its agent stopped.
On the served function app (the real rules), the agents played by tests/agent_double.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hpc.node_actions import _already
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc

GROUPS = {"p-1": ["Pin1"], "p-2": ["Pin2"], "p-3": ["Pin1", "Pin2"], "p-4": ["OnPremNodes"]}


@pytest.fixture
def cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[httpx.Client, dict[str, AgentDouble]]]:
    """Four registered on-prem nodes: p-1 in Pin1, p-2 in Pin2, p-3 in both, p-4 in neither."""
    with served_app(tmp_path / "home") as app, app.client() as client:
        for group in ("Pin1", "Pin2"):
            assert client.post("/api/nodegroups", json={"name": group}).status_code == 201
        agents = {name: AgentDouble(app.cp, name) for name in GROUPS}
        for name, agent in agents.items():
            assert agent.register().accepted
            set_groups = client.patch(f"/api/nodes/{name}", json={"groups": GROUPS[name]})
            assert set_groups.status_code == 200, set_groups.text
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        yield client, agents


def states(client: httpx.Client) -> dict[str, str]:
    return {n["name"]: n["state"] for n in client.get("/api/nodes").json()["nodes"]}


def test_every_group_given_is_acted_on_each_node_once(cluster) -> None:
    client, _ = cluster
    result = hpc("node", "drain", "--group", "Pin1", "--group", "pin2")
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == [
        "p-1: Draining",
        "p-2: Draining",
        "p-3: Draining",  # in both groups: drained once
    ]
    assert result.stderr == ""
    assert states(client) == {
        "p-1": "Draining", "p-2": "Draining", "p-3": "Draining", "p-4": "Online"
    }  # fmt: skip


def test_a_group_that_does_not_exist_among_several_acts_on_no_node(cluster) -> None:
    client, _ = cluster
    result = hpc("node", "offline", "--group", "Pin1", "--group", "Nope")
    assert_one_error_line(result, "node group 'Nope' does not exist (hpc nodegroup list)")
    assert set(states(client).values()) == {"Online"}


def test_a_group_action_fails_if_a_node_is_refused_for_a_real_reason_and_goes_on(cluster) -> None:
    client, agents = cluster
    for name in ("p-1", "p-2"):
        assert client.post(f"/api/nodes/{name}/drain").status_code == 200
    agents["p-2"].send(agents["p-2"].stopping())  # Offline because its agent stopped

    result = hpc("node", "online", "--group", "Pin1", "--group", "Pin2")
    assert result.exit_code == 1, result.output
    # the rest still got the action; p-3 was Online already: done, saying so
    assert result.stdout.splitlines() == ["p-1: Online", "p-3: Online (already: nothing to do)"]
    errors = [" ".join(line.split()) for line in result.stderr.strip().split("\n") if line]
    assert errors[0].startswith("p-2: not brought online: node p-2 is Offline because its agent")
    assert errors[-1] == "error: 1 of 3 node(s) not brought online"
    assert states(client)["p-1"] == "Online"


def test_a_group_action_refused_only_for_nodes_already_so_succeeds(cluster) -> None:
    client, _ = cluster
    assert client.post("/api/nodes/p-1/drain").status_code == 200
    result = hpc("node", "start", "--group", "Pin1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["p-1: Online", "p-3: Online (already: nothing to do)"]
    again = hpc("node", "start", "--group", "Pin1")  # every node Online already: done
    assert again.exit_code == 0, again.output
    named = hpc("node", "start", "p-1")  # a named node Online already: done too (a 200)
    assert named.exit_code == 0 and "already" in named.stdout
    assert hpc("node", "drain", "p-1").exit_code == 0
    drained = hpc("node", "drain", "p-1")  # a repeated drain: the same rule
    assert drained.stdout.splitlines() == ["p-1: Draining (already: nothing to do)"]


@pytest.mark.parametrize(
    ("action", "state", "already"),
    [
        ("start", "Online", True),  # "node n-1 is Online already: nothing to do"
        ("start", "Starting", True),  # brought online by an admin, or a VM booting
        ("start", "Offline", False),  # its agent stopped, never registered, quota...
        ("start", "Unreachable", False),
        ("start", None, False),  # a 409 that says no state (an older control plane)
        ("drain", "Offline", True),
        ("drain", "Draining", True),
        ("drain", "Starting", False),
        ("stop", "Offline", True),
        ("stop", "Stopping", True),
        ("offline", "Offline", True),
        ("offline", "Unreachable", False),
        ("remove", "Online", False),  # remove is never "already" done
    ],
)
def test_which_refused_nodes_are_already_as_the_action_leaves_them(
    action: str, state: str | None, already: bool
) -> None:
    assert _already(action, state) is already


def test_a_refused_node_action_says_the_nodes_state_in_the_409(cluster) -> None:
    """The CLI decides on the field, not the words: the 409's body says the node's state."""
    client, agents = cluster
    assert client.post("/api/nodes/p-3/drain").status_code == 200
    agents["p-3"].send(agents["p-3"].stopping())  # Offline because its agent stopped
    refused = client.post("/api/nodes/p-3/start")
    assert refused.status_code == 409
    assert refused.json()["state"] == "Offline"
    assert "its agent stopped" in refused.json()["error"]
    gone = client.post("/api/nodes/nope/start")
    assert gone.status_code == 404 and "state" not in gone.json()


def test_nodegroup_view_shows_every_setting_and_delete_says_the_stored_name(cluster) -> None:
    """A probe read the grow and shrink parameters only with --json (no `hpc nodegroup
    view`), and `hpc nodegroup delete BURST` said "node group BURST deleted" of `burst`."""
    client, _ = cluster
    made = client.post("/api/nodegroups", json={"name": "burst", "provider": "local"})
    assert made.status_code == 201, made.text
    view = hpc("nodegroup", "view", "BURST")
    assert view.exit_code == 0, view.output
    rows = dict(line.split(None, 1) for line in view.stdout.splitlines() if line.strip())
    assert rows["Name"].strip() == "burst" and rows["Provider"].strip() == "local"
    for hpc_pack in ("GrowInterval", "ShrinkInterval", "ShrinkIdleTimes", "TasksPerResourceUnit"):
        assert hpc_pack in rows
    assert rows["ShrinkInterval"].strip() == "60 s"
    onprem = hpc("nodegroup", "show", "pin1")  # (Slurm's word)
    assert (
        onprem.exit_code == 0 and "on-prem" in onprem.stdout and "GrowInterval" not in onprem.stdout
    )
    assert_one_error_line(hpc("nodegroup", "view", "Nope"), "node group 'Nope' does not exist")
    deleted = hpc("nodegroup", "delete", "BURST")
    assert deleted.exit_code == 0 and deleted.stdout.strip() == "node group burst deleted"


def test_an_idle_time_of_zero_is_taken_with_a_warning(cluster) -> None:
    """A probe's --shrink-interval 0 made VMs start and stop for jobs 9 s apart, unsaid."""
    client, _ = cluster
    assert (
        client.post("/api/nodegroups", json={"name": "Quick", "provider": "local"}).status_code
        == 201
    )
    zero = hpc("nodegroup", "set", "Quick", "--shrink-interval", "0")
    assert zero.exit_code == 0, zero.output
    assert "warning: Quick stops a VM as soon as it is idle" in zero.stderr
    fine = hpc("nodegroup", "set", "Quick", "--shrink-interval", "60")
    assert fine.exit_code == 0 and "warning" not in fine.stderr
