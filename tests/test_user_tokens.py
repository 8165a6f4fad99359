"""One token revoked at a time (shared/usecases/users.py, functions/users_api.py, ``hpc user
tokens | revoke``): a user's leaked laptop token goes, its CI token stays. Before, ``hpc user
remove`` revoked every token of the user (README, "Not built yet"; a multi-user probe)."""

from __future__ import annotations

import json

import pytest

from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The real function_app on the local host, a client with the admin token, one node."""
    with served_app(tmp_path_factory.mktemp("tokens")) as app, app.client() as client:
        assert AgentDouble(app.cp, "onprem-1").register().accepted
        yield client, app.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def add(client, name: str, role: str = "user") -> dict:
    response = client.post("/api/users", json={"name": name, "role": role})
    assert response.status_code == 201, response.text
    return response.json()


def test_one_revoked_token_stops_signing_in_and_the_users_others_go_on(host):
    client, _ = host
    laptop, ci = add(client, "alice"), add(client, "alice")
    listed = client.get("/api/users/alice/tokens").json()
    assert [t["id"] for t in listed["tokens"]] == [laptop["tokenId"], ci["tokenId"]]  # oldest first
    assert all(len(t["id"]) == 12 and t["created"].endswith("Z") for t in listed["tokens"])
    assert laptop["token"] not in str(listed)  # ids, never the tokens
    gone = client.delete(f"/api/users/alice/tokens/{laptop['tokenId'][:6]}")  # a prefix will do
    assert gone.status_code == 200, gone.text
    assert gone.json() == {
        "name": "alice",
        "revokedTokens": 1,
        "token": laptop["tokenId"],
        "tokensLeft": 1,
    }
    assert client.get("/api/me", headers=bearer(laptop["token"])).status_code == 401
    assert client.get("/api/me", headers=bearer(ci["token"])).json()["name"] == "alice"
    users = {u["name"]: u for u in client.get("/api/users").json()["users"]}
    assert users["alice"]["tokens"] == 1


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/users/nobody/tokens/abcdef", 404, "user 'nobody' does not exist"),
        ("/api/users/bert/tokens/abcdef0123", 404, "user 'bert' has no token abcdef0123"),
        ("/api/users/bert/tokens/ABCDEF0123", 404, "user 'bert' has no token abcdef0123"),
        ("/api/users/bert/tokens/abc", 422, "token id 'abc': the id `hpc user tokens bert`"),
        ("/api/users/bert/tokens/XYZXYZ", 422, "token id 'XYZXYZ'"),
    ],
)
def test_bad_revocations_say_what_to_fix_and_revoke_nothing(host, path, status, message):
    client, _ = host
    if not any(u["name"] == "bert" for u in client.get("/api/users").json()["users"]):
        add(client, "bert")
    before = client.get("/api/users/bert/tokens").json()
    response = client.delete(path)
    assert response.status_code == status, response.text
    assert response.json()["error"].startswith(message), response.json()
    assert client.get("/api/users/bert/tokens").json() == before


def test_the_token_a_request_signs_in_with_is_not_revoked_by_it(host):
    client, admin_token = host
    other = add(client, "root2", "admin")
    mine = client.get("/api/users/admin/tokens").json()["tokens"]
    refused = client.delete(f"/api/users/admin/tokens/{mine[0]['id']}")
    assert refused.status_code == 409
    assert "the one this request signs in with" in refused.json()["error"]
    assert client.get("/api/me").status_code == 200  # still signed in
    # another admin may revoke it (a leaked admin.token), as `hpc user remove admin` may
    first = client.get("/api/users/root2/tokens").json()["tokens"][0]["id"]
    assert first == other["tokenId"]


def test_only_an_admin_lists_or_revokes_tokens(host):
    client, _ = host
    user = add(client, "cleo")
    for method, path in (("GET", "/api/users/cleo/tokens"),
                         ("DELETE", f"/api/users/cleo/tokens/{user['tokenId']}")):  # fmt: skip
        response = client.request(method, path, headers=bearer(user["token"]))
        assert response.status_code == 403, (method, response.text)
        assert "only an admin may" in response.json()["error"]
    assert client.get("/api/me", headers=bearer(user["token"])).status_code == 200


def test_the_cli_lists_and_revokes_one_token(host, monkeypatch):
    client, token = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", token)
    added = hpc("user", "add", "dora")
    assert added.exit_code == 0, added.output
    new = added.stdout.strip().splitlines()[-1]
    token_id = client.get("/api/users/dora/tokens").json()["tokens"][0]["id"]
    assert f"the new one (id {token_id}, for `hpc user revoke`)" in " ".join(added.stderr.split())
    listed = hpc("user", "tokens", "dora")
    assert listed.exit_code == 0 and token_id in listed.stdout and new not in listed.stdout
    revoked = hpc("user", "revoke", "dora", token_id.upper())  # ids in any case
    assert revoked.stdout.strip() == f"user dora: token {token_id} revoked"
    assert "note: that was dora's last token: dora can no longer sign in" in " ".join(
        revoked.stderr.split()
    )
    assert client.get("/api/me", headers=bearer(new)).status_code == 401
    again = hpc("user", "revoke", "dora", token_id)
    assert_one_error_line(again, "user 'dora' does not exist")  # (its last token went)


def test_the_name_admin_is_added_only_as_an_admin(host):
    """A probe: admin's tokens revoked by another admin, then `hpc user add admin` made a
    user admin, and `hpc up` could not start again: its admin.token must sign in as one."""
    client, _ = host
    refused = client.post("/api/users", json={"name": "admin", "role": "user"})
    assert refused.status_code == 409
    assert "the name admin is hpc up's admin" in refused.json()["error"]
    assert client.post("/api/users", json={"name": "admin", "role": "admin"}).status_code == 201


def test_a_json_revocation_says_what_is_left(host, monkeypatch):
    client, token = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", token)
    first, _ = add(client, "ezra"), add(client, "ezra")
    answer = hpc("user", "revoke", "ezra", first["tokenId"], "--json")
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout) == {
        "name": "ezra",
        "revokedTokens": 1,
        "token": first["tokenId"],
        "tokensLeft": 1,
    }
