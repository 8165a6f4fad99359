"""Who may submit with a job template, over the real function app: a user the template's
``allowedUsers`` leaves out is refused (403, saying who may and what to do) and nothing is
stored; listed users and admins submit as before; ``hpc template set --allowed-user`` and
``--all-users`` set and clear the list, and list and show say who may use it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hpc.cli import app as cli_app
from shared.auth import digest
from shared.domain.cluster import Principal
from tests.agent_double import AgentDouble
from tests.app_fixtures import ServedApp, served_app

TOKENS = {"alice": "alice-token", "carol": "carol-token"}
BIG = {"maxPriority": "Highest", "allowedUsers": ["alice", "bob"]}


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[ServedApp]:
    with served_app(tmp_path_factory.mktemp("template-users")) as app:
        for name, token in TOKENS.items():
            app.cp.store.add_token(digest(token), Principal(name=name, role="user"))
        AgentDouble(app.cp, "n1", cores=4).register()
        yield app


@pytest.fixture(scope="module")
def http(app) -> Iterator[tuple[httpx.Client, httpx.Client, httpx.Client]]:
    with (
        app.client() as admin,
        app.client(TOKENS["alice"]) as alice,
        app.client(TOKENS["carol"]) as carol,
    ):
        assert admin.put("/api/templates/Big", json=BIG).status_code == 201
        yield admin, alice, carol


def job_count(app: ServedApp) -> int:
    return len(app.cp.list_jobs(limit=1000))


def test_http_a_user_the_template_leaves_out_is_refused_and_nothing_is_stored(app, http):
    _, _, carol = http
    before = job_count(app)
    last_id = max([0, *(j.id for j in app.cp.list_jobs(limit=1000))])
    r = carol.post("/api/jobs", json={"command": "true", "template": "big", "priority": 4000})
    assert r.status_code == 403, r.text
    assert r.json() == {
        "template": "Big",
        "error": "template 'Big' is for alice, bob (and admins); carol may not submit with "
        "it: submit with another template (hpc job submit --template NAME; see hpc template "
        "list) or ask an admin (hpc template set Big --allowed-user alice,bob,carol)",
    }
    keyed = carol.post(
        "/api/jobs", json={"command": "true", "template": "Big"}, headers={"Idempotency-Key": "k1"}
    )
    assert keyed.status_code == 403 and "carol may not submit" in keyed.json()["error"]
    assert job_count(app) == before  # no job, and no job id taken (below)
    mine = carol.post("/api/jobs", json={"command": "true"})  # no template: as before
    assert mine.status_code == 201 and mine.json()["template"] is None
    assert mine.json()["id"] == last_id + 1


def test_http_listed_users_and_admins_submit_with_it(http):
    admin, alice, _ = http
    for client, owner in ((alice, "alice"), (admin, "admin")):
        r = client.post("/api/jobs", json={"command": "true", "template": "Big", "priority": 4000})
        assert r.status_code == 201, r.text
        assert (r.json()["template"], r.json()["priority"], r.json()["owner"]) == (
            "Big",
            4000,
            owner,
        )


def test_http_a_job_of_a_refused_user_is_still_modified_as_before(http):
    """Permissions are checked at submit: a job already under the template is not touched."""
    admin, alice, _ = http
    job = alice.post("/api/jobs", json={"command": "true", "template": "Big"}).json()
    admin.put("/api/templates/Big", json={**BIG, "allowedUsers": ["bob"]})
    try:
        r = alice.patch(f"/api/jobs/{job['id']}", json={"priority": "Highest"})
        assert r.status_code == 200 and r.json()["priority"] == 4000
    finally:
        admin.put("/api/templates/Big", json=BIG)


def test_http_a_job_naming_no_template_falls_to_a_restricted_default_and_is_refused(app, http):
    admin, alice, carol = http
    admin.put("/api/templates/Default", json={"allowedUsers": ["alice"], "maxCores": 4})
    try:
        before = job_count(app)
        r = carol.post("/api/jobs", json={"command": "true"})
        assert r.status_code == 403
        assert r.json()["error"].startswith(
            "template 'Default' (applied to jobs that name no template) is for alice (and "
            "admins); carol may not submit with it"
        )
        assert job_count(app) == before
        assert alice.post("/api/jobs", json={"command": "true"}).json()["template"] == "Default"
    finally:
        admin.delete("/api/templates/Default")


def test_http_templates_show_who_may_use_them(http):
    _, _, carol = http
    assert carol.get("/api/templates/Big").json()["allowedUsers"] == ["alice", "bob"]
    r = http[0].put("/api/templates/Odd", json={"allowedUsers": ["no body"]})
    assert r.status_code == 422 and "user name 'no body'" in r.json()["error"]


# --- the CLI, against the same app ------------------------------------------------------


def hpc(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args))


@pytest.fixture
def cli(app, http, monkeypatch):
    monkeypatch.setenv("HPC_API_URL", app.url)
    monkeypatch.setenv("HPC_TOKEN", app.token)
    return app


def test_cli_allowed_users_are_set_shown_enforced_and_cleared(cli, monkeypatch):
    r = hpc("template", "set", "Team", "--max-cores", "4", "--allowed-user", "alice,bob",
            "--allowed-user", "dave", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["allowedUsers"] == ["alice", "bob", "dave"]
    r = hpc("template", "show", "team")
    assert r.exit_code == 0 and "Allowed users" in r.stdout and "alice, bob, dave" in r.stdout
    [row] = [line for line in hpc("template", "list").stdout.splitlines() if "Team" in line]
    assert "alice, bob, dave" in row
    monkeypatch.setenv("HPC_TOKEN", TOKENS["carol"])
    r = hpc("job", "submit", "--template", "Team", "--", "true")
    assert r.exit_code == 1
    assert "template 'Team' is for alice, bob, dave (and admins); carol may not" in r.stderr
    assert "Traceback" not in r.output
    monkeypatch.setenv("HPC_TOKEN", cli.token)
    r = hpc("template", "set", "Team", "--all-users", "--json")
    assert r.exit_code == 0, r.output
    assert "allowedUsers" not in json.loads(r.stdout)
    assert "everyone" in hpc("template", "show", "Team").stdout
    monkeypatch.setenv("HPC_TOKEN", TOKENS["carol"])
    r = hpc("job", "submit", "--template", "Team", "--json", "--", "true")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["template"] == "Team"


def test_cli_bad_allowed_user_options_are_refused(cli):
    r = hpc("template", "set", "X", "--allowed-user", "alice", "--all-users")
    assert r.exit_code == 2 and "--all-users" in r.stderr
    r = hpc("template", "set", "X", "--allowed-user", "alice,,bob")
    assert r.exit_code == 2 and "empty user name" in r.stderr and "--all-users" in r.stderr
    assert hpc("template", "show", "X").exit_code == 1  # nothing made


def test_cli_warns_of_allowed_names_no_user_has_and_saves_the_template(cli):
    r = hpc("template", "set", "Near", "--allowed-user", "Alice,carol,zed", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["allowedUsers"] == ["Alice", "carol", "zed"]
    assert "warning: allowedUsers 'Alice': no user has that name; did you mean 'alice'?" in (
        r.stderr
    )
    assert "warning: allowedUsers 'zed': no user has that name yet (hpc user add zed)" in r.stderr
    assert "'carol'" not in r.stderr
    quiet = hpc("template", "set", "Near", "--max-cores", "2")  # the list not given: no check
    assert quiet.exit_code == 0 and quiet.stderr == ""
