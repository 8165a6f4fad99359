"""The HTTP contract gaps an API-contract probe named, on the served function app: one node
and one node group by name, the tasks list's ``next``, ``HEAD`` and ``OPTIONS``,
``WWW-Authenticate`` on a 401 and ``Location`` on a 201."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent_double import AgentDouble
from tests.app_fixtures import ServedApp, served_app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    with served_app(tmp_path_factory.mktemp("contract")) as served:
        assert AgentDouble(served.cp, "n1", cores=4).register().accepted
        yield served


@pytest.fixture
def client(app: ServedApp) -> Iterator[httpx.Client]:
    with app.client() as c:
        yield c


# --- one node, one node group ----------------------------------------------------------


def test_one_node_is_as_the_list_shows_it(client: httpx.Client) -> None:
    one = client.get("/api/nodes/n1")
    assert one.status_code == 200, one.text
    [listed] = [n for n in client.get("/api/nodes").json()["nodes"] if n["name"] == "n1"]
    assert one.json() == listed
    assert "agentId" not in one.json() and "etag" not in one.json()  # private, as in the list


def test_an_unknown_node_is_a_404_saying_so(client: httpx.Client) -> None:
    r = client.get("/api/nodes/n9")
    assert r.status_code == 404
    assert r.json()["error"] == "node 'n9' does not exist (hpc node list)"
    # names are exact, as the node actions take them (the CLI finds another case by the list)
    assert client.get("/api/nodes/N1").status_code == 404


def test_one_node_group_by_name_in_any_case(client: httpx.Client) -> None:
    r = client.get("/api/nodegroups/onpremnodes")
    assert r.status_code == 200, r.text
    [listed] = [
        g for g in client.get("/api/nodegroups").json()["groups"] if g["name"] == "OnPremNodes"
    ]
    assert r.json() == listed
    gone = client.get("/api/nodegroups/Nope")
    assert gone.status_code == 404 and "does not exist" in gone.json()["error"]


# --- the tasks list's next ------------------------------------------------------------


def test_following_next_yields_every_task_once(client: httpx.Client) -> None:
    job = client.post("/api/jobs", json={"command": "echo *", "sweep": "1-25"}).json()
    seen: list[int] = []
    after: Any = 0
    pages = 0
    while after is not None:
        page = client.get(f"/api/jobs/{job['id']}/tasks", params={"limit": 10, "after": after})
        assert page.status_code == 200, page.text
        seen += [t["id"] for t in page.json()["tasks"]]
        after = page.json()["next"]
        pages += 1
    assert seen == list(range(1, 26)) and pages == 3
    whole = client.get(f"/api/jobs/{job['id']}/tasks", params={"limit": 25}).json()
    assert len(whole["tasks"]) == 25 and whole["next"] is None  # the last page says so


def test_next_with_a_state_filter_pages_within_it(client: httpx.Client) -> None:
    job = client.post("/api/jobs", json={"command": "echo *", "sweep": "1-5"}).json()
    url = f"/api/jobs/{job['id']}/tasks"
    first = client.get(url, params={"state": "Queued", "limit": 2}).json()
    assert [t["id"] for t in first["tasks"]] == [1, 2] and first["next"] == 2
    rest = client.get(url, params={"state": "Queued", "limit": 9, "after": first["next"]}).json()
    assert [t["id"] for t in rest["tasks"]] == [3, 4, 5] and rest["next"] is None


# --- HEAD and OPTIONS ---------------------------------------------------------------------

GET_ROUTES = [
    "/api/health",
    "/api/jobs",
    "/api/nodes",
    "/api/nodes/n1",
    "/api/nodegroups",
    "/api/nodegroups/OnPremNodes",
    "/api/me",
    "/api/templates",
    "/api/users",
    "/api/autoscale/log",
    "/api/dashboard",
]


@pytest.mark.parametrize("path", GET_ROUTES)
def test_head_is_the_get_without_its_body(client: httpx.Client, path: str) -> None:
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    same = {k: v for k, v in got.headers.items() if k != "date"}
    assert {k: v for k, v in head.headers.items() if k != "date"} == same  # Content-Length too


def test_head_of_a_job_task_and_output_and_its_errors(client: httpx.Client) -> None:
    job = client.post("/api/jobs", json={"command": "true"}).json()
    for path in (f"/api/jobs/{job['id']}", f"/api/jobs/{job['id']}/tasks"):
        head = client.head(path)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == client.get(path).headers["content-length"]
    missing = client.head("/api/jobs/999999")
    assert (missing.status_code, missing.content) == (404, b"")
    with httpx.Client(base_url=str(client.base_url)) as anonymous:
        refused = anonymous.head("/api/jobs")
    assert refused.status_code == 401 and refused.content == b""
    assert refused.headers["www-authenticate"] == 'Bearer realm="hybridhpc"'


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/jobs", "GET, HEAD, OPTIONS, POST"),
        ("/api/jobs/1", "GET, HEAD, OPTIONS, PATCH"),
        ("/api/jobs/1/cancel", "OPTIONS, POST"),
        ("/api/jobs/1/tasks", "GET, HEAD, OPTIONS"),
        ("/api/nodes", "GET, HEAD, OPTIONS, POST"),
        ("/api/nodes/n1", "DELETE, GET, HEAD, OPTIONS, PATCH"),
        ("/api/nodes/n1/drain", "OPTIONS, POST"),
        ("/api/nodegroups/OnPremNodes", "DELETE, GET, HEAD, OPTIONS, PATCH"),
        ("/api/templates/t", "DELETE, GET, HEAD, OPTIONS, PUT"),
        ("/api/users", "GET, HEAD, OPTIONS, POST"),
        ("/api/users/alice", "DELETE, OPTIONS"),
        ("/api/health", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_says_the_methods_without_a_token(
    client: httpx.Client, path: str, allow: str
) -> None:
    """No token: a browser's CORS preflight never sends one."""
    with httpx.Client(base_url=str(client.base_url)) as anonymous:
        r = anonymous.options(path)
    assert r.status_code == 204 and r.content == b""
    assert r.headers["allow"] == allow


def test_options_of_no_route_is_a_404(client: httpx.Client) -> None:
    assert client.options("/api/nope").status_code == 404


# --- WWW-Authenticate and Location -----------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic eDp5"])
def test_every_401_says_the_bearer_scheme(client: httpx.Client, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with httpx.Client(base_url=str(client.base_url), headers=headers) as caller:
        for r in (caller.get("/api/jobs"), caller.post("/api/nodes/n1/drain")):
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == 'Bearer realm="hybridhpc"'


def test_a_submit_answers_its_job_location_also_when_replayed(client: httpx.Client) -> None:
    r = client.post("/api/jobs", json={"command": "true"})
    assert r.status_code == 201 and r.headers["location"] == f"/api/jobs/{r.json()['id']}"
    assert client.get(r.headers["location"]).json()["id"] == r.json()["id"]
    keyed = {"Idempotency-Key": "contract-1"}
    first = client.post("/api/jobs", json={"command": "true"}, headers=keyed)
    again = client.post("/api/jobs", json={"command": "true"}, headers=keyed)
    assert again.headers["idempotent-replayed"] == "true"
    assert first.headers["location"] == again.headers["location"]
    assert first.headers["location"] == f"/api/jobs/{first.json()['id']}"


def test_creates_answer_the_created_resources_location(client: httpx.Client) -> None:
    group = client.post("/api/nodegroups", json={"name": "Loc1"})
    assert group.status_code == 201 and group.headers["location"] == "/api/nodegroups/Loc1"
    assert client.get(group.headers["location"]).json()["name"] == "Loc1"
    template = client.put("/api/templates/loc-t", json={"maxCores": 2})
    assert template.status_code == 201
    assert template.headers["location"] == "/api/templates/loc-t"
    assert client.put("/api/templates/loc-t", json={"maxCores": 3}).status_code == 200
    user = client.post("/api/users", json={"name": "locuser"})
    assert user.status_code == 201 and user.headers["location"] == "/api/users/locuser"


def test_a_node_add_answers_its_first_nodes_location(tmp_path: Path) -> None:
    env = {"HPC_COMPUTE": "local"}
    with served_app(tmp_path / "home", env) as served, served.client() as client:
        group = {"name": "Vms", "provider": "local", "maxNodes": 4}
        assert client.post("/api/nodegroups", json=group).status_code == 201
        r = client.post("/api/nodes", json={"group": "Vms", "count": 2})
        assert r.status_code == 201, r.text
        first = r.json()["nodes"][0]["name"]
        assert r.headers["location"] == f"/api/nodes/{first}"
        for node in r.json()["nodes"]:  # the etag and the agent's session were in it (a probe)
            assert not {"agentId", "hostId", "missingSince", "givenUp", "etag"} & set(node)
        assert client.get(r.headers["location"]).json()["name"] == first
        keyed = {"Idempotency-Key": "add-1"}
        add = {"group": "Vms", "count": 1}
        once, again = (client.post("/api/nodes", json=add, headers=keyed) for _ in range(2))
        assert again.headers["idempotent-replayed"] == "true"
        assert once.headers["location"] == again.headers["location"]
        assert once.headers["location"] == f"/api/nodes/{once.json()['nodes'][0]['name']}"
        assert "etag" not in again.json()["nodes"][0]  # the replay is the stored answer
