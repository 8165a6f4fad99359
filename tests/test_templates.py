"""Job templates: the pure rule (defaults, then limits), their storage and use on submit,
the HTTP routes of the real function app, and the ``hpc template`` commands against it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import function_app
from devhost import LocalHost
from functions import context
from hpc.cli import app as cli_app
from shared.auth import digest, ensure_admin_token
from shared.domain.jobspec import JobSpec
from shared.domain.models import Principal
from shared.domain.templates import JobTemplate, apply_template
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.settings import Settings
from shared.usecases import templates
from shared.wiring import build_bus
from tests.agent_double import AgentDouble
from tests.helpers import ROOT
from tests.test_control import Clock, make_cp, register

# --- the pure rule --------------------------------------------------------------------

SHORT = JobTemplate(
    name="Short",
    priority="BelowNormal",
    node_groups=["OnPremNodes"],
    runtime_limit=600,
    max_retries=1,
    max_priority="Normal",
    max_cores=4,
    allowed_node_groups=["OnPremNodes", "AzureNodes"],
    max_runtime_limit=3600,
)


def applied(job: dict[str, Any], template: JobTemplate | None = SHORT) -> JobSpec:
    base = {} if "tasks" in job else {"command": "x"}
    return apply_template(JobSpec.parse({**base, **job}), template)


@pytest.mark.parametrize(
    ("job", "field", "expected"),
    [
        # left out: the template's default
        ({}, "priority", 1000),
        ({}, "node_groups", ["OnPremNodes"]),
        ({}, "runtime_limit", 600),
        ({}, "max_retries", 1),
        ({}, "template", "Short"),
        # given: the job's own value, even when it equals the JobSpec default
        ({"priority": "Normal"}, "priority", 2000),
        ({"nodeGroup": "AzureNodes"}, "node_groups", ["AzureNodes"]),
        ({"nodeGroups": ["azurenodes"]}, "node_groups", ["azurenodes"]),
        ({"runtimeLimit": 3600}, "runtime_limit", 3600),
        ({"maxRetries": 3}, "max_retries", 3),
        # "any node" is narrowed to the template's default groups
        ({"nodeGroups": []}, "node_groups", ["OnPremNodes"]),
    ],
)
def test_template_fills_only_what_the_job_left_out(job, field, expected):
    assert getattr(applied(job), field) == expected


@pytest.mark.parametrize(
    ("template", "field", "expected"),
    [
        # a limit with no default is the default, so a job that says nothing passes
        (JobTemplate(name="T", max_priority="BelowNormal"), "priority", 1000),
        (JobTemplate(name="T", max_priority="Highest"), "priority", 2000),
        (JobTemplate(name="T", allowed_node_groups=["AzureNodes"]), "node_groups", ["AzureNodes"]),
        (JobTemplate(name="T", max_runtime_limit=60), "runtime_limit", 60),
        # no limit and no default: the JobSpec's own defaults
        (JobTemplate(name="T"), "priority", 2000),
        (JobTemplate(name="T"), "node_groups", []),
        (JobTemplate(name="T"), "runtime_limit", None),
    ],
)
def test_a_limit_without_a_default_acts_as_the_default(template, field, expected):
    assert getattr(applied({}, template), field) == expected


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (
            {"priority": "Highest"},
            "template 'Short' allows priority at most 2000 (Normal); the job asks for 4000 (Highest)",
        ),
        (
            {"nodeGroups": ["OnPremNodes", "Gpu"]},
            "template 'Short' allows nodeGroups OnPremNodes, AzureNodes only; the job asks for Gpu",
        ),
        (
            {"cores": 8},
            "template 'Short' allows at most 4 cores per task (maxCores); tasks.0 asks for 8",
        ),
        (
            {"tasks": [{"command": "x"}, {"name": "big", "command": "y", "cores": 5}]},
            "tasks.1 (big) asks for 5",
        ),
        ({"tasks": [{"command": "x", "cores": {"min": 1, "max": 16}}]}, "tasks.0 asks for 16"),
        (
            {"tasks": [{"command": "x", "cores": 2, "nodes": 3}]},
            "tasks.0 asks for 6 (2 on each of 3 nodes)",
        ),
        (
            {"runtimeLimit": 7200},
            "template 'Short' allows runtimeLimit at most 3600 s (1:00:00) (maxRuntimeLimit); "
            "tasks.0 asks for 7200 s (2:00:00)",
        ),
        (
            {"tasks": [{"command": "x", "runtimeLimit": 3601}]},
            "tasks.0 asks for 3601 s (1:00:01)",
        ),
        ({"runtimeLimit": None}, "tasks.0 asks for no runtime limit"),
    ],
)
def test_a_job_beyond_a_limit_is_refused_naming_template_field_and_allowed_value(job, message):
    with pytest.raises(InvalidRequest) as caught:
        applied(job)
    assert message in str(caught.value)


def test_a_job_within_every_limit_passes_unchanged_in_what_it_gave():
    spec = applied(
        {"priority": 2000, "nodeGroups": ["AzureNodes"], "cores": 4, "runtimeLimit": 3600}
    )
    assert (spec.priority, spec.node_groups, spec.runtime_limit) == (2000, ["AzureNodes"], 3600)


def test_no_template_changes_nothing_and_records_none():
    spec = JobSpec.parse({"command": "x", "priority": "Highest", "template": "Gone"})
    out = apply_template(spec, None)
    assert out.template is None and out.priority == 4000 and spec.template == "Gone"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "bad name"}, "name: use letters, digits"),
        ({"name": "T", "maxCores": 0}, "maxCores: Input should be greater than or equal to 1"),
        ({"name": "T", "priority": "Urgent"}, "priority 'Urgent' is not one of"),
        ({"name": "T", "maxCores": 2, "corse": 1}, "corse: Extra inputs are not permitted"),
        (
            {"name": "T", "priority": 3000, "maxPriority": 2000},
            "default priority 3000 is above maxPriority 2000",
        ),
        (
            {"name": "T", "runtimeLimit": 90, "maxRuntimeLimit": 60},
            "default runtimeLimit 90 is above maxRuntimeLimit 60",
        ),
        (
            {"name": "T", "nodeGroups": ["Gpu"], "allowedNodeGroups": ["AzureNodes"]},
            "default nodeGroups Gpu are not in allowedNodeGroups AzureNodes",
        ),
    ],
)
def test_bad_templates_are_refused_saying_what_to_fix(data, message):
    with pytest.raises(InvalidRequest, match="invalid template: ") as caught:
        JobTemplate.parse(data)
    assert message in str(caught.value)


def test_template_json_is_camel_case_without_unset_fields():
    t = JobTemplate.parse({"name": "T", "maxPriority": "AboveNormal", "allowedNodeGroups": ["A"]})
    assert t.to_dict() == {
        "name": "T",
        "description": "",
        "maxPriority": 3000,
        "allowedNodeGroups": ["A"],
    }


# --- storage and submit, on the embedded store -----------------------------------------


@pytest.fixture
def cp(tmp_path):
    return make_cp(tmp_path, Clock())


def test_templates_are_stored_listed_and_matched_case_insensitively(cp):
    stored, created = templates.put(cp.deps, "short", {"maxCores": 2})
    assert created and stored.template.name == "short" and stored.etag
    again, created = templates.put(cp.deps, "SHORT", {"maxCores": 3, "name": "Short"})
    assert not created
    templates.put(cp.deps, "alpha", {"priority": "Lowest"})
    assert [t.name for t in templates.list_templates(cp.deps)] == ["alpha", "Short"]
    got = templates.get(cp.deps, "sHoRt")
    assert got.template.max_cores == 3 and got.etag == again.etag


def test_a_put_with_a_stale_etag_is_refused_and_changes_nothing(cp):
    first, _ = templates.put(cp.deps, "T", {"maxCores": 2})
    templates.put(cp.deps, "T", {"maxCores": 3}, if_match=first.etag)
    with pytest.raises(Conflict, match="changed since it was read"):
        templates.put(cp.deps, "T", {"maxCores": 9}, if_match=first.etag)
    assert templates.get(cp.deps, "T").template.max_cores == 3


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("a/b", {}, "template name 'a/b': use letters, digits"),
        ("T", ["maxCores"], "the body is a JSON object of template fields"),
        ("T", {"name": "U"}, "name 'U' in the body differs from 'T' in the URL"),
        ("T", {"maxCores": "many"}, "invalid template: maxCores"),
    ],
)
def test_bad_puts_are_refused_and_store_nothing(cp, name, data, message):
    with pytest.raises(InvalidRequest, match=message):
        templates.put(cp.deps, name, data)
    assert templates.list_templates(cp.deps) == []


def test_deleted_templates_are_gone_and_can_be_created_again(cp):
    templates.put(cp.deps, "T", {"maxCores": 2})
    assert templates.delete(cp.deps, "t").name == "T"
    assert templates.list_templates(cp.deps) == []
    with pytest.raises(NotFound, match="template 't' does not exist; there are no templates"):
        templates.get(cp.deps, "t")
    with pytest.raises(NotFound):
        templates.delete(cp.deps, "T")
    _, created = templates.put(cp.deps, "T", {"maxCores": 4})
    assert created and templates.get(cp.deps, "T").template.max_cores == 4


def test_a_named_template_applies_on_submit_and_the_job_records_it(cp):
    register(cp, "n1", cores=8)
    templates.put(cp.deps, "Short", {"priority": "BelowNormal", "runtimeLimit": 60})
    job = cp.submit({"command": "x", "template": "short"})
    assert job.template == "Short" and job.priority == 1000
    assert cp.get_job(job.id).template == "Short"
    [task] = cp.list_tasks(job.id)
    assert task.runtime_limit_s == 60 and task.priority == 1000


def test_a_priority_raised_after_submit_is_held_to_the_templates_limit(cp):
    register(cp, "n1", cores=8)
    templates.put(cp.deps, "Low", {"maxPriority": "Normal"})
    job = cp.submit({"command": "x", "template": "Low", "priority": "BelowNormal"})
    with pytest.raises(InvalidRequest, match="template 'Low', which allows priority at most"):
        cp.set_priority(job.id, "Highest")
    assert cp.get_job(job.id).priority == 1000
    assert cp.set_priority(job.id, "Normal").priority == 2000


def test_the_default_template_applies_only_to_jobs_that_name_none(cp):
    register(cp, "n1", cores=8)
    assert cp.submit({"command": "x"}).template is None  # no Default: no template
    templates.put(cp.deps, "Default", {"maxCores": 2})
    templates.put(cp.deps, "Wide", {"maxCores": 8})
    with pytest.raises(InvalidRequest, match="template 'Default' allows at most 2 cores"):
        cp.submit({"command": "x", "cores": 4})
    assert cp.submit({"command": "x", "cores": 4, "template": "Wide"}).template == "Wide"
    assert cp.submit({"command": "x"}).template == "Default"


def test_a_job_refused_by_its_template_or_naming_an_unknown_one_stores_nothing(cp):
    register(cp, "n1", cores=8)
    templates.put(cp.deps, "Small", {"maxCores": 1})
    with pytest.raises(InvalidRequest, match="template 'Small'"):
        cp.submit({"command": "x", "cores": 2, "template": "Small"})
    with pytest.raises(NotFound, match="template 'Nope' does not exist; known templates: Small"):
        cp.submit({"command": "x", "template": "Nope"})
    assert cp.list_jobs() == []


# --- HTTP, through the real function app ------------------------------------------------

USER_TOKEN = "a-user-token"


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    home = tmp_path_factory.mktemp("templates-api")
    mp = pytest.MonkeyPatch()
    mp.setenv("HPC_HOME", str(home))
    context.reset()
    control = context.control()
    token = ensure_admin_token(control.settings, control.store)
    control.store.add_token(digest(USER_TOKEN), Principal(name="alice", role="user"))
    AgentDouble(control, "n1", cores=4).register()
    host = LocalHost(
        function_app.app, bus=build_bus(Settings()), port=0, host_json=ROOT / "host.json"
    )
    host.start()
    admin = httpx.Client(base_url=host.url, headers={"Authorization": f"Bearer {token}"})
    user = httpx.Client(base_url=host.url, headers={"Authorization": f"Bearer {USER_TOKEN}"})
    yield admin, user, host.url, token
    admin.close()
    user.close()
    host.stop()
    context.reset()
    mp.undo()


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
    assert r.exit_code == 1 and "default priority 4000 is above maxPriority 2000" in r.stderr
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
    r = hpc("job", "submit", "--file", str(spec), "--template", "Quick")
    assert r.exit_code == 2 and "put --template in the file instead" in r.stderr
