"""Job templates over the API: the HTTP routes of the real function app, and the
``hpc template`` commands against it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hpc.cli import app as cli_app
from shared.auth import digest
from shared.domain.cluster import Principal
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app

# --- HTTP, through the real function app ------------------------------------------------

USER_TOKEN = "a-user-token"


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("templates-api")) as app:
        app.cp.store.add_token(digest(USER_TOKEN), Principal(name="alice", role="user"))
        AgentDouble(app.cp, "n1", cores=4).register()
        with app.client() as admin, app.client(USER_TOKEN) as user:
            yield admin, user, app.url, app.token


def error(response: httpx.Response) -> str:
    return str(response.json()["error"])


def test_http_put_creates_then_replaces_and_get_lists(http):
    admin, user, _, _ = http
    r = admin.put("/api/templates/Batch", json={"priority": "Lowest", "maxCores": 2})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "Batch", "description": "", "priority": 0, "maxCores": 2}
    etag = r.headers["ETag"]
    r = admin.put("/api/templates/batch", json={"maxCores": 3}, headers={"If-Match": etag})
    assert r.status_code == 200 and r.json()["maxCores"] == 3 and r.json()["name"] == "batch"
    r = admin.put("/api/templates/batch", json={"maxCores": 4}, headers={"If-Match": etag})
    assert r.status_code == 409 and "changed since it was read" in error(r)
    r = user.get("/api/templates/BATCH")  # reading is for every user
    assert r.status_code == 200 and r.json()["maxCores"] == 3 and r.headers["ETag"] != etag
    names = [t["name"] for t in user.get("/api/templates").json()["templates"]]
    assert "batch" in names


def test_http_delete_honours_if_match_and_an_empty_one_is_refused(http):
    """A probe: a stale ETag on DELETE was ignored, an empty If-Match on PUT taken as none."""
    admin, _, _, _ = http
    first = admin.put("/api/templates/Gone", json={"maxCores": 2}).headers["ETag"]
    admin.put("/api/templates/Gone", json={"maxCores": 3})
    stale = admin.delete("/api/templates/Gone", headers={"If-Match": first})
    assert stale.status_code == 409 and "changed since that ETag was read" in error(stale)
    empty = admin.put("/api/templates/Gone", json={"maxCores": 4}, headers={"If-Match": ""})
    assert empty.status_code == 400 and "If-Match is empty" in error(empty)
    current = admin.get("/api/templates/Gone").headers["ETag"]
    assert admin.get("/api/templates/Gone").json()["maxCores"] == 3  # nothing changed
    done = admin.delete("/api/templates/Gone", headers={"If-Match": current})
    assert done.status_code == 200 and done.json() == {"deleted": "Gone"}


def test_http_only_admins_change_templates(http):
    admin, user, _, _ = http
    r = user.put("/api/templates/Mine", json={"maxCores": 64})
    assert r.status_code == 403
    assert "only admins may change job templates; 'alice' has role 'user'" in error(r)
    admin.put("/api/templates/Keep", json={"maxCores": 1})
    r = user.delete("/api/templates/Keep")
    assert r.status_code == 403 and "only admins may delete" in error(r)
    assert user.get("/api/templates/Keep").status_code == 200
    assert user.get("/api/templates/Mine").status_code == 404


def test_http_bad_input_is_4xx_saying_what_to_fix(http):
    admin, _, _, _ = http
    r = admin.put("/api/templates/T", json={"maxCores": 0})
    assert r.status_code == 422 and "maxCores" in error(r)
    r = admin.put("/api/templates/T", content=b"")
    assert r.status_code == 400 and "the body is the template as JSON" in error(r)
    r = admin.put("/api/templates/T", content=b"{nope")
    assert r.status_code == 400 and "not valid JSON" in error(r)
    r = admin.put("/api/templates/bad$name", json={})
    assert r.status_code == 422 and "letters, digits" in error(r)


def test_http_unknown_template_is_404(http):
    admin, _, _, _ = http
    r = admin.get("/api/templates/Nope")
    assert r.status_code == 404 and "template 'Nope' does not exist" in error(r)
    assert admin.delete("/api/templates/Nope").status_code == 404
    r = admin.post("/api/jobs", json={"command": "true", "template": "Nope"})
    assert r.status_code == 404 and "template 'Nope' does not exist" in error(r)


def test_http_submit_under_a_template_is_filled_checked_and_recorded(http):
    admin, user, _, _ = http
    admin.put("/api/templates/Tiny", json={"maxCores": 1, "priority": "AboveNormal"})
    r = user.post("/api/jobs", json={"command": "true", "template": "tiny"})
    assert r.status_code == 201
    assert r.json()["template"] == "Tiny" and r.json()["priority"] == 3000
    r = user.post("/api/jobs", json={"command": "true", "cores": 2, "template": "Tiny"})
    assert r.status_code == 422 and "template 'Tiny' allows at most 1 cores per task" in error(r)
    r = admin.delete("/api/templates/TINY")
    assert r.status_code == 200 and r.json() == {"deleted": "Tiny"}
    assert admin.get("/api/templates/Tiny").status_code == 404


# --- the CLI, against the real function app ---------------------------------------------


def hpc(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args))


@pytest.fixture
def cli(http, monkeypatch):
    _, _, url, token = http
    monkeypatch.setenv("HPC_API_URL", url)
    monkeypatch.setenv("HPC_TOKEN", token)
    return http


def test_cli_list_of_no_templates_says_so(cli, monkeypatch):
    """A probe's list of none printed a bare header."""
    monkeypatch.setattr("hpc.client.ApiClient.list_templates", lambda self: {"templates": []})
    r = hpc("template", "list")
    assert r.exit_code == 0 and r.stdout == ""
    assert "no templates: an admin makes one with hpc template set NAME" in r.stderr


def test_cli_set_creates_then_changes_only_the_settings_given(cli):
    r = hpc("template", "set", "Nightly", "--priority", "belownormal", "--runtime-limit", "1:00:00",
            "--max-runtime-limit", "8:00:00", "--allowed-nodegroup", "OnPremNodes",
            "--max-cores", "4")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "template Nightly created"
    r = hpc("template", "set", "nightly", "--max-cores", "2", "--json")
    assert r.exit_code == 0, r.output

    assert json.loads(r.stdout) == {
        "name": "Nightly",  # the spelling it was created with
        "description": "",
        "priority": 1000,
        "runtimeLimit": 3600,
        "maxCores": 2,
        "allowedNodeGroups": ["OnPremNodes"],
        "maxRuntimeLimit": 28800,
    }
    r = hpc("template", "show", "NIGHTLY")
    assert r.exit_code == 0
    assert "BelowNormal" in r.stdout and "8:00:00" in r.stdout and "OnPremNodes" in r.stdout
    r = hpc("template", "set", "Nightly", "--job-runtime-limit", "12:00:00",
            "--max-job-runtime-limit", "1-00:00:00", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = json.loads(r.stdout)
    assert (saved["jobRuntimeLimit"], saved["maxJobRuntimeLimit"]) == (43200, 86400)
    r = hpc("template", "show", "Nightly")
    assert "Job runtime limit" in r.stdout and "12:00:00" in r.stdout
    assert "Max job runtime limit" in r.stdout and "1-00:00:00" in r.stdout
    r = hpc("template", "list")
    assert r.exit_code == 0
    [row] = [line.split() for line in r.stdout.splitlines() if line.startswith("Nightly")]
    assert row == [
        "Nightly",
        "BelowNormal",
        "-",
        "1:00:00",
        "-",
        "2",
        "OnPremNodes",
        "8:00:00",
        "everyone",
        "-",
    ]


def test_cli_errors_are_one_line(cli, monkeypatch):
    r = hpc("template", "show", "Nope")
    assert r.exit_code == 1 and r.stderr.startswith("error: template 'Nope' does not exist")
    r = hpc("template", "set", "X")
    assert r.exit_code == 2 and "give at least one setting" in r.stderr
    r = hpc("template", "set", "X", "--max-runtime-limit", "soon")
    assert r.exit_code == 2 and "is not [[D:]H:]M:S" in r.stderr
    r = hpc("template", "set", "X", "--priority", "Highest", "--max-priority", "Normal")
    assert (
        r.exit_code == 1
        and "invalid template: default priority 4000 (Highest) is above maxPriority 2000 (Normal)"
        in r.stderr
    )
    monkeypatch.setenv("HPC_TOKEN", USER_TOKEN)
    r = hpc("template", "delete", "Nightly")
    assert r.exit_code == 1 and "only admins may delete job templates" in r.stderr
    assert "Traceback" not in r.output


def test_cli_delete(cli):
    assert hpc("template", "set", "Gone", "--max-cores", "1").exit_code == 0
    r = hpc("template", "delete", "gone")
    assert r.exit_code == 0 and r.stdout.strip() == "template Gone deleted"
    assert hpc("template", "show", "Gone").exit_code == 1


def test_cli_submit_sends_the_template_and_file_refuses_the_flag(cli, tmp_path):
    assert hpc("template", "set", "Quick", "--priority", "Highest").exit_code == 0
    r = hpc("job", "submit", "--template", "quick", "--json", "--", "true")
    assert r.exit_code == 0, r.output

    job = json.loads(r.stdout)
    assert job["template"] == "Quick" and job["priority"] == 4000
    spec = tmp_path / "job.json"
    spec.write_text('{"command": "true", "template": "Quick"}')
    r = hpc("job", "submit", "--file", str(spec), "--template", "Quick", "--json")
    assert r.exit_code == 0, r.output  # a job setting may go beside the file
    assert json.loads(r.stdout)["template"] == "Quick"
