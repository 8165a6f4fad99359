"""Bad input to nodes and node groups is refused before it is stored, and a task that can
never be sent fails alone: each case here once made every later read, submit or scheduler
pass fail (found by probing a live cluster)."""

from __future__ import annotations

import pytest

from shared.domain.models import Task
from shared.domain.states import JobState, TaskState
from shared.ports.bus import MAX_MESSAGE_BYTES
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures

GROUP = "AzureNodes"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The real function_app on the local host, and a client with the admin token."""
    home = tmp_path_factory.mktemp("api")
    with served_app(home, {"HPC_COMPUTE": "local"}) as app, app.client() as client:
        assert AgentDouble(app.cp, "onprem-1").register().accepted  # so that submits fit
        yield client, app.token


def _still_works(client) -> None:
    """What one stored bad value used to break: the group list, a submit."""
    assert client.get("/api/nodegroups").status_code == 200
    assert client.post("/api/jobs", json={"command": "echo ok"}).status_code == 201


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"minNodes": None}, "minNodes cannot be null: give a whole number from 0 to 100,000"),
        ({"description": None}, "description cannot be null"),
        ({"autoscale": None}, "autoscale cannot be null: give true or false"),
        ({"nodeCores": None}, "nodeCores cannot be null"),
        ({"bootDelayS": None}, "bootDelayS cannot be null"),
        ({"maxNodes": True}, "maxNodes must be a whole number from 0 to 100,000, got true"),
        ({"maxNodes": 2.5}, "maxNodes must be a whole number"),
        ({"nodeCores": 0}, "nodeCores must be a whole number from 1 to 1,000,000, got 0"),
        ({"nodeCores": 10**30}, "nodeCores must be a whole number from 1 to 1,000,000"),
        ({"growIntervalS": 1e9}, "growIntervalS must be a number of seconds from 0 to 86,400"),
        ({"tasksPerResourceUnit": 0}, "tasksPerResourceUnit must be a whole number from 1"),
        ({"provider": "nosuch"}, "provider 'nosuch' is not this cluster's compute provider"),
        (
            {"provider": "azure"},
            "provider 'azure' is not this cluster's compute provider (this cluster's is "
            "'local'; HPC_COMPUTE): give local",
        ),
        ({"self": 1}, "node group setting 'self' is unknown; known: description, minNodes"),
        ({"deps": 1}, "node group setting 'deps' is unknown"),
        ({"idlePolicy": "keep:99999999999999999999"}, "idlePolicy must be"),
        ({"idlePolicy": "value:1e307"}, "idlePolicy must be"),
        ({"provider": ""}, "provider must be text of at most 64 characters or null"),
        ({"size": 5}, "size must be text of at most 128 characters or null, got 5"),
        ({"name": "Other"}, "a node group's name cannot change"),
    ],
)
def test_a_bad_group_setting_is_a_422_naming_it_and_stores_nothing(host, body, message):
    client, _ = host
    before = client.get("/api/nodegroups").json()["groups"]
    response = client.patch(f"/api/nodegroups/{GROUP}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(message)
    assert client.get("/api/nodegroups").json()["groups"] == before
    _still_works(client)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_group_time_that_is_not_finite_is_refused(host, constant):
    client, _ = host
    for key in ("bootDelayS", "growIntervalS", "shrinkIntervalS"):
        response = client.patch(
            f"/api/nodegroups/{GROUP}",
            content=f'{{"{key}": {constant}}}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code in (400, 422), response.text
    _still_works(client)


def test_a_new_group_with_a_null_setting_is_not_created(host):
    client, _ = host
    response = client.post("/api/nodegroups", json={"name": "Grp3", "minNodes": None})
    assert response.status_code == 422 and "minNodes cannot be null" in response.json()["error"]
    assert "Grp3" not in [g["name"] for g in client.get("/api/nodegroups").json()["groups"]]
    _still_works(client)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"group": GROUP, "count": 1, "cores": 10**23}, "cores must be a whole number from 1 to"),
        ({"group": GROUP, "count": 1, "cores": True}, "cores must be a whole number"),
        ({"group": GROUP, "count": 1, "size": 5}, "size must be a VM size"),
        ({"group": GROUP, "count": 1, "size": ""}, "size must be a VM size"),
        ({"group": GROUP, "count": 1, "size": "\u0000bad size\n"}, "size must be a VM size"),
        ({"group": 7, "count": 1}, "group must be a node group's name, got 7"),
    ],
)
def test_bad_node_adds_are_refused_before_any_vm_is_made(host, body, message):
    client, _ = host
    before = client.get("/api/nodes").json()["nodes"]
    response = client.post("/api/nodes", json=body)
    assert response.status_code == 422, response.text  # it reads: a bad field (README)
    assert message in response.json()["error"]
    assert client.get("/api/nodes").json()["nodes"] == before


@pytest.mark.parametrize("size", ["", "\u0000bad size\n", "Standard D4", "x" * 129, 5])
def test_a_group_size_that_no_vm_could_have_is_refused_and_changes_nothing(host, size):
    """Found by a probe: a group took any text as its VM size (a NUL, a newline, ""), and
    hpc node add then made nodes of it."""
    client, _ = host
    created = client.post("/api/nodegroups", json={"name": "Sized", "provider": "local",
                                                   "maxNodes": 1})  # fmt: skip
    assert created.status_code in (201, 409), created.text
    refused = client.post("/api/nodegroups", json={"name": "Sized2", "provider": "local",
                                                   "size": size})  # fmt: skip
    assert refused.status_code == 422 and "size must be " in refused.json()["error"]
    patched = client.patch("/api/nodegroups/Sized", json={"size": size})
    assert patched.status_code == 422 and "size must be " in patched.json()["error"]
    groups = {g["name"]: g for g in client.get("/api/nodegroups").json()["groups"]}
    assert "Sized2" not in groups and groups["Sized"]["size"] is None
    ok = client.patch("/api/nodegroups/Sized", json={"size": "Standard_M128-64ms"})
    assert ok.status_code == 200 and ok.json()["size"] == "Standard_M128-64ms"
    assert client.patch("/api/nodegroups/Sized", json={"size": None}).json()["size"] is None


def test_a_node_cannot_join_a_managed_group_past_its_max(host):
    client, _ = host
    for name, most in (("Small", 1), ("Big", 5)):
        created = client.post("/api/nodegroups", json={"name": name, "provider": "local",
                                                       "maxNodes": most})  # fmt: skip
        assert created.status_code == 201, created.text
    [mine] = client.post("/api/nodes", json={"group": "Small", "count": 1}).json()["nodes"]
    [other] = client.post("/api/nodes", json={"group": "Big", "count": 1}).json()["nodes"]
    response = client.patch(f"/api/nodes/{other['name']}", json={"groups": ["Big", "Small"]})
    assert response.status_code == 409
    assert response.json()["error"].startswith(
        "node group Small has 1 node(s) and its maxNodes is 1"
    )
    assert client.patch(f"/api/nodes/{mine['name']}", json={"groups": ["Small"]}).status_code == 200


def test_the_cli_says_a_group_does_not_exist_rather_than_that_it_has_no_nodes(host, monkeypatch):
    client, token = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", token)
    result = hpc("node", "start", "--group", "Nope")
    assert_one_error_line(result, "node group 'Nope' does not exist (hpc nodegroup list)")


# --- a task too large for the bus ---------------------------------------------------


def test_a_task_too_large_to_send_fails_alone_and_its_siblings_run(cp):  # noqa: F811
    agent = register(cp, "n1", cores=4)
    job = cp.submit({"tasks": [{"command": "echo small"}, {"command": "echo big"}]})
    [_, big] = cp.store.list_tasks(job.id)
    big.env = {"PAD": "x" * (MAX_MESSAGE_BYTES + 1000)}  # stored before submit checked it
    cp.store.commit(tasks=[big])
    assert cp.schedule_pass() == 1  # the small one: its node's batch is not refused
    failed: Task = cp.store.get_task(job.id, big.id)
    assert failed.state is TaskState.FAILED
    assert failed.error is not None and failed.error.startswith("its assignment is 26")
    assert "a bus message is at most 262,144" in failed.error
    assert [r.command for r in agent.run_all()] == ["echo small"]
    final = cp.get_job(job.id)
    assert (final.state, final.error) == (JobState.FAILED, "1 of 2 tasks failed")
    assert cp.schedule_pass() == 0  # nothing is sent again


def test_a_new_group_with_a_setting_named_like_an_argument_is_a_422(host):
    client, _ = host
    for key in ("self", "deps"):
        response = client.post("/api/nodegroups", json={"name": "G1", key: 1})
        assert response.status_code == 422, response.text
        assert f"node group setting '{key}' is unknown" in response.json()["error"]
    _still_works(client)


def test_a_groups_provider_changes_only_while_it_has_no_nodes(host):
    client, _ = host
    created = client.post(
        "/api/nodegroups", json={"name": "Vms", "provider": "local", "maxNodes": 1}
    )
    assert created.status_code == 201, created.text
    assert client.patch("/api/nodegroups/Vms", json={"provider": None}).status_code == 200
    assert client.patch("/api/nodegroups/Vms", json={"provider": "local"}).status_code == 200
    [node] = client.post("/api/nodes", json={"group": "Vms", "count": 1}).json()["nodes"]
    response = client.patch("/api/nodegroups/Vms", json={"provider": None})
    assert response.status_code == 409, response.text
    assert response.json()["error"].startswith(
        f"node group Vms has 1 node(s) ({node['name']}): its provider changes (local -> on-prem)"
    )
    group = next(g for g in client.get("/api/nodegroups").json()["groups"] if g["name"] == "Vms")
    assert group["provider"] == "local"  # nothing changed
    same = client.patch("/api/nodegroups/Vms", json={"provider": "local", "maxNodes": 9})
    assert same.status_code == 200  # naming the provider it has is no change


def test_the_cli_makes_a_group_on_prem_again_with_provider_onprem(host, monkeypatch):
    client, token = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", token)
    assert client.post("/api/nodegroups", json={"name": "Later", "provider": "local"}).is_success
    result = hpc("nodegroup", "set", "Later", "--provider", "onprem")
    assert result.exit_code == 0, result.output
    group = next(g for g in client.get("/api/nodegroups").json()["groups"] if g["name"] == "Later")
    assert group["provider"] is None


def test_a_group_action_goes_on_past_a_node_it_does_not_apply_to(tmp_path, monkeypatch):
    """`hpc node drain --group G` once drained the first node, then stopped with an error at
    an Offline one, leaving the rest as they were."""
    with served_app(tmp_path / "home") as app, app.client() as client:
        for name in ("p-1", "p-2", "p-3"):
            assert AgentDouble(app.cp, name).register().accepted
        assert client.post("/api/nodes/p-2/offline").status_code == 200
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        result = hpc("node", "drain", "--group", "OnPremNodes")
        assert result.exit_code == 0, result.output
        assert "p-2: not drained: node p-2 is Offline" in " ".join(result.stderr.split())
        states = {n["name"]: n["state"] for n in client.get("/api/nodes").json()["nodes"]}
        assert states == {"p-1": "Draining", "p-2": "Offline", "p-3": "Draining"}
        named = hpc("node", "drain", "p-2", "p-3")  # named nodes: each was meant
        assert named.exit_code == 1
        assert "1 of 2 node(s) not drained" in named.stderr
