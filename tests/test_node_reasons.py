"""An admin's stop, drain or offline says who and, if given, why (Slurm's ``scontrol update
state=drain reason=...``, shown by ``sinfo -R``): ``POST /api/nodes/{name}/{action}`` with
``{"reason": TEXT}`` and ``hpc node drain|offline|stop --reason``, on the served app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc
from tests.helpers import wait_until


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    with served_app(tmp_path / "home") as app, app.client() as client:
        for name in ("n1", "n2", "n3"):
            assert AgentDouble(app.cp, name).register().accepted
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        yield client


def reason_of(client: httpx.Client, name: str) -> str:
    nodes = {n["name"]: n for n in client.get("/api/nodes").json()["nodes"]}
    return nodes[name]["stateReason"]


def test_a_drain_says_who_and_why(cluster: httpx.Client) -> None:
    done = cluster.post("/api/nodes/n1/drain", json={"reason": " disk swap, ticket 123 "})
    assert done.status_code == 200, done.text
    assert reason_of(cluster, "n1") == "drained by admin: disk swap, ticket 123"
    assert cluster.post("/api/nodes/n2/offline").status_code == 200  # no body: who only
    assert reason_of(cluster, "n2") == "taken offline by admin"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"reason": ""}, "1 to 200 characters"),
        ({"reason": "x" * 201}, "1 to 200 characters"),
        ({"reason": 5}, '{"reason": TEXT}'),
        ({"why": "x"}, '{"reason": TEXT}'),
        ({"reason": "bad\x1b[31m"}, "control character U+001B"),
    ],
)
def test_a_bad_reason_is_refused_and_changes_nothing(cluster: httpx.Client, body, says) -> None:
    refused = cluster.post("/api/nodes/n3/drain", json=body)
    assert refused.status_code == 422 and says in refused.json()["error"]
    assert reason_of(cluster, "n3") != "drained by admin"
    states = {n["name"]: n["state"] for n in cluster.get("/api/nodes").json()["nodes"]}
    assert states["n3"] == "Online"


def test_a_start_takes_no_reason(cluster: httpx.Client) -> None:
    refused = cluster.post("/api/nodes/n3/start", json={"reason": "x"})
    assert refused.status_code == 400 and "takes no request body" in refused.json()["error"]


def test_the_cli_gives_the_reason(cluster: httpx.Client) -> None:
    out = hpc("node", "drain", "n3", "--reason", "fan noise")
    assert out.exit_code == 0, out.output
    assert reason_of(cluster, "n3") == "drained by admin: fan noise"
    bad = hpc("node", "offline", "n3", "--reason", "x" * 300)
    assert_one_error_line(bad, "1 to 200 characters", "got 300")


@pytest.mark.parametrize("given", ["", "   ", "x" * 201, "tab\tno"])
def test_the_cli_refuses_a_bad_reason_in_its_own_words(cluster: httpx.Client, given: str) -> None:
    """A probe's `--reason ''` read the API's `the body is {"reason": TEXT}`."""
    bad = hpc("node", "drain", "n3", "--reason", given)
    assert_one_error_line(bad, "--reason")
    assert "body" not in bad.stderr
    assert reason_of(cluster, "n3") == "agent registered"  # nothing sent


def test_an_action_without_a_reason_keeps_the_why_of_the_hold(cluster: httpx.Client) -> None:
    """A probe's second `hpc node drain` (no --reason) erased "bad DIMM, ticket 77", and a
    later offline did too: Slurm keeps a node's reason until a new one is given."""
    assert hpc("node", "drain", "n1", "--reason", "bad DIMM, ticket 77").exit_code == 0
    again = hpc("node", "drain", "n1")
    assert again.exit_code == 0 and "already" in again.output
    assert reason_of(cluster, "n1") == "drained by admin: bad DIMM, ticket 77"
    assert hpc("node", "offline", "n1").exit_code == 0
    assert reason_of(cluster, "n1") == "taken offline by admin: bad DIMM, ticket 77"
    assert hpc("node", "drain", "n2").exit_code == 0  # no why before either: who only
    assert reason_of(cluster, "n2") == "drained by admin"


def test_a_node_named_in_another_case_is_acted_on(cluster: httpx.Client) -> None:
    """`hpc node view ONPREM-1` found onprem-1 while `hpc node drain ONPREM-2` was refused."""
    out = hpc("node", "drain", "N2", "--reason", "case")
    assert out.exit_code == 0, out.output
    assert reason_of(cluster, "n2") == "drained by admin: case"
    assert hpc("node", "drain", "N9").exit_code == 1  # no such node in any case
    moved = hpc("node", "set", "N3", "--group", "OnPremNodes")  # a probe's was refused
    assert moved.exit_code == 0, moved.output
    assert moved.stdout.strip() == "n3: groups OnPremNodes"


def test_a_node_action_answers_without_the_private_fields(cluster: httpx.Client) -> None:
    """A probe saw agentId (its agent's reply session) and hostId in these answers."""
    answer = cluster.post("/api/nodes/n2/drain").json()["nodes"][0]
    assert answer["name"] == "n2" and answer["state"] == "Draining"
    assert not {"agentId", "hostId", "missingSince", "givenUp", "etag"} & set(answer)


def test_a_provider_is_taken_in_any_case(cluster: httpx.Client) -> None:
    made = cluster.post("/api/nodegroups", json={"name": "Pv", "provider": "LOCAL"})
    assert made.status_code == 201, made.text
    assert made.json()["provider"] == "local"


@pytest.mark.parametrize(("action", "state"), [("drain", "Draining"), ("offline", "Offline")])
def test_a_second_reason_replaces_the_first_as_slurms_does(
    cluster: httpx.Client, action: str, state: str
) -> None:
    """A probe's second `hpc node drain n1 --reason ...` answered "nothing to do" and kept
    the old reason."""
    first = cluster.post(f"/api/nodes/n1/{action}", json={"reason": "maint"}).json()
    assert first["changed"] is True
    again = cluster.post(f"/api/nodes/n1/{action}", json={"reason": "maint"}).json()
    assert again["changed"] is False  # the same reason: nothing to do, as before
    other = cluster.post(f"/api/nodes/n1/{action}", json={"reason": "ticket 789"})
    assert other.status_code == 200 and other.json()["changed"] is True, other.text
    assert reason_of(cluster, "n1").endswith("by admin: ticket 789")
    [node] = other.json()["nodes"]
    assert (node["state"], node["held"], node["heldReason"]) == (state, action, node["stateReason"])


def test_an_admins_reason_outlives_the_agents_restart(tmp_path: Path) -> None:
    """A probe: "drained by admin: maint test" became "agent restarted; drained by an
    admin..." once the node's agent registered again."""
    with served_app(tmp_path / "home") as app, app.client() as client:
        agent = AgentDouble(app.cp, "n1")
        assert agent.register().accepted
        assert client.post("/api/nodes/n1/drain", json={"reason": "maint test"}).status_code == 200
        again = AgentDouble(app.cp, "n1", host_id=agent.host_id)  # a restarted agent
        assert again.register().accepted
        reason = reason_of(client, "n1")
        assert reason.startswith("drained by admin: maint test (agent restarted; held"), reason
        assert "hpc node online n1" in reason


def test_an_offline_says_which_running_tasks_it_requeued(tmp_path: Path, monkeypatch) -> None:
    """A probe's ``hpc node offline`` of a busy VM said only "Offline": which of its tasks
    were requeued is in the answer's ``tasks`` and on the CLI's line."""
    with served_app(tmp_path / "home") as app, app.client() as client:
        agent = AgentDouble(app.cp, "n1", cores=2)
        assert agent.register().accepted
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        job = app.cp.submit({"command": "x", "sweep": "1-2"})
        app.cp.schedule_pass()  # (the served app's own trigger may have placed them first)
        runs: list = []
        wait_until(lambda: runs.extend(agent.runs()) or len(runs) == 2, 10, "both placed on n1")
        agent.send(*[agent.started(run) for run in runs])
        out = hpc("node", "offline", "n1")
        assert out.exit_code == 0, out.output
        assert f"n1: 2 running tasks requeued: {job.id}.1, {job.id}.2" in out.stdout
        again = client.post("/api/nodes/n1/offline").json()  # already: nothing taken off
        assert again["changed"] is False and "tasks" not in again
        tasks = client.get(f"/api/jobs/{job.id}/tasks").json()["tasks"]
        assert [(t["id"], t["state"], t["attempt"]) for t in tasks] == [
            (1, "Queued", 1),
            (2, "Queued", 1),
        ]
