"""One meaning of a node group's maxNodes (the most nodes a managed group may have, 0 being
none, never "no limit"), and no autoscaler setting on an on-prem group: the rule as a table,
then ``hpc node add``, submit, ``pendingReason``, the API and the CLI (found by probing a
live ``hpc up``: a group of max 0 took nodes and jobs it would never run)."""

from __future__ import annotations

import pytest

from shared.domain.cluster import Node, NodeGroup
from shared.domain.groupsettings import MANAGED_ONLY, check_bounds
from shared.domain.models import Task
from shared.domain.pending import pending_reason
from shared.domain.states import NodeState, TaskState
from shared.errors import Conflict, InvalidRequest
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixture


def group(kind: str | None = "local", lo: int = 0, hi: int = 0) -> NodeGroup:
    return NodeGroup(name="G", provider=kind, min_nodes=lo, max_nodes=hi)


@pytest.mark.parametrize(
    ("g", "given", "refusal"),
    [
        (group(hi=4), ["max_nodes"], None),
        (group(lo=4, hi=4), ["min_nodes"], None),
        (group(), ["max_nodes"], None),  # 0: none, which is a bound like any
        (group(lo=5, hi=0), ["min_nodes"], "min nodes 5 is above max nodes 0"),
        (group(lo=5, hi=0), ["description"], "min nodes 5 is above max nodes 0"),
        (group(lo=3, hi=2), ["max_nodes"], "raise it with hpc nodegroup set G --max N, N >= 3"),
        (group(None), ["description", "provider"], None),
        (group(None), [], None),
        (group(None, hi=1), ["max_nodes"], "maxNodes applies only to managed groups"),
        (group(None), ["idle_policy", "min_nodes"], "idlePolicy, minNodes apply only to"),
        (group(None), ["autoscale"], "G is on-prem"),
        (group(None), ["grow_interval_s"], "hpc nodegroup create NAME --provider local --max N"),
    ],
)
def test_check_bounds(g, given, refusal):
    if refusal is None:
        check_bounds(g, given, "local")
    else:
        with pytest.raises(InvalidRequest, match=refusal.replace("(", r"\(")):
            check_bounds(g, given, "local")


def test_every_autoscaler_setting_is_managed_only():
    assert {"description", "provider"}.isdisjoint(MANAGED_ONLY)
    assert {"min_nodes", "max_nodes", "idle_policy", "grow_threshold", "boot_delay_s"} <= (
        MANAGED_ONLY
    )


def test_a_group_of_max_0_takes_no_node_and_says_which_flag_raises_it(cp, provider):  # noqa: F811
    cp.create_group("Cloud3", provider="local")
    assert next(g for g in cp.store.list_groups() if g.name == "Cloud3").max_nodes == 0
    with pytest.raises(Conflict, match=r"its maxNodes is 0 .*hpc nodegroup set Cloud3 --max 3"):
        cp.add_nodes("Cloud3", 3)
    assert cp.store.list_nodes() == []
    cp.set_group("Cloud3", max_nodes=2)
    with pytest.raises(Conflict, match="has 0 node.s. and its maxNodes is 2: 3 more"):
        cp.add_nodes("Cloud3", 3)
    assert len(cp.add_nodes("Cloud3", 2)) == 2


def test_min_above_max_is_refused_whatever_the_values(cp, provider):  # noqa: F811
    cp.set_group("AzureNodes", provider="local", max_nodes=0)
    with pytest.raises(InvalidRequest, match="min nodes 5 is above max nodes 0"):
        cp.set_group("AzureNodes", min_nodes=5)
    assert next(g for g in cp.store.list_groups() if g.name == "AzureNodes").min_nodes == 0


def test_an_on_prem_group_refuses_autoscaler_settings(cp, provider):  # noqa: F811
    register(cp, "n1")
    register(cp, "n2")
    for settings in ({"max_nodes": 1}, {"idle_policy": "keep"}, {"node_cores": 4}):
        with pytest.raises(InvalidRequest, match="only to managed groups"):
            cp.set_group("OnPremNodes", **settings)
    with pytest.raises(InvalidRequest, match="minNodes applies only to managed groups") as e:
        cp.create_group("Lab", min_nodes=1)
    # a group being created is not told to `hpc nodegroup set` itself (a probe's was not there)
    assert "Lab would be on-prem" in str(e.value) and "--provider local" in str(e.value)
    assert "nodegroup set" not in str(e.value)
    with pytest.raises(InvalidRequest, match="OnPremNodes is on-prem.*nodegroup set OnPremNodes"):
        cp.set_group("OnPremNodes", max_nodes=1)
    assert cp.set_group("OnPremNodes", description="lab").description == "lab"


def test_a_job_only_a_group_of_max_0_may_run_is_refused_until_a_node_is_up(cp, provider):  # noqa: F811
    cp.set_group("AzureNodes", provider="local", max_nodes=3)
    [first, *_] = cp.add_nodes("AzureNodes", 3)
    cp.set_group("AzureNodes", max_nodes=0)  # what it has stays, Offline
    spec = {"command": "echo hi", "nodeGroups": ["AzureNodes"]}
    with pytest.raises(InvalidRequest, match=r"no Online node, and the maxNodes of AzureNodes"):
        cp.submit(spec)
    register(cp, "n1")
    both = cp.submit({**spec, "nodeGroups": ["AzureNodes", "OnPremNodes"]})  # one can run it
    assert both.id == 1
    with pytest.raises(Conflict, match="maxNodes 0 and 0 nodes up: the autoscaler would stop"):
        cp.node_action("start", [first.name])  # it would be stopped again at once
    cp.set_group("AzureNodes", autoscale=False)  # the admin's own, then
    cp.node_action("start", [first.name])  # an admin's start: Starting, then Online
    assert cp.submit(spec).id == 2


@pytest.mark.parametrize(
    ("groups", "capped", "ends"),
    [
        (["Cloud3"], {"Cloud3"}, "(1 Offline); the maxNodes of Cloud3 is 0, so the autoscaler "
         "starts none of its nodes: raise it (hpc nodegroup set Cloud3 --max N)"),
        (["Cloud3"], set(), "no Online node in Cloud3 (1 Offline)"),
        (["Cloud3", "OnPremNodes"], {"Cloud3"}, "(1 Offline)"),  # the other may grow
        ([], {"Cloud3"}, "(1 Offline)"),
    ],
)  # fmt: skip
def test_pending_reason_says_a_max_of_0(groups, capped, ends):
    task = Task(job_id=1, id=1, command="x", node_groups=groups, state=TaskState.QUEUED)
    node = Node(name="c-1", cores=2, groups=["Cloud3"], state=NodeState.OFFLINE)
    reason = pending_reason(task, [node], {}, capped)
    assert reason is not None and reason.endswith(ends), reason


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("api")) as app, app.client() as client:
        yield client, app.token


def test_the_api_and_cli_agree_on_bounds(host, monkeypatch):
    client, token = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", token)
    made = hpc("nodegroup", "create", "Cloud3", "--provider", "local", "--max", "2")
    assert made.exit_code == 0, made.output
    assert "node group Cloud3 created (min 0, max 2 nodes)" in made.output
    assert hpc("nodegroup", "set", "Cloud3", "--max", "0").exit_code == 0
    above = client.patch("/api/nodegroups/Cloud3", json={"minNodes": 7})
    assert above.status_code == 422 and "min nodes 7 is above max nodes 0" in above.text
    onprem = client.patch("/api/nodegroups/OnPremNodes", json={"maxNodes": 1})
    assert onprem.status_code == 422 and "only to managed groups" in onprem.text
    refused = hpc("nodegroup", "set", "OnPremNodes", "--idle-policy", "keep")
    assert_one_error_line(refused, "idlePolicy applies only to managed groups")
    added = hpc("node", "add", "--group", "Cloud3", "--count", "3")
    assert_one_error_line(added, "maxNodes is 0", "--max 3")
    listed = hpc("nodegroup", "list")
    assert listed.exit_code == 0, listed.output
    row = next(line.split() for line in listed.output.splitlines() if "OnPremNodes" in line)
    assert row[1:5] == ["on-prem", "-", "-", "-"], row
