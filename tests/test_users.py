"""API users (shared/usecases/users.py, functions/users_api.py, ``hpc user``): an admin
hands out tokens, each user's jobs are its own."""

from __future__ import annotations

import pytest

from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The real function_app on the local host, a client with the admin token, one node."""
    with served_app(tmp_path_factory.mktemp("users")) as app, app.client() as client:
        assert AgentDouble(app.cp, "onprem-1").register().accepted
        yield client, app.token


def as_(client, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add(client, name: str, role: str = "user") -> str:
    response = client.post("/api/users", json={"name": name, "role": role})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def test_an_admin_adds_a_user_whose_token_signs_in_as_it(host):
    client, _ = host
    token = add(client, "alice")
    job = client.post("/api/jobs", json={"command": "echo hi"}, headers=as_(client, token))
    assert job.status_code == 201 and job.json()["owner"] == "alice"
    users = {u["name"]: u for u in client.get("/api/users").json()["users"]}
    assert users["alice"] == {"name": "alice", "role": "user", "tokens": 1}
    assert users["admin"]["role"] == "admin"
    again = client.post("/api/users", json={"name": "alice"})  # a second token, same user
    assert again.status_code == 201 and again.json()["tokens"] == 2
    assert again.json()["token"] != token


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": "9lives"}, 422, "user name '9lives': a letter or _ first"),
        ({"name": "a b"}, 422, "user name 'a b'"),
        ({"name": "x" * 33}, 422, "user name 'xxxxxxxxx"),  # 33: over 32
        ({"name": "dora", "role": "root"}, 422, "role must be one of user, admin, got 'root'"),
        ({"name": "admin", "role": "user"}, 409, "the name admin is hpc up's admin"),
        # a name in another case is the same user's (a probe's Alice beside alice)
        ({"name": "Admin", "role": "admin"}, 409, "user 'admin' exists: user names are one"),
        ({"name": "dora", "extra": 1}, 422, 'the body is {"name": NAME'),
        ({"role": "user"}, 422, 'the body is {"name": NAME'),
    ],
)
def test_bad_user_requests_say_what_to_fix_and_add_nobody(host, body, status, message):
    client, _ = host
    before = client.get("/api/users").json()
    response = client.post("/api/users", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"].startswith(message)
    assert client.get("/api/users").json() == before


def test_only_an_admin_manages_users(host):
    client, _ = host
    token = add(client, "bob")
    for method, path in (("POST", "/api/users"), ("GET", "/api/users"),
                         ("DELETE", "/api/users/alice")):  # fmt: skip
        body = {"name": "eve"} if method == "POST" else None
        response = client.request(method, path, json=body, headers=as_(client, token))
        assert response.status_code == 403, (method, response.text)
        assert "only an admin may" in response.json()["error"]
        assert "bob has role 'user'" in response.json()["error"]


def test_a_removed_user_can_no_longer_sign_in_and_its_jobs_stay(host):
    client, _ = host
    token = add(client, "carl")
    job = client.post("/api/jobs", json={"command": "echo c"}, headers=as_(client, token)).json()
    removed = client.delete("/api/users/carl")
    assert removed.json() == {"name": "carl", "revokedTokens": 1}
    assert client.get("/api/jobs", headers=as_(client, token)).status_code == 401
    assert client.get(f"/api/jobs/{job['id']}").json()["owner"] == "carl"
    again = client.delete("/api/users/carl")
    assert again.status_code == 404 and "user 'carl' does not exist" in again.json()["error"]
    self_removal = client.delete("/api/users/admin")
    assert self_removal.status_code == 409 and "you are admin" in self_removal.json()["error"]


def test_the_cli_adds_lists_and_removes_users(host, monkeypatch):
    client, token = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", token)
    added = hpc("user", "add", "dana")
    assert added.exit_code == 0, added.output
    # the module's node runs tasks as its agent's own user: the new user's tasks could do
    # what it can, which the admin is told (probe: a user's task read admin.token)
    assert "note: node(s) onprem-1 run every task as their agent's own OS user" in added.stderr
    assert "--run-as-owner" in added.stderr
    assert "note:" not in hpc("user", "add", "erin", "--admin").stderr  # an admin may anyway
    new = added.stdout.strip().splitlines()[-1]  # the token alone on stdout's last line
    assert client.get("/api/jobs", headers=as_(client, new)).status_code == 200
    listed = hpc("user", "list")
    assert "dana" in listed.stdout and "user" in listed.stdout
    assert "dana: 1 token(s) revoked" in hpc("user", "remove", "dana").stdout
    monkeypatch.setenv("HPC_TOKEN", new)
    refused = hpc("user", "list")  # its token no longer signs in
    assert_one_error_line(refused, "invalid token: never issued here, or revoked")
    # a user's revoked token is not sent to the admin's file (a multi-user probe)
    assert "ask an admin for a new one (hpc user add NAME)" in refused.stderr
    assert "use the token `hpc up` wrote" not in refused.stderr
    assert "HPC_TOKEN environment variable" in refused.stderr


@pytest.mark.parametrize(
    ("method", "path", "body", "what"),
    [
        ("POST", "cancel", None, "cancel"),
        ("POST", "hold", None, "hold"),
        ("POST", "release", None, "release"),
        ("POST", "requeue", None, "requeue"),
        ("PATCH", "", {"priority": "Highest"}, "change the priority of"),
    ],
)
def test_a_users_job_is_changed_only_by_it_or_an_admin(host, method, path, body, what):
    client, _ = host
    owner, other = add(client, f"own{len(what)}"), add(client, f"oth{len(what)}")
    job = client.post("/api/jobs", json={"command": "sleep 1", "holdUntil": None},
                      headers=as_(client, owner)).json()  # fmt: skip
    route = f"/api/jobs/{job['id']}" + (f"/{path}" if path else "")
    refused = client.request(method, route, json=body, headers=as_(client, other))
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == (
        f"job {job['id']} belongs to own{len(what)}: only its owner or an admin may {what} it "
        f"(oth{len(what)} has role 'user')"
    )
    after = client.get(f"/api/jobs/{job['id']}").json()  # the refused change did not happen
    # (its state may have moved on by itself, Queued to Running: the scheduler runs)
    assert after["state"] not in ("Canceling", "Canceled")
    assert (after["priority"], after.get("holdUntil")) == (job["priority"], job.get("holdUntil"))
    for token in (owner, None):  # its owner, then the admin (the client's own token)
        headers = as_(client, token) if token else None
        allowed = client.request(method, route, json=body, headers=headers)
        assert allowed.status_code != 403, allowed.text
    missing = client.post("/api/jobs/999999/cancel", headers=as_(client, other))
    assert missing.status_code == 404  # an unknown job is a 404, not a 403
