"""Node group fixes over HTTP and through the CLI, on the real function app served by the
local host (tests/app_fixtures.py), and ``hpc up``'s AzureNodes set-up against it:

- ``hpc up`` set AzureNodes' maxNodes, minNodes and nodeCores on every start, undoing an
  admin's ``hpc nodegroup set AzureNodes --max 4`` (max back to 2 under 3 nodes), and said
  "2 node(s)" when it had 3; ``--azure-nodes 0`` left AzureNodes on-prem.
- ``DELETE /api/nodegroups/{name}`` and ``hpc nodegroup delete`` did not exist.
- ``hpc nodegroup create X2 --provider onprem`` was refused.
- ``GET /api/autoscale/log?group=Z`` matched AzureNodes' notes.
- ``hpc node stop`` of a node its group's minNodes needs said nothing of the autoscaler
  starting it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from hpc.client import ApiClient
from hpc.up import _add_local_azure_nodes
from shared.domain.cluster import Meta
from shared.usecases.autoscale_log import LOG_KEY
from tests.agent_double import AgentDouble
from tests.app_fixtures import ServedApp, served_app
from tests.cli_fixtures import assert_one_error_line, hpc


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServedApp]:
    with served_app(tmp_path / "home") as served:
        monkeypatch.setenv("HPC_API_URL", served.url)
        monkeypatch.setenv("HPC_TOKEN", served.token)
        yield served


@pytest.fixture
def client(app: ServedApp) -> Iterator[httpx.Client]:
    with app.client() as c:
        yield c


def groups(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for g in client.get("/api/nodegroups").json()["groups"]}


def members(client: httpx.Client, group: str) -> list[str]:
    return [n["name"] for n in client.get("/api/nodes").json()["nodes"] if group in n["groups"]]


# --- 1 and 2: hpc up's AzureNodes ----------------------------------------------------------


def up_azure(app: ServedApp, count: int, cores: int = 2) -> str:
    """What ``hpc up --azure-nodes COUNT --cores CORES`` does to AzureNodes; its log line."""
    console = Console(record=True, width=400, log_path=False, log_time=False)
    with ApiClient(app.url, token=app.token) as api:
        _add_local_azure_nodes(api, count, cores, console)
    return console.export_text()


def test_a_restart_of_hpc_up_keeps_an_admins_azurenodes_settings(app, client):
    first = up_azure(app, 2)
    assert "group AzureNodes: 2 node(s) of 2 core(s) on the local provider (maxNodes 2)" in first
    set_max = client.patch("/api/nodegroups/AzureNodes", json={"maxNodes": 4, "minNodes": 1})
    assert set_max.status_code == 200, set_max.text
    assert client.post("/api/nodes", json={"group": "AzureNodes", "count": 1}).status_code == 201

    again = up_azure(app, 2, cores=8)  # hpc up restarted, with other --cores
    azure = groups(client)["AzureNodes"]
    assert (azure["maxNodes"], azure["minNodes"], azure["nodeCores"]) == (4, 1, 2)
    assert "group AzureNodes: 3 node(s) of 2 core(s) on the local provider (maxNodes 4)" in again
    assert client.post("/api/nodes", json={"group": "AzureNodes", "count": 1}).status_code == 201


def test_hpc_up_raises_azurenodes_max_to_fit_the_nodes_asked_never_lowers_it(app, client):
    up_azure(app, 1)
    assert groups(client)["AzureNodes"]["maxNodes"] == 1
    out = up_azure(app, 3)
    assert groups(client)["AzureNodes"]["maxNodes"] == 3
    assert len(members(client, "AzureNodes")) == 3
    assert "3 node(s)" in out
    up_azure(app, 1)
    assert groups(client)["AzureNodes"]["maxNodes"] == 3
    assert len(members(client, "AzureNodes")) == 3


def test_hpc_up_with_no_azure_nodes_still_makes_azurenodes_local(app, client):
    out = up_azure(app, 0)
    azure = groups(client)["AzureNodes"]
    assert (azure["provider"], azure["maxNodes"], azure["minNodes"]) == ("local", 0, 0)
    assert "no nodes on the local provider (maxNodes 0)" in out
    assert client.patch("/api/nodegroups/AzureNodes", json={"maxNodes": 1}).status_code == 200
    result = hpc("node", "add", "--group", "AzureNodes")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "azure-1: added, Offline"


def test_hpc_up_leaves_an_on_prem_azurenodes_with_nodes_as_it_is(app, client):
    assert AgentDouble(app.cp, "n1", groups=("AzureNodes",)).register().accepted
    out = up_azure(app, 2)
    assert groups(client)["AzureNodes"]["provider"] is None
    assert members(client, "AzureNodes") == ["n1"]
    assert "is on-prem with 1 node(s): left as it is" in " ".join(out.split())


# --- 5: create --provider onprem -----------------------------------------------------------


def test_create_takes_provider_onprem_in_the_cli_and_the_api(app, client):
    result = hpc("nodegroup", "create", "X2", "--provider", "onprem")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "node group X2 created"
    made = client.post("/api/nodegroups", json={"name": "X3", "provider": "onprem"})
    assert made.status_code == 201, made.text
    assert made.json()["provider"] is None
    assert client.patch("/api/nodegroups/X3", json={"provider": "ONPREM"}).status_code == 200
    assert groups(client)["X2"]["provider"] is None
    refused = hpc("nodegroup", "create", "X4", "--provider", "cloud")
    assert_one_error_line(refused, "give local, or onprem (JSON null) for on-prem nodes")


# --- 6: delete a node group ----------------------------------------------------------------


def test_delete_a_node_group_over_http(app, client):
    assert client.post("/api/nodegroups", json={"name": "OnPremNode"}).status_code == 201
    gone = client.delete("/api/nodegroups/onpremnode")
    assert (gone.status_code, gone.content) == (204, b"")
    assert "OnPremNode" not in groups(client)
    missing = client.delete("/api/nodegroups/OnPremNode")
    assert missing.status_code == 404
    assert "node group 'OnPremNode' does not exist" in missing.json()["error"]


def test_delete_refuses_a_group_with_nodes_or_jobs_and_says_what_to_do(app, client):
    assert client.post("/api/nodegroups", json={"name": "Lab"}).status_code == 201
    assert AgentDouble(app.cp, "lab-1", groups=("Lab",)).register().accepted
    busy = client.delete("/api/nodegroups/Lab")
    assert busy.status_code == 409
    assert busy.json()["nodes"] == ["lab-1"]
    assert "Lab has 1 node(s) (lab-1)" in busy.json()["error"]
    job = client.post("/api/jobs", json={"command": "x", "nodeGroups": ["Lab"]}).json()
    assert client.post("/api/nodes/lab-1/offline").status_code == 200
    assert client.patch("/api/nodes/lab-1", json={"groups": ["OnPremNodes"]}).status_code == 200
    named = client.delete("/api/nodegroups/Lab")
    assert named.status_code == 409
    assert named.json()["jobs"] == [job["id"]]
    assert f"Queued or Running job(s) ({job['id']})" in named.json()["error"]

    result = hpc("nodegroup", "delete", "lab")
    assert_one_error_line(result, f"({job['id']})", "hpc job cancel ID")
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    result = hpc("nodegroup", "delete", "lab")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "node group Lab deleted"  # as stored, not as typed
    assert "Lab" not in groups(client)
    assert_one_error_line(hpc("nodegroup", "delete", "Lab"), "does not exist")


def test_only_an_admin_deletes_a_node_group(app, client):
    assert client.post("/api/nodegroups", json={"name": "Gpu"}).status_code == 201
    user = client.post("/api/users", json={"name": "alice", "role": "user"}).json()["token"]
    with app.client(user) as alice:
        refused = alice.delete("/api/nodegroups/Gpu")
    assert refused.status_code == 403
    assert "only an admin may" in refused.json()["error"]
    assert "Gpu" in groups(client)


# --- 3: the autoscale log of one group -----------------------------------------------------


def test_the_autoscale_log_of_a_group_over_http_is_that_groups(app, client):
    assert client.post("/api/nodegroups", json={"name": "Z"}).status_code == 201
    entries = [
        {"action": "note", "group": "AzureNodes", "reason": "AzureNodes: wants 2 nodes"},
        {"action": "note", "group": "Z", "reason": "Z: wants 1 node"},
    ]
    app.cp.store.put_meta(Meta(key=LOG_KEY, data={"entries": entries}))
    log = client.get("/api/autoscale/log", params={"group": "z"}).json()["entries"]
    assert [e["reason"] for e in log] == ["Z: wants 1 node"]


# --- 7: hpc node stop warns when the autoscaler would start the node again ----------------


def test_hpc_node_stop_warns_that_the_groups_min_would_start_it_again(app, client):
    made = client.post(
        "/api/nodegroups", json={"name": "Burst", "provider": "local", "maxNodes": 2, "minNodes": 1}
    )
    assert made.status_code == 201, made.text
    assert client.post("/api/nodes", json={"group": "Burst", "count": 1}).status_code == 201
    node = app.cp.store.get_node("burst-1")
    node.state = node.state.ONLINE
    app.cp.store.put_node(node)
    result = hpc("node", "stop", "burst-1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "burst-1: Stopping"
    warning = " ".join(result.stderr.split())
    assert warning.startswith(
        "warning: burst-1: the autoscaler will start it again to keep Burst's minNodes 1"
    )
    assert "hpc node offline burst-1" in warning and "--min 0" in warning
    assert len(result.stderr.strip().splitlines()) == 1
