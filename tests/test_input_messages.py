"""Bad input gets a message that says what to fix, in the client's terms (a probe's findings):
a number too long for Python's ``int()`` names its field instead of advising
``sys.set_int_max_str_digits()``; ``"sweep": 5`` names the sweep forms; a user name that is
not text says so; priority names match in any case; ``holdUntil`` reads times as hold's
``until`` does (one parser: ``shared.domain.specvalues.iso_time``).

The HTTP cases run against the real function_app.py (tests/app_fixtures.py).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from hpc.begin import parse_begin, parse_time
from hpc.spec import load_spec_file
from shared.domain.jobspec import JobSpec
from shared.domain.specvalues import (
    MAX_NUMBER_DIGITS,
    NotATime,
    NumberTooLong,
    iso_time,
    load_json,
    priority_value,
)
from shared.errors import InvalidRequest
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.helpers import error, new_job, submit

LONG = "1" + "0" * 5000


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("input-messages")) as app:
        AgentDouble(app.cp, "n1", cores=4).register()
        with app.client() as client:
            yield client


# --- 1. an integer of more than 4300 digits ----------------------------------------------


def test_a_number_too_long_for_int_names_its_field_not_python_advice(http):
    first = new_job(http)
    body = '{"command": "true", "nodeGroup": "OnPremNodes", "cores": ' + LONG + "}"
    r = http.post("/api/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert "set_int_max_str_digits" not in error(r) and "4300" not in error(r)
    assert error(r).startswith(
        "request body is not valid JSON for the API: cores is the number 1000"
    )
    assert "(5001 digits)" in error(r) and "give cores a number in its range" in error(r)
    assert len(error(r)) < 300
    assert new_job(http) == first + 1  # the refused submit took no id


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"tasks": [{"command": "x", "cores": -N}]}', "tasks.0.cores"),
        ('{"validExitCodes": [0, N]}', "validExitCodes.1"),
        ('{"a": {"b": [[N]]}}', "a.b.0.0"),
    ],
)
def test_a_long_number_is_named_by_its_path_at_any_depth(text, path):
    with pytest.raises(NumberTooLong, match=f"for the API: {path} is the number"):
        load_json(text.replace("N", LONG))


def test_a_long_number_alone_and_numbers_at_the_bound_still_read():
    with pytest.raises(NumberTooLong, match="it is the number 1000.*send a JSON object"):
        load_json(LONG)
    at_bound = "9" * MAX_NUMBER_DIGITS
    assert load_json(f"[{at_bound}, -{at_bound}]") == [int(at_bound), -int(at_bound)]
    assert load_json('{"cores": 4, "x": 1.5}') == {"cores": 4, "x": 1.5}


def test_a_spec_file_with_a_long_number_says_the_file_and_field(tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{"command": "x", "priority": ' + LONG + "}")
    with pytest.raises(
        ValueError, match=r"job\.json is not valid JSON for the API: priority is"
    ) as e:
        load_spec_file(str(path))
    assert "set_int_max_str_digits" not in str(e.value)


# --- 2. a sweep that is neither form -------------------------------------------------------


@pytest.mark.parametrize("value", [5, True, [1, 2], 1.5])
def test_a_sweep_of_another_type_names_both_forms(http, value):
    r = submit(http, sweep=value)
    assert r.status_code == 422, r.text
    assert "valid dictionary" not in error(r)
    assert "spec: sweep: " in error(r) and "START-END[:STEP]" in error(r)  # the field sent
    assert '{"start": S, "end": E, "step": N}' in error(r)
    assert f"got {json.dumps(value)}" in error(r)


def test_both_sweep_forms_still_read():
    for value in ("1-4:2", {"start": 1, "end": 4, "step": 2}):
        assert JobSpec.parse({"command": "x", "sweep": value}).tasks[0].sweep.count == 2  # type: ignore[union-attr]


# --- 3. a user name that is not text -----------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [(None, "null"), (5, "5"), (["bob"], '["bob"]')])
def test_a_user_name_that_is_not_text_says_it_must_be_a_string(http, value, shown):
    r = http.post("/api/users", json={"name": value})
    assert r.status_code == 422, r.text
    assert error(r).startswith('"name" must be a string')
    assert error(r).endswith(f"got {shown}") and "None" not in error(r)
    assert "POSIX user name" in error(r)


def test_a_role_that_is_not_text_is_shown_as_json(http):
    r = http.post("/api/users", json={"name": "carol", "role": None})
    assert r.status_code == 422 and error(r) == "role must be one of user, admin, got null"
    r = http.post("/api/users", json={"name": "carol", "role": "root"})
    assert r.status_code == 422 and error(r) == "role must be one of user, admin, got 'root'"
    assert all(u["name"] != "carol" for u in http.get("/api/users").json()["users"])


# --- 4. priority names in any case ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "number"),
    [("highest", 4000), ("HIGHEST", 4000), ("belownormal", 1000), (" aboveNormal ", 3000)],
)
def test_priority_names_match_in_any_case_and_are_stored_as_numbers(http, name, number):
    r = submit(http, priority=name)
    assert r.status_code == 201, r.text
    assert r.json()["priority"] == number
    r = http.patch(f"/api/jobs/{r.json()['id']}", json={"priority": "lowest"})
    assert r.status_code == 200 and r.json()["priority"] == 0


def test_a_template_takes_priority_names_in_any_case(http):
    r = http.put("/api/templates/AnyCase", json={"priority": "normal", "maxPriority": "HIGHEST"})
    assert r.status_code in (200, 201), r.text
    assert (r.json()["priority"], r.json()["maxPriority"]) == (2000, 4000)


def test_a_misspelt_priority_is_still_refused():
    with pytest.raises(ValueError, match="'hihgest' is not one of Lowest"):
        priority_value("hihgest")


# --- 5. one time parser for holdUntil and hold's until -------------------------------------


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2099-W01", "2098-12-29T00:00:00"),  # ISO week form: Monday of week 1
        ("20990101T000000Z", "2099-01-01T00:00:00"),  # basic form
        ("2099-01-01T01:00:00+01:00", "2099-01-01T00:00:00"),
    ],
)
def test_hold_until_reads_every_form_hold_until_reads(http, text, stored):
    r = submit(http, holdUntil=text)
    assert r.status_code == 201, r.text
    assert r.json()["holdUntil"].startswith(stored)
    r = http.post(f"/api/jobs/{new_job(http)}/hold", json={"until": text})
    assert r.status_code == 200 and r.json()["holdUntil"].startswith(stored), r.text


@pytest.mark.parametrize("text", ["10000-01-01T00:00:00Z", "+10000-01-01", "0000-01-01"])
def test_a_year_beyond_the_range_is_out_of_range_not_unreadable(http, text):
    r = submit(http, holdUntil=text)
    assert r.status_code == 422, r.text
    assert "is out of range" in error(r) and "1970-01-01 to 9999-12-31" in error(r)
    assert "not an ISO 8601" not in error(r)
    with pytest.raises(ValueError, match="out of range") as e:
        iso_time(text)
    assert not isinstance(e.value, NotATime)


def test_text_that_is_no_time_is_not_a_time():
    for text in ("tomorrow", "2099-13-01", "253402300800"):
        with pytest.raises(NotATime, match="ISO 8601"):
            iso_time(text)
    with pytest.raises(ValueError, match="as text") as e:
        iso_time(20991201)
    assert not isinstance(e.value, NotATime)
    assert iso_time("2099-12-01") == datetime(2099, 12, 1, tzinfo=UTC)


def test_a_hold_until_in_the_past_is_refused_given_the_submit_clock():
    now = datetime(2030, 6, 1, 12, tzinfo=UTC)
    spec = {"command": "x", "holdUntil": "2030-06-01T11:59:59Z"}
    with pytest.raises(InvalidRequest, match="holdUntil 2030-06-01 11:59:59 UTC is in the past"):
        JobSpec.parse(spec, now=now)
    with pytest.raises(InvalidRequest, match="give a later time, or leave holdUntil out"):
        JobSpec.parse({**spec, "holdUntil": "2030-06-01T12:00:00Z"}, now=now)
    later = JobSpec.parse({**spec, "holdUntil": "2030-06-01T12:00:01Z"}, now=now)
    assert later.hold_until == datetime(2030, 6, 1, 12, 0, 1, tzinfo=UTC)
    assert JobSpec.parse({"command": "x"}, now=now).hold_until is None


def test_the_cli_checks_until_by_the_same_rule(monkeypatch):
    assert parse_time(" 20990101T000000Z ") == "20990101T000000Z"  # a zone: sent as given
    assert parse_time("2099-01-01T09:00+09:00") == "2099-01-01T09:00+09:00"
    # none: this machine's local time, as Slurm's --begin and as the CLI shows times (a probe
    # in Tokyo typed its wall clock and its job started 9 hours late)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert parse_time(" 2099-W01 ") == "2098-12-29T00:00:00+09:00"
        assert parse_time("2099-01-01T14:00") == "2099-01-01T14:00:00+09:00"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    with pytest.raises(ValueError, match="out of range"):
        parse_time("10000-01-01T00:00:00Z")
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        parse_time("soon")


@pytest.mark.parametrize(
    ("given", "now", "begins"),
    [
        ("23:59", "2026-12-03T12:00:00+00:00", "2026-12-03T23:59:00Z"),  # later today
        ("09:30", "2026-12-03T12:00:00+00:00", "2026-12-04T09:30:00Z"),  # passed: tomorrow
        ("9:30:15", "2026-12-03T09:30:15+00:00", "2026-12-04T09:30:15Z"),  # now: tomorrow
        ("tomorrow", "2026-12-03T12:00:00+00:00", "2026-12-04T00:00:00Z"),
        ("TOMORROW", "2026-12-31T23:59:59+00:00", "2027-01-01T00:00:00Z"),
        # Slurm's now+count[units] (a user probe's now+1hour and now+1d were refused)
        ("now+1hour", "2026-12-03T12:00:00+00:00", "2026-12-03T13:00:00Z"),
        ("now+1d", "2026-12-03T12:00:00+00:00", "2026-12-04T12:00:00Z"),
        ("now+30minutes", "2026-12-03T12:00:00+00:00", "2026-12-03T12:30:00Z"),
        ("NOW+2weeks", "2026-12-03T12:00:00+00:00", "2026-12-17T12:00:00Z"),
        ("now+45s", "2026-12-03T12:00:00+00:00", "2026-12-03T12:00:45Z"),
        ("now+90", "2026-12-03T12:00:00+00:00", "2026-12-03T12:01:30Z"),  # seconds, as before
    ],
)
def test_begin_takes_slurms_time_of_day_and_tomorrow(
    given: str, now: str, begins: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe's `--begin 23:59` and `--begin tomorrow` were refused (local time: UTC here)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert parse_begin(given, now=datetime.fromisoformat(now)) == begins
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_begin_now_plus_something_else_says_both_forms() -> None:
    with pytest.raises(ValueError, match=r"or a count and unit as Slurm's now\+1hour"):
        parse_begin("now+3fortnights")
    for beyond in ("now+9999999weeks", "now+0hours"):  # a ValueError, not an OverflowError
        with pytest.raises(ValueError, match="is not from 1 second to 366 days"):
            parse_begin(beyond)


# --- pydantic's own words, said as a user writes them (a probe read them raw) ------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("[]", "invalid job spec: the body must be a JSON object ({...}), got []"),
        ("null", "invalid job spec: the body must be a JSON object ({...}), got null"),
        ('{"tasks": []}', "invalid job spec: tasks: must have at least 1 item, got none"),
        ('{"command": "x", "runtimeLimit": -5}', "runtimeLimit: must be at least 1, got -5"),
        ('{"command": "x", "maxRetries": -1}', "maxRetries: must be at least 0, got -1"),
        (
            '{"tasks": [{"command": "x"}, {"command": "y", "runtimeLimit": 0}]}',
            "tasks.1.runtimeLimit: must be at least 1, got 0",
        ),
        ('{"command": "x", "maxRetries": 1000000}', "maxRetries: must be at most 100, got 1000000"),
        ('{"command": "x", "validExitCodes": []}', "validExitCodes: must have at least 1 item"),
        (
            json.dumps({"tasks": [{"command": "x"}] * 10_001}),
            "tasks: must have at most 10,000 items, got 10,001",
        ),
        (
            json.dumps({"command": "x" * 40_000}),
            "command: must be at most 32,768 characters, got 40,000",
        ),
        ('{"command": "x", "name": "\\ud800"}', "name: must be text without lone surrogates"),
        ('{"tasks": [5]}', "tasks.0: must be a JSON object ({...}), got 5"),
        ('{"tasks": [{"command": "x", "env": []}]}', "tasks.0.env: must be a JSON object"),
        ('{"tasks": [{"command": "x", "sweep": {"start": 1}}]}', "tasks.0.sweep.end: is required"),
        ('{"tasks": [{"name": "x"}]}', "tasks.0.command: is required"),
    ],
)
def test_pydantic_words_are_said_as_what_to_fix(http, body, says):
    first = new_job(http)
    r = http.post("/api/jobs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert says in error(r)
    assert "Input should" not in error(r) and "should have" not in error(r)
    assert "Field required" not in error(r) and "valid dictionary" not in error(r)
    assert new_job(http) == first + 1  # nothing was taken


def test_a_begin_in_the_past_is_refused_in_the_flags_words():
    """A probe's ``--begin 2020-01-01`` read the API's "holdUntil ... is in the past"."""
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"'2020-01-01T00:00Z' is 2020-01-01 00:00:00 UTC, in"):
        parse_begin("2020-01-01T00:00Z", now=now)
    assert parse_begin("2026-12-03T12:00:01Z", now=now).startswith("2026-12-03T12:00:01")
