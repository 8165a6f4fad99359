"""The control plane owns a node's groups, cores and provider; group names match whatever
their case. The pure rules as tables (shared.domain.ownership, shared.domain.groupnames),
then the use cases (registration, ``hpc node set``, submit), the PATCH route and the CLI."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from typer.testing import CliRunner

import functions.http_api
import functions.nodes_api
from hpc.cli import app as cli
from shared.adapters.local_compute import LocalProvider
from shared.auth import digest
from shared.domain import lifecycle, ownership
from shared.domain.cluster import Node, NodeGroup, Principal
from shared.domain.groupnames import canonical_group, canonical_groups, unknown_groups
from shared.domain.messages import RegisterNode
from shared.domain.states import NodeState, TaskState
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.usecases.nodes import set_node_groups
from tests.agent_double import AgentDouble
from tests.test_control import Clock, make_cp, register

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GROUPS = [
    NodeGroup(name="OnPremNodes"),
    NodeGroup(name="AzureNodes", provider="local"),
    NodeGroup(name="Gpu"),
    NodeGroup(name="Cloud2", provider="azure"),
]


def req(groups=("Gpu",), cores=8, agent="agent-new1") -> RegisterNode:
    return RegisterNode(
        node="n1",
        groups=list(groups),
        cores=cores,
        agent_id=agent,
        host_id="host-aaaa",
        started_at=NOW,
    )


def stored(provider="onprem", groups=("OnPremNodes",), cores=4, incarnation=3) -> Node:
    return Node(
        name="n1",
        groups=list(groups),
        cores=cores,
        provider=provider,
        state=NodeState.OFFLINE,
        incarnation=incarnation,
        agent_id="agent-old1",
        host_id="host-aaaa",
        agent_started_at=NOW - timedelta(hours=1),
    )


# --- group names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "known", "expected"),
    [
        ("AzureNodes", ["AzureNodes"], "AzureNodes"),
        ("azurenodes", ["OnPremNodes", "AzureNodes"], "AzureNodes"),
        ("AZURENODES", ["AzureNodes"], "AzureNodes"),
        ("azurenodes", ["AzureNodes", "azurenodes"], "azurenodes"),  # an exact match wins
        ("Azure", ["AzureNodes"], None),
        ("", ["AzureNodes"], None),
    ],
)
def test_canonical_group(name, known, expected):
    assert canonical_group(name, known) == expected


def test_canonical_groups_keep_order_drop_case_repeats_and_keep_unknown_names():
    known = ["OnPremNodes", "AzureNodes"]
    names = ["azurenodes", "New", "AzureNodes", "onpremnodes", "new"]
    assert canonical_groups(names, known) == ["AzureNodes", "New", "OnPremNodes"]
    assert unknown_groups(names, known) == ["New", "new"]


# --- registration: who owns what ------------------------------------------------------


def test_a_first_registration_takes_the_agents_groups_in_their_stored_spelling_and_cores():
    node = ownership.first_record(req(groups=("onpremnodes", "GPU", "Brand-New"), cores=8), GROUPS)
    assert isinstance(node, Node)
    assert (node.groups, node.cores, node.provider) == (
        ["OnPremNodes", "Gpu", "Brand-New"],
        8,
        "onprem",
    )
    decision = lifecycle.register(node, req(), now=NOW, timeout=timedelta(seconds=15))
    assert decision.accepted and node.groups == ["OnPremNodes", "Gpu", "Brand-New"]


@pytest.mark.parametrize(
    ("taken", "refused"),
    [(["N1"], True), (["n1-old", "N1 "], False), (["n1"], False), ([], False)],
)
def test_a_name_that_differs_only_by_case_from_a_nodes_is_refused(taken, refused):
    """A probe's `hpc agent run --name ONPREM-1` beside onprem-1 made a second node."""
    first = ownership.first_record(req(), GROUPS, taken)
    assert isinstance(first, str) is refused
    if refused:
        assert "node 'N1' exists" in str(first) and "--name N1" in str(first)


def test_an_agent_named_as_a_node_in_another_case_is_refused_end_to_end(cp):
    register(cp, "onprem-1")
    again = AgentDouble(cp, "ONPREM-1", cores=1).register()
    assert not again.accepted and "node 'onprem-1' exists" in (again.reason or "")
    assert [n.name for n in cp.store.list_nodes()] == ["onprem-1"]


@pytest.mark.parametrize("proposal", [("azurenodes",), ("OnPremNodes", "Cloud2")])
def test_a_first_registration_cannot_join_a_managed_group(proposal):
    refused = ownership.first_record(req(groups=proposal), GROUPS)
    assert isinstance(refused, str)
    assert "'n1'" in refused and "is managed by the" in refused and "hpc node add" in refused


@pytest.mark.parametrize(
    ("record", "proposal", "expected"),
    [
        # on-prem: groups stay (an admin changes them), cores follow the machine (HPC Pack)
        (stored(), req(groups=("Gpu",), cores=8), (["OnPremNodes"], 8, "onprem")),
        (stored(incarnation=0), req(groups=("Gpu",), cores=2), (["OnPremNodes"], 2, "onprem")),
        # managed: the VM's groups and cores are the control plane's, whatever the agent says
        (
            stored("local", ("AzureNodes",), 2, incarnation=0),
            req(groups=("OnPremNodes",), cores=16),
            (["AzureNodes"], 2, "local"),
        ),
        (
            stored("azure", ("Cloud2", "Gpu"), 4),
            req(groups=("Other",), cores=1),
            (["Cloud2", "Gpu"], 4, "azure"),
        ),
    ],
)
def test_a_later_registration_never_changes_groups_or_provider(record, proposal, expected):
    decision = lifecycle.register(record, proposal, now=NOW, timeout=timedelta(seconds=15))
    assert decision.accepted and decision.changed
    assert (record.groups, record.cores, record.provider) == expected


# --- an admin changes groups -----------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "names", "expected"),
    [
        (stored(), ["gpu"], ["Gpu"]),
        (stored(), ["gpu", "ONPREMNODES", "Gpu"], ["Gpu", "OnPremNodes"]),
        (stored("local", ("AzureNodes",)), ["gpu", "azurenodes"], ["AzureNodes", "Gpu"]),
        (stored(), [], InvalidRequest("give at least one node group")),
        (stored(), ["Nope"], NotFound("'Nope' does not exist: create it first")),
        (stored(), ["AzureNodes"], Conflict("n1 is on-prem and node group AzureNodes")),
        (stored("local", ("AzureNodes",)), ["Gpu"], Conflict("keep it in a node group")),
        (stored("local", ("AzureNodes",)), ["AzureNodes", "Cloud2"], Conflict("Cloud2")),
    ],
)
def test_admin_groups(record, names, expected):
    if isinstance(expected, Exception):
        with pytest.raises(type(expected), match=str(expected)):
            ownership.admin_groups(record, names, GROUPS)
    else:
        assert ownership.admin_groups(record, names, GROUPS) == expected


# --- use cases ------------------------------------------------------------------------


@pytest.fixture
def cp(tmp_path):
    return make_cp(tmp_path, Clock())


def test_an_on_prem_node_keeps_its_groups_when_its_agent_restarts_naming_others(cp):
    register(cp, "n1", cores=2, groups=("onpremnodes", "Gpu"))
    node = cp.store.get_node("n1")
    assert (node.groups, node.cores, node.provider) == (["OnPremNodes", "Gpu"], 2, "onprem")
    assert "Gpu" in {g.name for g in cp.list_groups()}  # a proposed group is created

    restarted = AgentDouble(cp, "n1", cores=6, groups=("Other",))
    assert restarted.register().accepted
    node = cp.store.get_node("n1")
    assert (node.groups, node.cores, node.incarnation) == (["OnPremNodes", "Gpu"], 6, 2)
    assert "Other" not in {g.name for g in cp.list_groups()}


@pytest.mark.parametrize(
    ("proposal", "note"),
    [
        (("OnPremNodes",), None),  # a known group: nothing to say
        (("onpremnodes",), None),  # in another case: the same group
        (("OnPremNode",), "did you mean: OnPremNodes for OnPremNode?"),  # misspelt
        (("Gpu",), "node group Gpu did not exist and was created for node n1;"),
    ],
)
def test_an_agent_whose_group_is_created_is_told_so_a_misspelling_is_seen(cp, proposal, note):
    """Found by a live probe: ``hpc agent run --group OnPremNode`` made a group of one node,
    and nobody was told. The group is still created (a new on-prem group needs no admin
    step), and the agent's log says so, with the known group it was likely meant to be."""
    cp.set_group("OnPremNodes")
    answer = AgentDouble(cp, "n1", groups=proposal).register()
    assert answer.accepted
    if note is None:
        assert answer.note is None
    else:
        assert answer.note is not None and note in answer.note
        assert "hpc node set n1 --group" in answer.note
    again = AgentDouble(cp, "n1", groups=proposal).register()  # a restart: nothing new
    assert again.accepted and again.note is None


def test_an_older_agent_is_not_told_the_note_it_would_refuse(cp):
    answer = AgentDouble(cp, "n1", groups=("Gpu",), protocol=4).register()
    assert answer.accepted and answer.note is None
    assert "Gpu" in {g.name for g in cp.list_groups()}


def test_an_agent_cannot_register_a_new_name_into_a_managed_group(cp):
    cp.set_group("AzureNodes", provider="local")
    answer = AgentDouble(cp, "rogue", groups=("azurenodes",)).register()
    assert not answer.accepted and "managed by the local provider" in (answer.reason or "")
    with pytest.raises(NotFound):
        cp.store.get_node("rogue")


@pytest.fixture
def provider(cp, tmp_path) -> Iterator[LocalProvider]:
    p = LocalProvider(tmp_path / "vms")
    cp.deps.compute = p
    yield p
    p.close()


def test_a_managed_node_keeps_its_groups_cores_and_provider_whatever_its_agent_says(cp, provider):
    cp.set_group("AzureNodes", provider="local", max_nodes=2, node_cores=2)
    [added] = cp.add_nodes("AzureNodes", 1)
    assert AgentDouble(cp, added.name, cores=16, groups=("OnPremNodes",)).register().accepted
    node = cp.store.get_node(added.name)
    assert (node.groups, node.cores, node.provider, node.state) == (
        ["AzureNodes"],
        2,
        "local",
        NodeState.ONLINE,
    )


def test_an_admin_moves_a_node_and_work_for_the_new_group_runs_there(cp):
    agent = register(cp, "n1", cores=2)
    cp.create_group("Gpu")
    [node] = set_node_groups(cp.deps, ["n1"], ["gpu"])
    assert node.groups == ["Gpu"] and cp.store.get_node("n1").groups == ["Gpu"]

    assert AgentDouble(cp, "n1", cores=2, groups=("OnPremNodes",)).register().accepted
    assert cp.store.get_node("n1").groups == ["Gpu"]  # the restart did not undo it
    job = cp.submit({"command": "x", "nodeGroups": ["GPU"]})
    assert job.node_groups == ["Gpu"]  # stored as the group spells itself
    assert cp.schedule_pass() == 1
    [task] = cp.list_tasks(job.id)
    assert task.node == "n1" and task.node_groups == ["Gpu"] and agent.name == "n1"
    with pytest.raises(NotFound, match="n1x"):
        set_node_groups(cp.deps, ["n1x"], ["Gpu"])


def test_submit_for_a_group_in_another_case_places_work_on_the_group(cp):
    register(cp, "n1", cores=2)
    job = cp.submit({"command": "x", "nodeGroup": "onpremnodes"})
    assert job.node_groups == ["OnPremNodes"]
    assert cp.schedule_pass() == 1
    assert [t.state for t in cp.list_tasks(job.id)] == [TaskState.DISPATCHING]


def test_a_group_whose_name_differs_only_by_case_is_refused(cp):
    with pytest.raises(Conflict, match="exists already as AzureNodes"):
        cp.create_group("AZURENODES")
    assert cp.set_group("azurenodes", description="VMs").name == "AzureNodes"


# --- PATCH /api/nodes/{name} ------------------------------------------------------------


@pytest.fixture
def patch_node(cp, monkeypatch):
    monkeypatch.setattr(functions.http_api, "control", lambda: cp)
    monkeypatch.setattr(functions.nodes_api, "control", lambda: cp)
    cp.store.add_token(digest("admin-token-1"), Principal(name="root", role="admin"))
    cp.store.add_token(digest("user-token-1"), Principal(name="ann", role="user"))
    endpoint = functions.nodes_api.set_node._function.get_user_function()

    def call(name: str, body: Any, token: str = "admin-token-1") -> tuple[int, Any]:
        request = func.HttpRequest(
            method="PATCH",
            url=f"http://localhost/api/nodes/{name}",
            headers={"Authorization": f"Bearer {token}"},
            route_params={"name": name},
            body=json.dumps(body).encode(),
        )
        response = endpoint(request)
        return response.status_code, json.loads(response.get_body())

    return call


def test_patch_node_groups_is_admin_only_and_says_what_is_wrong(cp, patch_node):
    register(cp, "n1")
    cp.create_group("Gpu")
    status, doc = patch_node("n1", {"groups": ["gpu", "onpremnodes"]})
    assert status == 200 and doc["groups"] == ["Gpu", "OnPremNodes"] and "etag" not in doc
    status, doc = patch_node("n1", {"groups": ["OnPremNodes"]}, token="user-token-1")
    assert status == 403 and "only an admin" in doc["error"]
    assert cp.store.get_node("n1").groups == ["Gpu", "OnPremNodes"]
    for body, code, message in [
        ({"groups": "Gpu"}, 422, "groups must be a list"),
        ({"groups": ["Gpu"], "cores": 4}, 422, "nothing else can change"),
        ({"groups": []}, 422, "at least one node group"),
        ({"groups": ["Nope"]}, 404, "'Nope' does not exist"),
    ]:
        status, doc = patch_node("n1", body)
        assert (status, message in doc["error"]) == (code, True), doc
    status, doc = patch_node("ghost", {"groups": ["Gpu"]})
    assert status == 404


# --- the CLI ----------------------------------------------------------------------------


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def set_node(self, name: str, *, groups: list[str]) -> dict[str, Any]:
        self.calls.append(("set_node", (name, groups)))
        return {"name": name, "groups": ["Gpu"]}

    def add_nodes(self, group: str, count: int, **kw: Any) -> dict[str, Any]:
        self.calls.append(("add_nodes", (group, count, kw)))
        return {"nodes": [{"name": "azure-1", "spot": kw.get("spot")}]}

    def list_nodes(self, **_filters: Any) -> dict[str, Any]:  # (the API filters)
        node = {"name": "azure-1", "groups": ["AzureNodes"], "state": "Offline", "cores": 2}
        return {"nodes": [{**node, "provider": "azure", "spot": True}]}


@pytest.fixture
def fake_client(monkeypatch) -> FakeClient:
    client = FakeClient()

    @contextlib.contextmanager
    def api_client() -> Iterator[FakeClient]:
        yield client

    monkeypatch.setattr("hpc.commands.nodes.api_client", api_client)
    return client


def test_cli_node_set_sends_the_groups_for_each_node(fake_client):
    result = CliRunner().invoke(cli, ["node", "set", "n1", "n2", "--group", "gpu", "--group", "X"])
    assert result.exit_code == 0, result.output
    assert fake_client.calls == [
        ("set_node", ("n1", ["gpu", "X"])),
        ("set_node", ("n2", ["gpu", "X"])),
    ]
    assert "n1: groups Gpu" in result.output
    missing = CliRunner().invoke(cli, ["node", "set", "n1"])
    assert missing.exit_code == 2 and fake_client.calls[2:] == []


def test_cli_node_add_spot_and_list_marks_spot_nodes(fake_client):
    result = CliRunner().invoke(cli, ["node", "add", "--group", "AzureNodes", "--spot"])
    assert result.exit_code == 0, result.output
    assert fake_client.calls == [
        (
            "add_nodes",
            ("AzureNodes", 1, {"cores": None, "size": None, "spot": True, "idempotency_key": None}),
        )
    ]
    assert "azure-1: Spot VM added, Offline" in result.output
    listed = CliRunner().invoke(cli, ["node", "list"])
    assert listed.exit_code == 0 and "azure (spot)" in listed.output
