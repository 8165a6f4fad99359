"""Bad input the API once took in silence or refused wrongly: a JSON object giving a key twice
(``json.loads`` kept the last one, so ``{"command": "a", "command": "b"}`` ran b), and
``If-Match: *`` on a template PUT (refused with 409 though the template existed).

Against the real function_app.py (tests/app_fixtures.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.domain.specvalues import DuplicateKey, JsonRefused, JsonTooDeep, load_json
from tests.agent_double import AgentDouble
from tests.app_fixtures import ServedApp, served_app
from tests.helpers import error, new_job


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    with served_app(tmp_path_factory.mktemp("bad-input-misc")) as app:
        AgentDouble(app.cp, "n1", cores=4).register()
        yield app


@pytest.fixture(scope="module")
def http(served: ServedApp) -> Iterator[httpx.Client]:
    """The admin's client of the real API."""
    with served.client(timeout=30) as client:
        yield client


def twice(key: str) -> str:
    return f"request body gives the key {key!r} more than once in one object; give each key once"


# --- 1. a key given twice in one JSON object: 400 naming it (json.loads kept the last) ------

ROUTES_WITH_A_BODY = [
    ("POST", "/api/jobs"),
    ("PUT", "/api/templates/T1"),
    ("PATCH", "/api/nodegroups/OnPremNodes"),
    ("POST", "/api/nodegroups"),
    ("POST", "/api/users"),
    ("POST", "/api/nodes"),
    ("PATCH", "/api/nodes/n1"),
    ("PATCH", "/api/jobs/{job}"),
    ("POST", "/api/jobs/{job}/hold"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES_WITH_A_BODY)
@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('{"name": "a", "name": "a"}', "name"),  # even the same value twice
        ('{"x": {"deep": [{"k": 1, "k": 2}]}}', "k"),  # in any object nested in it
    ],
    ids=["top", "nested"],
)
def test_a_key_given_twice_is_400_naming_it_on_every_route(http, method, path, body, key):
    url = path.format(job=new_job(http)) if "{job}" in path else path
    r = http.request(method, url, content=body.encode())
    assert r.status_code == 400, r.text
    assert error(r) == twice(key)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ('{"command": "echo a", "command": "echo b"}', "command"),
        ('{"command": "true", "env": {"X": "1", "X": "2"}}', "X"),
        ('{"tasks": [{"command": "true"}, {"command": "true", "cores": 1, "cores": 2}]}', "cores"),
    ],
)
def test_a_submit_giving_a_key_twice_takes_no_job_and_no_id(http, spec, key):
    before = new_job(http)
    r = http.post("/api/jobs", content=spec.encode())
    assert r.status_code == 400 and error(r) == twice(key), r.text
    assert new_job(http) == before + 1  # no job, no job id taken
    assert http.get("/api/jobs", params={"limit": 1}).json()["jobs"][0]["id"] == before + 1


def test_a_template_put_giving_a_key_twice_changes_nothing(http):
    r = http.put("/api/templates/Kept", json={"maxCores": 2})
    assert r.status_code == 201, r.text
    etag = r.headers["ETag"]
    r = http.put("/api/templates/Kept", content=b'{"maxCores": 3, "maxCores": 4}')
    assert r.status_code == 400 and error(r) == twice("maxCores"), r.text
    r = http.get("/api/templates/Kept")
    assert r.json()["maxCores"] == 2 and r.headers["ETag"] == etag


def test_the_same_key_in_different_objects_is_still_taken(http):
    spec = b'{"command": "true", "env": {"command": "x", "name": "y"}, "name": "n"}'
    r = http.post("/api/jobs", content=spec)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "n"


def test_load_json_refuses_a_key_twice_at_any_depth_and_still_checks_the_depth():
    assert load_json('{"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]}') == {
        "a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}],
    }  # fmt: skip
    for text in ('{"a": 1, "a": 1}', b'[{"a": {"b": 1, "c": 2, "b": 3}}]', '{"": 1, "": 2}'):
        with pytest.raises(DuplicateKey):
            load_json(text)
    with pytest.raises(DuplicateKey, match=r"gives the key 'xxx.*\.\.\. \(100000 characters\)"):
        load_json('{"' + "x" * 100_000 + '": 1, "' + "x" * 100_000 + '": 2}')  # cut, as errors are
    with pytest.raises(JsonTooDeep):
        load_json("[" * 100 + "]" * 100)
    assert issubclass(DuplicateKey, JsonRefused) and issubclass(JsonTooDeep, JsonRefused)


# --- 2. If-Match: * replaces a template that exists (RFC 9110), 409 when there is none ------


def test_if_match_star_replaces_a_template_that_exists(http):
    r = http.put("/api/templates/Star", json={"maxCores": 2})
    assert r.status_code == 201, r.text
    etag = r.headers["ETag"]
    r = http.put("/api/templates/star", json={"maxCores": 3}, headers={"If-Match": "*"})
    assert r.status_code == 200, r.text
    assert r.json()["maxCores"] == 3 and r.headers["ETag"] != etag
    r = http.get("/api/templates/Star")
    assert r.json()["maxCores"] == 3 and r.headers["ETag"] != etag
    # whatever its etag: a second one, after the first changed it, is taken too
    r = http.put("/api/templates/Star", json={"maxCores": 4}, headers={"If-Match": "*"})
    assert r.status_code == 200 and r.json()["maxCores"] == 4, r.text


def test_if_match_star_on_a_template_that_does_not_exist_is_409_and_creates_nothing(http):
    r = http.put("/api/templates/Nowhere", json={"maxCores": 2}, headers={"If-Match": "*"})
    assert r.status_code == 409, r.text
    assert error(r) == (
        "template 'Nowhere' does not exist: If-Match: * replaces only an existing template "
        "(send no If-Match to create it)"
    )
    assert http.get("/api/templates/Nowhere").status_code == 404
    names = [t["name"] for t in http.get("/api/templates").json()["templates"]]
    assert "Nowhere" not in names
    # deleted is as good as never made
    assert http.put("/api/templates/Gone", json={"maxCores": 1}).status_code == 201
    assert http.delete("/api/templates/Gone").status_code == 200
    r = http.put("/api/templates/Gone", json={"maxCores": 2}, headers={"If-Match": "*"})
    assert r.status_code == 409 and "does not exist" in error(r), r.text
    assert http.get("/api/templates/Gone").status_code == 404


def test_an_etag_that_is_not_star_is_still_checked(http):
    r = http.put("/api/templates/Tagged", json={"maxCores": 2})
    etag = r.headers["ETag"]
    for stale in ('"*"', "**", "W/*"):  # none of them is the bare `*`
        r = http.put("/api/templates/Tagged", json={"maxCores": 9}, headers={"If-Match": stale})
        assert r.status_code == 409 and "changed since it was read" in error(r), (stale, r.text)
    r = http.put("/api/templates/Tagged", json={"maxCores": 3}, headers={"If-Match": etag})
    assert r.status_code == 200 and r.json()["maxCores"] == 3, r.text


def test_the_etag_is_quoted_and_if_match_takes_it_quoted_bare_weak_or_in_a_list(http):
    """Found live: the ETag header was bare and a quoted If-Match (as RFC 9110 writes it)
    was refused as stale."""
    r = http.put("/api/templates/Quoted", json={"maxCores": 1})
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    forms = (
        lambda tag: tag,
        lambda tag: tag.strip('"'),
        lambda tag: f"W/{tag}",
        lambda tag: f'"nope", {tag}',
    )
    for n, form in enumerate(forms, start=2):
        header = form(etag)
        r = http.put("/api/templates/Quoted", json={"maxCores": n}, headers={"If-Match": header})
        assert r.status_code == 200 and r.json()["maxCores"] == n, (header, r.text)
        etag = r.headers["ETag"]
    stale = http.put(
        "/api/templates/Quoted", json={"maxCores": 9}, headers={"If-Match": '"a", "b"'}
    )
    assert stale.status_code == 409 and "changed since it was read" in error(stale)


def test_if_none_match_star_creates_only(http):
    headers = {"If-None-Match": "*"}
    assert http.put("/api/templates/Once", json={"maxCores": 1}, headers=headers).status_code == 201
    again = http.put("/api/templates/Once", json={"maxCores": 2}, headers=headers)
    assert again.status_code == 409 and "exists: If-None-Match: * only creates" in error(again)
    assert http.get("/api/templates/Once").json()["maxCores"] == 1
    other = http.put("/api/templates/Once", json={"maxCores": 2}, headers={"If-None-Match": "x"})
    assert other.status_code == 400 and "If-None-Match takes only *" in error(other)


def test_routes_that_take_no_body_refuse_one_and_change_nothing(http):
    """Found live: a cancel with a body (even one that is not JSON) was taken, the body
    ignored. Empty and {} are taken: some clients always send JSON."""
    job = http.post("/api/jobs", json={"command": "x", "holdUntil": "9999-01-01T00:00:00"}).json()
    paths = [
        f"/api/jobs/{job['id']}/cancel",
        f"/api/jobs/{job['id']}/requeue",
        f"/api/jobs/{job['id']}/release",
        f"/api/jobs/{job['id']}/tasks/1/cancel",
        f"/api/jobs/{job['id']}/tasks/1/requeue",
        "/api/nodes/n1/start",
    ]
    for path in paths:
        for body in (b'{"a": 1}', b"{not json"):
            r = http.post(path, content=body)
            assert r.status_code == 400 and "takes no request body" in error(r), (path, r.text)
    for body, status, says in (
        (b'{"a": 1}', 422, '{"reason": TEXT}'),  # it reads: an unknown field (README's rule)
        (b"{not json", 400, "not valid JSON"),
    ):
        r = http.post("/api/nodes/n1/drain", content=body)  # a drain takes {"reason": TEXT}
        assert r.status_code == status and says in error(r), r.text
    assert http.get(f"/api/jobs/{job['id']}").json()["state"] == "Queued"
    assert http.post(f"/api/jobs/{job['id']}/cancel", content=b"{}").status_code == 200


def test_an_empty_work_dir_is_refused_saying_to_leave_it_out(http):
    """Found by the second live probe: `--workdir ''` was stored as an empty directory."""
    before = http.get("/api/jobs?limit=1").json()["jobs"]
    r = http.post("/api/jobs", json={"command": "true", "workDir": " "})
    assert r.status_code == 422 and "workDir" in error(r), r.text
    assert "is empty: leave it out to run in the default directory" in error(r)
    assert http.get("/api/jobs?limit=1").json()["jobs"] == before  # no job, no id taken


def test_states_match_in_any_case_and_a_null_priority_is_said_as_json(http):
    """Found by the second live probe: ?state=running was a 400, and PATCH {"priority": null}
    answered with Python's None."""
    job = http.post("/api/jobs", json={"command": "x", "holdUntil": "9999-01-01T00:00:00"}).json()
    listed = http.get("/api/jobs?state=queued,RUNNING").json()["jobs"]
    assert job["id"] in [j["id"] for j in listed]
    tasks = http.get(f"/api/jobs/{job['id']}/tasks?state=QUEUED").json()["tasks"]
    assert [t["id"] for t in tasks] == [1]
    bad = http.get("/api/jobs?state=Runing")
    assert bad.status_code == 400 and "is not one of Configuring, Submitted, Queued" in error(bad)
    r = http.patch(f"/api/jobs/{job['id']}", json={"priority": None})
    assert r.status_code in (400, 422) and "priority null is not" in error(r), r.text
    http.post(f"/api/jobs/{job['id']}/cancel")
