"""One rule between 400 and 422 on every route (README's HTTP API): 400 when the request
cannot be read (bad JSON, a body where none is taken, a bad query parameter or header), 422
when it reads but says something invalid (an unknown or missing field, a bad value, a bad
time, a field that cannot change, a PATCH of ``{}``). A probe found the same mistake a 400 on
one route and a 422, or a 200, on another; these were the outliers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, int]]:
    with served_app(tmp_path_factory.mktemp("statuses"), {"HPC_COMPUTE": "local"}) as app:
        assert AgentDouble(app.cp, "n1", cores=4).register().accepted
        with app.client() as client:
            job = client.post("/api/jobs", json={"command": "true", "holdUntil": "2999-01-01"})
            assert job.status_code == 201, job.text
            yield client, job.json()["id"]


def _send(client: httpx.Client, job: int, method: str, path: str, body: object) -> httpx.Response:
    return client.request(method, path.format(job=job), json=body)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        # a PATCH of {}: nothing to change (a node group's was a 200, a job's and a node's 400)
        ("PATCH", "/api/jobs/{job}", {}),
        ("PATCH", "/api/nodes/n1", {}),
        ("PATCH", "/api/nodegroups/OnPremNodes", {}),
        # an unknown field (a spec's, a template's and a node group's were 422 already)
        ("PATCH", "/api/jobs/{job}", {"bogus": 1}),
        ("PATCH", "/api/nodes/n1", {"groups": ["OnPremNodes"], "bogus": 1}),
        ("POST", "/api/nodes", {"group": "AzureNodes", "bogus": 1}),
        ("POST", "/api/users", {"name": "bob", "bogus": 1}),
        ("POST", "/api/jobs/{job}/hold", {"bogus": 1}),
        ("POST", "/api/nodes/n1/drain", {"why": "disk swap"}),
        # a bad time (a spec's holdUntil was a 422, hold's until 400 for text)
        ("POST", "/api/jobs/{job}/hold", {"until": "tomorrow"}),
        # a missing field, a field of the wrong type, a field that cannot change
        ("POST", "/api/nodegroups", {"minNodes": 1}),
        ("POST", "/api/nodes", {"count": 1}),
        ("POST", "/api/users", {"role": "user"}),
        ("POST", "/api/nodes", {"group": "AzureNodes", "count": "2"}),
        ("PATCH", "/api/nodes/n1", {"groups": "OnPremNodes"}),
        ("PATCH", "/api/jobs/{job}", {"exclusive": True}),
        # JSON that is not the object the route takes (a submit's [] was a 422)
        ("POST", "/api/nodegroups", []),
        ("PATCH", "/api/nodegroups/OnPremNodes", []),
    ],
)
def test_a_body_that_reads_but_is_invalid_is_a_422(
    api: tuple[httpx.Client, int], method: str, path: str, body: object
) -> None:
    client, job = api
    r = _send(client, job, method, path, body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/jobs", {"command": "true", "bogus": 1}),
        ("PUT", "/api/templates/t", {"bogus": 1}),
        ("PATCH", "/api/nodegroups/OnPremNodes", {"bogus": 1}),
        ("POST", "/api/jobs", {"command": "true", "holdUntil": "tomorrow"}),
        ("POST", "/api/jobs", []),
    ],
)
def test_the_routes_that_followed_the_rule_still_do(
    api: tuple[httpx.Client, int], method: str, path: str, body: object
) -> None:
    client, job = api
    assert _send(client, job, method, path, body).status_code == 422


def test_what_cannot_be_read_stays_a_400(api: tuple[httpx.Client, int]) -> None:
    client, job = api
    bad_json = client.patch(f"/api/jobs/{job}", content=b"{not json")
    twice = client.patch(f"/api/jobs/{job}", content=b'{"name": "a", "name": "b"}')
    body_on_a_bodyless_route = client.post(f"/api/jobs/{job}/release", json={"x": 1})
    unknown_parameter = client.get("/api/jobs", params={"after": 3})
    bad_parameter = client.get("/api/jobs", params={"limit": "ten"})
    bad_key = client.post("/api/jobs", json={"command": "true"}, headers={"Idempotency-Key": ""})
    for r in (bad_json, twice, body_on_a_bodyless_route, unknown_parameter, bad_parameter, bad_key):
        assert r.status_code == 400, r.text


def test_an_empty_node_group_patch_changes_nothing(api: tuple[httpx.Client, int]) -> None:
    client, _ = api
    before = client.get("/api/nodegroups/OnPremNodes").json()
    r = client.patch("/api/nodegroups/OnPremNodes", json={})
    assert r.status_code == 422 and "no setting to change" in r.json()["error"]
    assert client.get("/api/nodegroups/OnPremNodes").json() == before
