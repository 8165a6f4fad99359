"""Bad input found by probing a live cluster: refused early, in one line that says what to fix.

Template defaults naming a node group that does not exist are refused when saved (and a job
hit by one saved before names the template); the CLI refuses what no request could carry
(inf and nan, a token that is not ASCII, a name holding ``/`` or empty) before sending.
Against the real function app for the server's rules, the stand-in (tests/cli_fixtures.py)
for the client's, where "nothing was sent" is what the stand-in recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hpc.client_http import segment
from hpc.errors import InvalidInput
from shared.domain.cluster import Meta
from tests.agent_double import AgentDouble
from tests.app_fixtures import ServedApp, served_app
from tests.cli_fixtures import StandIn, assert_one_error_line, hpc

# --- template defaults name node groups that exist (the real function app) -------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedApp, httpx.Client]]:
    with served_app(tmp_path_factory.mktemp("bad-input")) as app:
        AgentDouble(app.cp, "n1", cores=4).register()  # an OnPremNodes node
        with app.client() as admin:
            yield app, admin


@pytest.fixture
def cli(served: tuple[ServedApp, httpx.Client], monkeypatch: pytest.MonkeyPatch) -> httpx.Client:
    app, admin = served
    monkeypatch.setenv("HPC_API_URL", app.url)
    monkeypatch.setenv("HPC_TOKEN", app.token)
    return admin


def error(response: httpx.Response) -> str:
    return str(response.json()["error"])


def test_a_template_default_naming_an_unknown_group_is_refused_when_saved(
    served: tuple[ServedApp, httpx.Client],
) -> None:
    _, admin = served
    r = admin.put("/api/templates/T1", json={"nodeGroups": ["OnPremNodes", "nope"]})
    assert r.status_code == 422
    assert "template 'T1': node group 'nope' in nodeGroups does not exist" in error(r)
    assert "hpc nodegroup list" in error(r) and "OnPremNodes" in error(r)
    assert admin.get("/api/templates/T1").status_code == 404  # nothing written
    # allowedNodeGroups is the default of jobs that name no group while nodeGroups is unset
    r = admin.put("/api/templates/T1", json={"allowedNodeGroups": ["nope", "gone"]})
    assert r.status_code == 422
    assert "node groups 'nope', 'gone' in allowedNodeGroups do not exist" in error(r)


def test_group_names_in_template_defaults_match_whatever_their_case(
    served: tuple[ServedApp, httpx.Client],
) -> None:
    _, admin = served
    r = admin.put("/api/templates/Cased", json={"nodeGroups": ["onpremnodes"]})
    assert r.status_code == 201, r.text
    r = admin.post("/api/jobs", json={"command": "true", "template": "cased"})
    assert r.status_code == 201, r.text
    # an allowed group no job gets by default (nodeGroups is set) is the jobs' own business
    r = admin.put(
        "/api/templates/Narrow",
        json={"nodeGroups": ["OnPremNodes"], "allowedNodeGroups": ["OnPremNodes", "Later"]},
    )
    assert r.status_code == 201, r.text


def test_cli_template_set_with_an_unknown_group_is_one_line(cli: httpx.Client) -> None:
    result = hpc("template", "set", "T2", "--nodegroup", "nope")
    assert_one_error_line(result, "node group 'nope'", "does not exist", "hpc nodegroup list")
    assert cli.get("/api/templates/T2").status_code == 404


def test_a_job_failing_on_a_stored_templates_default_group_names_the_template(
    served: tuple[ServedApp, httpx.Client],
) -> None:
    app, admin = served
    # saved before defaults were checked: written as the store holds it, not through PUT
    old = {"template": {"name": "Old", "nodeGroups": ["gone"]}}
    app.cp.store.put_meta(Meta(key="template:old", data=old))
    r = admin.post("/api/jobs", json={"command": "true", "template": "old"})
    assert r.status_code == 404
    assert "node group 'gone' does not exist: template 'Old' gives it (nodeGroups)" in error(r)
    assert "hpc template set Old --nodegroup GROUP" in error(r)
    r = admin.post(
        "/api/jobs", json={"command": "true", "template": "old", "nodeGroups": ["OnPremNodes"]}
    )
    assert r.status_code == 201, r.text  # a job that names its groups is not held to it
    assert admin.get("/api/templates/Old").json()["nodeGroups"] == ["gone"]  # nothing lost


# --- the client refuses what no request could carry (the stand-in) ----------------------


@pytest.mark.parametrize("option", ["--boot-delay", "--grow-interval"])
@pytest.mark.parametrize("value", ["inf", "Infinity", "1e999"])
def test_non_finite_numbers_are_refused_naming_the_option(
    api: StandIn, option: str, value: str
) -> None:
    result = hpc("nodegroup", "set", "G", option, value)
    shown = str(float(value))
    assert_one_error_line(result, f"error: {option} must be a finite number, not {shown}")
    assert "unexpected" not in result.stderr
    assert api.requests == []


def test_non_finite_numbers_from_a_spec_file_name_the_field(api: StandIn, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text('{"command": "true", "runtimeLimit": NaN}')  # Python's json reads it
    result = hpc("job", "submit", "--file", str(spec))
    assert_one_error_line(result, "runtimeLimit must be a finite number, not nan")
    assert api.requests == []


@pytest.mark.parametrize("token", ["é", "tok en", "to\x01ken"])
def test_a_token_that_is_not_ascii_is_not_a_valid_api_token(
    api: StandIn, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("HPC_TOKEN", token)
    result = hpc("job", "list")
    assert_one_error_line(result, "HPC_TOKEN is not a valid API token", "ASCII", "hpc up")
    assert api.requests == []


def test_a_token_file_that_is_not_text_is_not_a_valid_api_token(
    api: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HPC_TOKEN")
    (tmp_path / "home").mkdir()
    token_file = tmp_path / "home" / "admin.token"
    token_file.write_bytes(b"\xff\xfe-token\n")
    result = hpc("job", "list")
    assert_one_error_line(result, f"the token in {token_file} is not a valid API token")
    assert api.requests == []


@pytest.mark.parametrize(
    "args",
    [
        ("template", "show", "a/b"),
        ("template", "delete", ""),
        ("template", "set", "..", "--max-cores", "1"),
        ("template", "show", "x" * 65),
    ],
)
def test_template_names_are_checked_by_the_servers_rule_before_sending(
    api: StandIn, args: tuple[str, ...]
) -> None:
    result = hpc(*args)
    assert_one_error_line(result, "template name", "use letters, digits, _ . -", "64 at most")
    assert result.exit_code == 2 and api.requests == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("node", "start", "a/b"), "node name 'a/b': a name cannot hold '/'"),
        (("node", "remove", ""), "the node name is empty"),
        (("node", "set", "..", "--group", "G"), "node name '..': a name cannot hold '/'"),
        (("nodegroup", "set", " ", "--min", "1"), "the node group name is empty"),
    ],
)
def test_names_no_route_can_carry_are_refused_before_sending(
    api: StandIn, args: tuple[str, ...], message: str
) -> None:
    result = hpc(*args)
    assert_one_error_line(result, message)
    assert result.exit_code == 2 and api.requests == []


def test_other_characters_in_a_name_are_percent_encoded_into_one_segment() -> None:
    assert segment("a?b#c%d e", "node name") == "a%3Fb%23c%25d%20e"
    with pytest.raises(InvalidInput):
        segment("", "node name")
