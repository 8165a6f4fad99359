"""``hpc node view NAME`` and ``hpc node list --group/--state`` (a newcomer probe missed
Slurm's ``scontrol show node`` and ``sinfo -p/-t``), on the served function app: n1 Online
in OnPremNodes, n2 drained."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hpc.render_nodes import drained_vms_billing, heard
from shared.usecases.queries import filter_nodes as filtered
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    with served_app(tmp_path / "home") as app, app.client() as client:
        for name in ("n1", "n2"):
            assert AgentDouble(app.cp, name).register().accepted
        assert client.post("/api/nodes/n2/drain").status_code == 200
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        yield client


def names(result) -> list[str]:
    return [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()]


def test_node_list_filters_by_state_any_case(cluster: httpx.Client) -> None:
    result = hpc("node", "list", "--state", "draining")
    assert result.exit_code == 0, result.stderr
    assert names(result) == ["n2"]
    both = hpc("node", "list", "--state", "Online,Draining")
    assert sorted(names(both)) == ["n1", "n2"]
    # n2 runs no task: the list shows it Drained, and that filter finds it (a probe's did not)
    assert names(hpc("node", "list", "--state", "drained")) == ["n2"]


def test_a_drained_filter_leaves_out_a_draining_node_that_runs_tasks() -> None:
    nodes = [
        {"name": "busy", "state": "Draining", "runningTasks": 2},
        {"name": "idle", "state": "Draining", "runningTasks": 0},
        {"name": "up", "state": "Online", "runningTasks": 0},
    ]
    assert [n["name"] for n in filtered(nodes, [], ["Drained"])] == ["idle"]
    assert [n["name"] for n in filtered(nodes, [], ["Draining"])] == ["busy", "idle"]


def test_a_drained_idle_vm_is_said_to_bill() -> None:
    """An admin's drain holds a VM up: drained with no task, it still bills (a probe left one
    so, reading it as safe). `hpc node list` says so on stderr, not of an on-prem node."""
    nodes = [
        {"name": "azure-1", "provider": "azure", "state": "Draining", "runningTasks": 0},
        {"name": "azure-2", "provider": "azure", "state": "Draining", "runningTasks": 1},
        {"name": "azure-3", "provider": "local", "state": "Draining", "runningTasks": 0},
        {"name": "n2", "provider": "onprem", "state": "Draining", "runningTasks": 0},
        {"name": "azure-4", "provider": "azure", "state": "Offline", "runningTasks": 0},
    ]
    assert drained_vms_billing(nodes) == (
        "note: azure-1, azure-3 drained with no task, but their VMs run and bill: "
        "`hpc node stop azure-1 azure-3` deallocates them"
    )
    assert drained_vms_billing(nodes[1:2] + nodes[3:]) is None
    assert "its VM runs" in (drained_vms_billing(nodes[:1]) or "")


def test_node_list_of_drained_on_prem_nodes_says_nothing_of_billing(cluster) -> None:
    result = hpc("node", "list")
    assert result.exit_code == 0 and "bill" not in result.stderr


def test_node_list_filters_by_group_and_says_when_none_match(cluster: httpx.Client) -> None:
    assert sorted(names(hpc("node", "list", "--group", "onpremnodes"))) == ["n1", "n2"]
    none = hpc("node", "list", "--group", "OnPremNodes", "--state", "Stopping")
    assert none.exit_code == 0 and none.stdout == "" and "no such nodes" in none.stderr


def test_node_list_refuses_an_unknown_state_naming_the_states(cluster: httpx.Client) -> None:
    result = hpc("node", "list", "--state", "Up")
    assert result.exit_code == 2
    assert_one_error_line(
        result, "'Up' is not a state; give one or more of Offline, Starting, Online, Draining"
    )


def test_node_view_shows_one_node_with_its_hold_and_reason(cluster: httpx.Client) -> None:
    result = hpc("node", "view", "n2")
    assert result.exit_code == 0, result.stderr
    rows = {line.split("  ")[0]: line for line in result.stdout.splitlines()}
    assert "Drained (held)" in rows["State"] and "drain" in rows["Held"]  # it runs no task
    assert "OnPremNodes" in rows["Groups"] and "onprem" in rows["Provider"]
    as_json = hpc("node", "view", "n1", "--json")
    assert '"name": "n1"' in as_json.stdout and '"state": "Online"' in as_json.stdout


def test_node_view_of_an_unknown_node_names_the_nodes(cluster: httpx.Client) -> None:
    result = hpc("node", "view", "n9")
    assert result.exit_code == 1
    assert_one_error_line(result, "no node n9; nodes: n1, n2")


@pytest.mark.parametrize(
    ("state", "beat", "shown"),
    [
        ("Starting", "2026-01-01T10:00:00Z", "-"),  # its VM's previous run: not this start's
        ("Starting", "2026-01-01T12:00:05Z", "ago"),  # heard since the start
        ("Online", "2026-01-01T10:00:00Z", "ago"),
        ("Starting", None, "-"),
    ],
)
def test_a_starting_vm_does_not_show_its_previous_runs_heartbeat(state, beat, shown) -> None:
    node = {"state": state, "stateTime": "2026-01-01T12:00:00Z", "lastHeartbeat": beat}
    assert shown in str(heard(node))


def test_the_api_filters_nodes_and_refuses_what_it_does_not_take(cluster: httpx.Client) -> None:
    """A probe's GET /api/nodes?state=Drained listed every node."""
    drained = cluster.get("/api/nodes", params={"state": "drained"}).json()["nodes"]
    assert [n["name"] for n in drained] == ["n2"]
    both = cluster.get("/api/nodes", params={"state": "Online,Draining", "group": "onpremnodes"})
    assert sorted(n["name"] for n in both.json()["nodes"]) == ["n1", "n2"]
    bad = cluster.get("/api/nodes", params={"state": "up"})
    assert bad.status_code == 400 and "a node state is one of" in bad.json()["error"]
    unknown = cluster.get("/api/nodes", params={"status": "Online"})
    assert unknown.status_code == 400 and "takes group, state, not status" in unknown.text
    # a group that does not exist is a 404, as the CLI and GET /api/autoscale/log say (a
    # user probe got 200 and no nodes)
    typo = cluster.get("/api/nodes", params={"group": "OnPremNodes,Nope"})
    assert typo.status_code == 404
    assert typo.json()["error"] == "node group 'Nope' does not exist (hpc nodegroup list)"


def test_node_list_of_a_group_that_does_not_exist_says_so(cluster: httpx.Client) -> None:
    """A probe's typo'd --group printed "no such nodes" and exited 0."""
    result = hpc("node", "list", "--group", "OnPremNode")
    assert_one_error_line(result, "node group 'OnPremNode' does not exist")
    assert result.exit_code == 1
    assert hpc("node", "list", "--group", "onpremnodes").exit_code == 0  # any case


def _steady(view: str) -> str:
    """The view less its "Last heartbeat Ns ago" line, which a loaded machine may see turn
    a second between two calls (CI flaked on it)."""
    return "\n".join(line for line in view.splitlines() if not line.startswith("Last heartbeat"))


def test_node_view_reads_the_single_node_route_with_the_lists_output(
    cluster: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One node's own route (not the whole list); a name in another case is still found, by
    the list, and shown the same."""
    by_list = hpc("node", "view", "N2")  # no node N2: the list finds n2
    as_json = hpc("node", "view", "N2", "--json")
    assert by_list.exit_code == 0, by_list.stderr

    def no_list(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("hpc node view listed every node")

    monkeypatch.setattr("hpc.client.ApiClient.list_nodes", no_list)
    direct = hpc("node", "view", "n2")
    assert direct.exit_code == 0, direct.output
    assert _steady(direct.stdout) == _steady(by_list.stdout)
    assert hpc("node", "view", "n2", "--json").stdout == as_json.stdout
