"""Third probe, the admin commands on the served function app (the real rules; agents played
by tests/agent_double.py):

- ``hpc node drain nosuch onprem-2`` stopped at the 404 and left onprem-2 alone; a node that
  does not exist is now one refusal line among the others, and the rest are acted on;
- ``hpc nodegroup set G --scale-down-delay default`` (and ``--size default``) send JSON null,
  the reset the API documents;
- ``hpc template set --max-concurrent N`` sets the documented ``maxConcurrent``;
- every flag that takes node group names also takes them comma-separated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.auth import digest
from shared.domain.cluster import Principal
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc

GROUPS = {"p-1": ["Pin1"], "p-2": ["Pin2"], "p-3": ["OnPremNodes"]}
USER_TOKEN = "a-user-token"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """Three registered on-prem nodes: p-1 in Pin1, p-2 in Pin2, p-3 in OnPremNodes; and a
    managed group Cloud (provider local); a user token (not an admin's), USER_TOKEN."""
    with served_app(tmp_path / "home") as app, app.client() as client:
        app.cp.store.add_token(digest(USER_TOKEN), Principal(name="alice", role="user"))
        for group in ("Pin1", "Pin2"):
            assert client.post("/api/nodegroups", json={"name": group}).status_code == 201
        cloud = client.post("/api/nodegroups", json={"name": "Cloud", "provider": "local"})
        assert cloud.status_code == 201, cloud.text
        for name, groups in GROUPS.items():
            assert AgentDouble(app.cp, name).register().accepted
            assert client.patch(f"/api/nodes/{name}", json={"groups": groups}).status_code == 200
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        yield client


def states(client: httpx.Client) -> dict[str, str]:
    return {n["name"]: n["state"] for n in client.get("/api/nodes").json()["nodes"]}


# --- node actions go on past a node that does not exist -----------------------------------


def test_a_named_node_that_does_not_exist_is_one_line_and_the_rest_are_acted_on(
    cluster: httpx.Client,
) -> None:
    result = hpc("node", "drain", "nosuch", "p-2", "p-1")
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == ["p-2: Draining", "p-1: Draining"]
    lines = [" ".join(line.split()) for line in result.stderr.strip().splitlines()]
    assert lines[0] == "nosuch: not drained: node 'nosuch' does not exist"
    assert lines[-1] == "error: 1 of 3 node(s) not drained"
    assert len(lines) == 2
    assert states(cluster) == {"p-1": "Draining", "p-2": "Draining", "p-3": "Online"}


@pytest.mark.parametrize(
    ("token", "said"),
    [("not-a-token", "invalid token"), (USER_TOKEN, "admin")],  # 401, 403
)
def test_an_error_that_is_not_about_the_node_still_stops_at_once(
    cluster: httpx.Client, monkeypatch: pytest.MonkeyPatch, token: str, said: str
) -> None:
    monkeypatch.setenv("HPC_TOKEN", token)
    result = hpc("node", "drain", "p-2", "nosuch", "p-1")
    assert_one_error_line(result, said)  # for the first node, and no other is asked
    assert result.stdout == ""
    assert set(states(cluster).values()) == {"Online"}


# --- node groups as a comma-separated list ------------------------------------------------


def test_node_group_flags_take_a_comma_separated_list(cluster: httpx.Client) -> None:
    result = hpc("node", "drain", "--group", "Pin1,pin2")
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == ["p-1: Draining", "p-2: Draining"]
    assert states(cluster)["p-3"] == "Online"

    moved = hpc("node", "set", "p-3", "--group", "Pin1,Pin2")
    assert moved.exit_code == 0, moved.output
    assert moved.stdout.strip() == "p-3: groups Pin1, Pin2"

    assert_one_error_line(hpc("node", "online", "--group", "Pin1,"), "--group", "empty")
    assert states(cluster)["p-1"] == "Draining"


# --- nodegroup set: back to the default ----------------------------------------------------


def _group(client: httpx.Client, name: str) -> dict:
    return {g["name"]: g for g in client.get("/api/nodegroups").json()["groups"]}[name]


@pytest.mark.parametrize("word", ["default", "none", "Default"])
def test_scale_down_delay_default_sends_null(cluster: httpx.Client, word: str) -> None:
    assert hpc("nodegroup", "set", "Cloud", "--scale-down-delay", "120").exit_code == 0
    assert _group(cluster, "Cloud")["scaleDownDelayS"] == 120
    result = hpc("nodegroup", "set", "Cloud", "--scale-down-delay", word)
    assert result.exit_code == 0, result.output
    assert _group(cluster, "Cloud")["scaleDownDelayS"] is None


def test_size_default_sends_null(cluster: httpx.Client) -> None:
    assert hpc("nodegroup", "set", "Cloud", "--size", "Standard_D4s_v5").exit_code == 0
    assert _group(cluster, "Cloud")["size"] == "Standard_D4s_v5"
    result = hpc("nodegroup", "set", "Cloud", "--size", "default")
    assert result.exit_code == 0, result.output
    assert _group(cluster, "Cloud")["size"] is None


@pytest.mark.parametrize("bad", ["soon", "-5", "nan", "inf"])
def test_scale_down_delay_refuses_what_is_no_number_of_seconds(
    cluster: httpx.Client, bad: str
) -> None:
    result = hpc("nodegroup", "set", "Cloud", "--scale-down-delay", bad)
    assert_one_error_line(result, "--scale-down-delay", repr(bad), "default")
    assert result.exit_code == 2


# --- template set --------------------------------------------------------------------------


def test_template_set_takes_max_concurrent_lists_and_slurms_days(cluster: httpx.Client) -> None:
    result = hpc(
        "template", "set", "Wide", "--max-concurrent", "10", "--nodegroup", "Pin1,Pin2",
        "--allowed-nodegroup", "Pin1,Pin2", "--allowed-nodegroup", "OnPremNodes",
        "--runtime-limit", "1-00:00:00", "--max-runtime-limit", "2-12",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = cluster.get("/api/templates/Wide").json()
    assert saved["maxConcurrent"] == 10
    assert saved["nodeGroups"] == ["Pin1", "Pin2"]
    assert saved["allowedNodeGroups"] == ["Pin1", "Pin2", "OnPremNodes"]
    assert (saved["runtimeLimit"], saved["maxRuntimeLimit"]) == (86400, 2 * 86400 + 12 * 3600)
    shown = hpc("template", "show", "Wide")
    assert "1-00:00:00" in shown.stdout and "2-12:00:00" in shown.stdout

    # what it shows, it takes back (the probe's 1-00:00:00)
    again = hpc("template", "set", "Wide", "--max-concurrent", "3", "--runtime-limit", "1-00:00:00")
    assert again.exit_code == 0, again.output
    assert cluster.get("/api/templates/Wide").json()["maxConcurrent"] == 3
    assert hpc("template", "set", "Wide", "--max-concurrent", "0").exit_code == 2
