"""Bad input found by probing a live cluster: refused early, in one line that says what to fix.

Template defaults naming a node group that does not exist are refused when saved (and a job
hit by one saved before names the template); the CLI refuses what no request could carry
(inf and nan, a token that is not ASCII, a name holding ``/`` or empty) before sending.
Against the real function app for the server's rules, the stand-in (tests/cli_fixtures.py)
for the client's, where "nothing was sent" is what the stand-in recorded.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hpc import client, client_http
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


@pytest.mark.parametrize("option", ["--boot-delay", "--grow-interval", "--shrink-interval"])
@pytest.mark.parametrize("value", ["inf", "Infinity", "1e999", "nan"])
def test_non_finite_numbers_are_refused_naming_the_option(
    api: StandIn, option: str, value: str
) -> None:
    result = hpc("nodegroup", "set", "G", option, value)
    shown = str(float(value))
    assert_one_error_line(result, f"error: {option} must be a finite number, not {shown}")
    assert "unexpected" not in result.stderr
    assert api.requests == []


@pytest.mark.parametrize("option", ["--boot-delay", "--grow-interval", "--shrink-interval"])
@pytest.mark.parametrize("value", ["-1", "soon"])
def test_seconds_that_are_no_seconds_are_refused_saying_what_was_given(
    api: StandIn, option: str, value: str
) -> None:
    """A probe's ``--grow-interval -1`` (and nan) read "Input should be greater than or equal
    to 0", which says nothing of what it got."""
    result = hpc("nodegroup", "set", "G", option, value)
    assert_one_error_line(result, f"error: {option}: '{value}' is not a number of seconds")
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


# --- a job or task id is a whole number from 1 (Click read -1 as an unknown option) -----


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (("job", "cancel", "-1"), "got -1"),
        (("job", "cancel", "0"), "got 0"),
        (("job", "requeue", "--", "-1"), "got -1"),
        (("job", "view", "-5"), "got -5"),
        (("job", "hold", "-2", "--until", "2099-01-01T00:00"), "got -2"),
        (("job", "view", "000"), "got 000"),
        (("job", "release", "abc"), "got 'abc'"),
        (("job", "modify", "1.5", "--priority", "Highest"), "got '1.5'"),
        (("job", "cancel", "9" * 5000), f"to {2**53 - 1}, got 99999"),
        (("task", "list", "-1"), "got -1"),
        (("task", "view", "1", "-2"), "got -2"),
        (("task", "view", "0", "1"), "got 0"),
        (("task", "output", "1", "0"), "got 0"),
        (("task", "output", "1", "-3", "--tail", "5"), "got -3"),
        # Slurm's array task JOB_INDEX (scancel 39_90): what to give instead
        (("task", "cancel", "39_90"), "not by Slurm's JOB_INDEX; `hpc task list 39` shows"),
        (
            ("task", "view", "39_90"),
            "shows each task's id beside its sweep index (that of index 90, if",
        ),
        (("job", "cancel", "39_90"), "a task is named JOB.TASK by its id"),
    ],
    ids=lambda v: " ".join(v)[:40] if isinstance(v, tuple) else None,
)
def test_ids_that_are_not_whole_numbers_from_1_are_one_line_before_sending(
    api: StandIn, args: tuple[str, ...], shown: str
) -> None:
    result = hpc(*args)
    assert_one_error_line(result, "ids are whole numbers from 1", shown, f"hpc {args[0]}")
    assert "No such option" not in result.stderr and "unexpected" not in result.stderr
    assert result.exit_code == 2 and api.requests == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("job", "view", "-1"), "'ID'"),
        (("task", "list", "-1"), "'JOB'"),
        (("task", "view", "-1.1"), "'JOB[.TASK]'"),  # the first of two: the word first
        (("task", "output", "-3.1"), "'JOB[.TASK]'"),
        (("task", "cancel", "-1", "1"), "'JOB[.TASK] [TASK|FIRST-LAST]...'"),  # (a probe)
        (("task", "requeue", "-1"), "'JOB[.TASK] [TASK|FIRST-LAST]...'"),
    ],
)
def test_a_negative_id_is_named_as_click_names_a_bad_value(
    api: StandIn, args: tuple[str, ...], named: str
) -> None:
    """A probe: ``hpc job view -1`` lacked the "Invalid value for 'ID'" that ``view x`` has."""
    assert_one_error_line(hpc(*args), f"Invalid value for {named}: ids are whole numbers")


def test_a_negative_second_id_is_not_named_as_the_first(api: StandIn) -> None:
    result = hpc("task", "view", "5", "-1")
    assert_one_error_line(result, "ids are whole numbers from 1, got -1")
    assert "'JOB[.TASK]'" not in result.stderr


def test_ids_from_1_are_sent_and_a_negative_number_elsewhere_is_left_alone(api: StandIn) -> None:
    assert hpc("job", "cancel", "007").exit_code == 0
    assert hpc("task", "view", "1", "2").exit_code == 0
    assert [r["path"] for r in api.requests] == ["/api/jobs/7/cancel", "/api/jobs/1/tasks/2"]
    # a command taking no id: a negative number after `--` is the command's, before it Click's
    assert hpc("job", "submit", "--", "echo", "-1").exit_code == 0
    assert api.posted("/api/jobs")[-1]["tasks"][0]["command"] == "echo -1"
    result = hpc("job", "submit", "echo", "-1")
    assert_one_error_line(result, "No such option: -1")


# --- cancel and requeue wait longer, and a timeout says the request may still complete ---


@pytest.fixture
def silent_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A control plane that takes connections and never answers; the CLI pointed at it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # the kernel completes the handshake; nothing ever reads the request
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("HPC_API_URL", url)
    monkeypatch.setenv("HPC_TOKEN", "test-token")
    yield url
    sock.close()


@pytest.mark.parametrize("action", ["cancel", "requeue"])
def test_a_job_action_that_times_out_says_it_may_still_complete_and_how_to_check(
    silent_server: str, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    assert client.JOB_ACTION_TIMEOUT_S > client_http.DEFAULT_TIMEOUT_S  # a 1,000-task job
    monkeypatch.setattr(client, "JOB_ACTION_TIMEOUT_S", 0.3)
    result = hpc("job", action, "5")
    assert_one_error_line(
        result,
        f"the control plane at {silent_server} did not answer within 0.3 s",
        "the request was sent and may still complete: see `hpc job view 5`",
    )


@pytest.mark.parametrize("action", ["cancel", "requeue"])
def test_a_task_action_that_times_out_waits_as_long_and_says_how_to_check(
    silent_server: str, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    monkeypatch.setattr(client, "JOB_ACTION_TIMEOUT_S", 0.3)  # the job actions' wait
    result = hpc("task", action, "5", "2")
    assert_one_error_line(
        result,
        f"the control plane at {silent_server} did not answer within 0.3 s",
        "the request was sent and may still complete: see `hpc task view 5 2`",
    )


def test_a_read_that_times_out_says_only_that(silent_server: str) -> None:
    with client.ApiClient(silent_server, token="t", timeout_s=0.3) as api_client:
        with pytest.raises(client.ApiError) as e:
            api_client.get_job(5)
        assert str(e.value) == f"the control plane at {silent_server} did not answer within 0.3 s"
        with pytest.raises(client.ApiError) as e:
            api_client.hold_job(5)  # a change with nothing more specific to check
        assert str(e.value).endswith(
            "the request was sent and may still complete: check before sending it again"
        )


# --- a spec file giving a key twice is refused as the server would refuse it -------------


def test_a_spec_file_giving_a_key_twice_is_one_line_naming_it(api: StandIn, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text('{"command": "echo a", "env": {"X": "1"}, "command": "echo b"}')
    result = hpc("job", "submit", "--file", str(spec))
    assert_one_error_line(
        result, f"{spec} gives the key 'command' more than once in one object; give each key once"
    )
    assert api.requests == []


def test_task_forms_mixed_in_one_command_are_named(api: StandIn) -> None:
    """A probe was told "ids are whole numbers from 1, got '30.40'"."""
    result = hpc("task", "cancel", "30", "30-35", "38", "30.40")
    assert_one_error_line(result, "'30.40': give the job once", "30.2 30.3), not both")
    assert not [r for r in api.requests if r["method"] == "POST"]  # nothing was canceled


def test_a_command_of_bytes_that_are_not_utf8_is_one_line_saying_so(api: StandIn) -> None:
    """A probe's ``$'echo \\xff\\xfe'`` (argv keeps such bytes as surrogates) read "unexpected
    UnicodeEncodeError": JSON takes UTF-8 text only, so say that and what to do."""
    result = hpc("job", "submit", "--", "echo \udcff\udcfe")
    assert_one_error_line(result, "not UTF-8 text (\\xff\\xfe)", "a script that holds such bytes")
    assert result.exit_code == 2
    assert api.requests == []


def test_slurms_afterok_is_taken_and_its_other_kinds_are_said(api: StandIn) -> None:
    """A probe's `--depends-on afterok:8` read "ids are whole numbers"."""
    assert hpc("job", "submit", "--depends-on", "afterok:1:2", "--", "true").exit_code == 0
    assert api.requests[-1]["body"]["dependsOn"] == [1, 2]
    sent = len(api.requests)
    refused = hpc("job", "submit", "--depends-on", "afterany:1", "--", "true")
    assert_one_error_line(
        refused, "Slurm's 'afterany:' is not taken", "--run-dependents-on-failure"
    )
    assert len(api.requests) == sent


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("task", "cancel", "1", "--", "-3"), "ids are whole numbers from 1, got '-3'"),  # was ''
        (("task", "cancel", "37.60", "70-75"), "(37.2 37.3)"),  # its examples named job 16
    ],
)
def test_task_refs_say_what_was_given(api: StandIn, args: tuple[str, ...], says: str) -> None:
    assert_one_error_line(hpc(*args), says)
    assert api.requests == []
