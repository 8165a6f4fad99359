"""More bad input found by probing a live cluster: each case once gave a 500, or was taken
and changed what it meant (true as a count of 1, a number as a time in 1978), or sent back
all it was given in its error.

The HTTP cases run against the real function_app.py (tests/app_fixtures.py); the CLI cases
against the stand-in (tests/cli_fixtures.py), where "nothing was sent" is what it recorded;
the Output cases on every adapter (the contract suite's backends, Blob on Azurite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpc.spec import build_spec
from shared.domain.jobspec import JobSpec
from shared.domain.messages import MAX_ID
from shared.domain.specvalues import MAX_JSON_DEPTH, JsonTooDeep, load_json
from shared.domain.templates import JobTemplate
from shared.errors import InvalidRequest
from shared.ports.output import OutputStore
from tests.agent_double import AgentDouble
from tests.app_fixtures import ServedApp, served_app
from tests.cli_fixtures import StandIn, assert_one_error_line, hpc
from tests.contract.test_output_contract import OUTPUT_BACKENDS
from tests.helpers import error, new_job, submit


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    with served_app(tmp_path_factory.mktemp("bad-input-more")) as app:
        AgentDouble(app.cp, "n1", cores=4).register()
        yield app


@pytest.fixture(scope="module")
def http(served: ServedApp) -> Iterator[httpx.Client]:
    """The admin's client of the real API (``api`` is the CLI's stand-in)."""
    with served.client(timeout=30) as client:
        yield client


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- 1. JSON nested too deeply: a 400 (a RecursionError once made it a 500) ----------------

ROUTES_WITH_A_BODY = [
    ("POST", "/api/jobs"),
    ("PUT", "/api/templates/T1"),
    ("PATCH", "/api/nodegroups/OnPremNodes"),
    ("POST", "/api/users"),
    ("POST", "/api/nodes"),
    ("PATCH", "/api/jobs/{job}"),
    ("POST", "/api/jobs/{job}/hold"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES_WITH_A_BODY)
@pytest.mark.parametrize("depth", [100_000, 2_000, MAX_JSON_DEPTH + 1])
def test_json_nested_too_deeply_is_400_naming_the_depth(http, method, path, depth):
    url = path.format(job=new_job(http)) if "{job}" in path else path
    r = http.request(method, url, content=nested(depth).encode())
    assert r.status_code == 400, r.text
    assert error(r) == (
        f"request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
        "a job spec or any other request nests a few"
    )


def test_json_at_the_depth_limit_is_read_and_then_judged(http):
    spec = '{"command": "true", "env": ' + nested(MAX_JSON_DEPTH - 1) + "}"
    r = http.post("/api/jobs", content=spec.encode())
    assert r.status_code == 422 and "env" in error(r), r.text


def test_load_json_counts_arrays_and_objects_alike():
    assert load_json(nested(MAX_JSON_DEPTH)) == load_json(nested(MAX_JSON_DEPTH).encode())
    deep_objects = '{"a": ' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH
    load_json(deep_objects)
    for text in (nested(MAX_JSON_DEPTH + 1), '{"a": ' + deep_objects + "}", "[" * 10**5):
        with pytest.raises(JsonTooDeep):
            load_json(text)
    assert load_json('"[[[["') == "[[[["  # brackets in text are not nesting
    assert load_json('["' + "[" * 100 + '"]') == ["[" * 100]


@pytest.mark.parametrize("depth", [100_000, MAX_JSON_DEPTH + 1])
def test_cli_submit_file_nested_too_deeply_is_one_line(api: StandIn, tmp_path: Path, depth):
    path = tmp_path / "deep.json"
    path.write_text('{"command": "true", "env": ' + nested(depth) + "}")
    result = hpc("job", "submit", "--file", str(path))
    assert_one_error_line(result, f"{path} nests arrays and objects more than {MAX_JSON_DEPTH}")
    assert "unexpected" not in result.stderr
    assert api.requests == []


def test_cli_submit_file_with_a_number_json_cannot_convert_says_not_valid_json(
    api: StandIn, tmp_path: Path
):
    path = tmp_path / "big.json"
    path.write_text('{"command": "true", "priority": 1' + "0" * 5000 + "}")
    assert_one_error_line(hpc("job", "submit", "--file", str(path)), "is not valid JSON")
    assert api.requests == []


# --- 2. an output offset far past the end: empty, as just past the end (once EINVAL, a 500) ----

FAR_OFFSETS = [2**44 - 1, 2**44, 2**50, MAX_ID]


@pytest.fixture(params=["local", pytest.param("blob", marks=pytest.mark.azurite)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> OutputStore:
    """Each Output adapter, as the contract suite builds it (tests/contract)."""
    return OUTPUT_BACKENDS[request.param](request, tmp_path)


def test_every_output_adapter_reads_any_offset_past_the_end_as_empty(store: OutputStore):
    store.sink(1, 1, "stdout").write_bytes(b"0123456789")  # read from the agent's file
    store.sink(2, 1, "stdout").write_bytes(b"0123456789")
    store.publish(2, 1)  # read from where it was published
    for job_id in (1, 2):
        for offset in (10, 11, *FAR_OFFSETS):
            assert store.read(job_id, 1, "stdout", offset=offset, limit=5) == b"", offset
            assert store.read(job_id, 1, "stdout", attempt=0, offset=offset) == b"", offset
        assert store.read(job_id, 1, "stdout", offset=8) == b"89"


@pytest.mark.parametrize("offset", FAR_OFFSETS)
def test_an_output_offset_far_past_the_end_is_an_empty_page(served, http, offset):
    job_id = new_job(http)
    task = served.cp.store.get_task(job_id, 1)
    task.node = "n1"  # placed: an attempt that never reached a node has no output (404)
    served.cp.store.commit(tasks=[task])
    served.cp.deps.output.sink(job_id, 1, "stdout", attempt=0).write_bytes(b"hello\n")
    url = f"/api/jobs/{job_id}/tasks/1/output"
    just_past = http.get(url, params={"offset": 7, "attempt": 0})
    r = http.get(url, params={"offset": offset, "attempt": 0})
    assert (r.status_code, r.content) == (just_past.status_code, just_past.content) == (200, b"")
    assert r.headers["X-Output-Size"] == just_past.headers["X-Output-Size"] == "6"


# --- 3. counts take JSON integers only, flags true or false only (no lax coercion) -----------

NOT_INTEGERS = [True, False, "3", 3.0, "1.5"]
NOT_FLAGS = ["yes", "true", 1, 0, "on", None]


def task(**fields: Any) -> dict[str, Any]:
    return {"tasks": [{"command": "true", **fields}]}


COUNTS: list[tuple[str, Callable[[Any], dict[str, Any]]]] = [
    ("maxRetries", lambda v: {"command": "true", "maxRetries": v}),
    ("runtimeLimit", lambda v: {"command": "true", "runtimeLimit": v}),
    ("maxConcurrent", lambda v: {"command": "true", "maxConcurrent": v}),
    ("validExitCodes.0", lambda v: {"command": "true", "validExitCodes": [v]}),
    ("dependsOn.0", lambda v: {"command": "true", "dependsOn": [v]}),
    ("tasks.0.nodes", lambda v: task(nodes=v)),
    ("tasks.0.runtimeLimit", lambda v: task(runtimeLimit=v)),
    ("tasks.0.validExitCodes.1", lambda v: task(validExitCodes=[0, v])),
    ("tasks.0.cores", lambda v: task(cores=v)),
    ("tasks.0.cores: min", lambda v: task(cores={"min": v, "max": 2})),
    ("tasks.0.sweep.start", lambda v: task(sweep={"start": v, "end": 3})),
    ("tasks.0.sweep.step", lambda v: task(sweep={"start": 1, "end": 3, "step": v})),
]


@pytest.mark.parametrize("value", NOT_INTEGERS, ids=repr)
@pytest.mark.parametrize(("where", "spec"), COUNTS, ids=[w for w, _ in COUNTS])
def test_counts_of_a_job_spec_take_integers_only(where, spec, value):
    if "runtimeLimit" in where and value == "3":  # a limit also takes the CLI's text forms
        assert JobSpec.parse(spec(value)).task_count() == 1
        return
    with pytest.raises(InvalidRequest) as e:
        JobSpec.parse(spec(value))
    message = str(e.value)
    assert where in message, message
    if "runtimeLimit" in where and isinstance(value, str):  # text: the duration forms
        assert "is not [[D:]H:]M:S" in message, message
    elif "runtimeLimit" in where:  # a limit takes text too, and says so
        assert "must be whole seconds or a duration as text" in message, message
    elif where != "tasks.0.cores":  # which says its two forms
        assert "whole number" in message or "job id" in message, message


@pytest.mark.parametrize("value", NOT_FLAGS, ids=repr)
@pytest.mark.parametrize(
    ("where", "spec"),
    [
        ("tasks.0.exclusive", lambda v: task(exclusive=v)),
        ("runDependentsOnFailure", lambda v: {"command": "true", "runDependentsOnFailure": v}),
    ],
)
def test_flags_take_true_or_false_only(where, spec, value):
    with pytest.raises(InvalidRequest, match=f"{where}: must be true or false"):
        JobSpec.parse(spec(value))


def test_booleans_and_text_for_counts_and_flags_are_422_saying_what_they_take(http):
    r = submit(http, validExitCodes=[True])
    assert r.status_code == 422, r.text
    assert error(r) == (
        "invalid job spec: validExitCodes.0: must be a whole number "
        "(a JSON integer, not text, true or 8.0), got true"
    )
    for field, value in (("maxRetries", True), ("maxRetries", "3")):
        r = submit(http, **{field: value})
        assert r.status_code == 422 and f"{field}: must be a whole number" in error(r), r.text
    r = submit(http, runtimeLimit=True)
    assert r.status_code == 422 and "runtimeLimit: must be whole seconds or" in error(r), r.text
    r = submit(http, exclusive="yes")
    assert r.status_code == 422 and 'exclusive: must be true or false, got "yes"' in error(r)


@pytest.mark.parametrize("value", [True, "8", 8.0])
@pytest.mark.parametrize(
    "field", ["maxCores", "maxRetries", "maxConcurrent", "runtimeLimit", "maxRuntimeLimit"]
)
def test_template_counts_take_integers_only(http, field, value):
    r = http.put("/api/templates/T1", json={field: value})
    if "RuntimeLimit" in field or field == "runtimeLimit":  # a limit: seconds, or text
        if value == "8":  # text in the CLI's forms: 8 s, as a job spec's limit takes it
            assert r.status_code in (200, 201) and r.json()[field] == 8, r.text
            assert http.delete("/api/templates/T1").status_code in (200, 204)
            return
        assert r.status_code == 422 and f"{field}: must be whole seconds or" in error(r)
    else:
        assert r.status_code == 422, r.text
        assert f"{field}: must be a whole number" in error(r)
    assert http.get("/api/templates/T1").status_code == 404  # nothing stored


def test_what_the_cli_and_files_send_is_still_taken(http):
    """The CLI sends the ints and flags it parsed; a spec file sends JSON as written."""
    spec = build_spec(
        command="echo *", cores={"min": 1, "max": 2}, exclusive=True, nodes=1, priority="Highest",
        sweep="1-3", runtime_limit=60, valid_exit_codes=[0, 3], max_concurrent=2,
        node_groups=["OnPremNodes"], stdout="%j.%t.out",
    )  # fmt: skip
    r = http.post("/api/jobs", json=spec)
    assert r.status_code == 201, r.text
    full = {
        "command": "true", "nodeGroups": ["OnPremNodes"], "maxRetries": 0, "runtimeLimit": 5,
        "maxConcurrent": 1, "holdUntil": "2099-12-01T14:00:00+01:00", "dependsOn": [],
        "runDependentsOnFailure": False, "validExitCodes": [-1, 0], "priority": 12,
        "sweep": {"start": -2, "end": 2, "step": 2}, "exclusive": False, "cores": 1, "nodes": 1,
    }  # fmt: skip
    r = submit(http, **full)
    assert r.status_code == 201 and r.json()["holdUntil"].startswith("2099-12-01T13:00:00")
    r = http.put("/api/templates/T2", json={"maxCores": 8, "maxRetries": 0, "priority": "Highest"})
    assert r.status_code in (200, 201) and r.json()["maxCores"] == 8, r.text


def test_a_template_saved_before_these_checks_still_loads():
    stored = {"name": "Old", "maxCores": 1, "allowedNodeGroups": ["g" * 500], "maxRetries": 0}
    template = JobTemplate.model_validate(stored)  # how the store reads it back
    assert template.to_dict() == {**stored, "description": ""}


# --- 4. a time is ISO 8601 text: a number is no time (253402300800 was read as 1978) ---------


@pytest.mark.parametrize("value", [253402300800, 1700000000, 20991201, 1.5e9, "253402300800"])
def test_hold_until_as_a_number_is_422_asking_for_iso_8601(http, value):
    r = submit(http, holdUntil=value)
    assert r.status_code == 422, r.text
    assert "holdUntil" in error(r) and "ISO 8601" in error(r) and "2026-12-01T14:00:00Z" in error(r)
    job_id = new_job(http)
    r = http.post(f"/api/jobs/{job_id}/hold", json={"until": value})
    if isinstance(value, str):  # text that is no ISO time: a 422, as a spec's holdUntil
        assert r.status_code == 422 and "not an ISO 8601 time" in error(r), r.text
    else:
        assert r.status_code == 422, r.text
        assert error(r).startswith("until: give an ISO 8601 time as text")
    job = http.get(f"/api/jobs/{job_id}").json()
    assert job["held"] is False and job["holdUntil"] is None


def test_hold_until_in_iso_8601_basic_form_is_still_read_as_a_date(http):
    r = submit(http, holdUntil="20991201")
    assert r.status_code == 201 and r.json()["holdUntil"].startswith("2099-12-01T00:00:00")
    r = http.post(f"/api/jobs/{new_job(http)}/hold", json={"until": "20991201"})
    assert r.status_code == 200 and r.json()["holdUntil"].startswith("2099-12-01T00:00:00")


# --- 5. an error repeats at most 80 characters of what it was sent ----------------------------

LONG = "x" * 100_000


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/api/templates/T3", {"allowedNodeGroups": [LONG]}, 422),
        ("PUT", "/api/templates/T3", {"nodeGroups": [LONG, "y"]}, 422),
        ("POST", "/api/jobs", {"command": "true", "nodeGroups": [LONG]}, 422),
        ("POST", "/api/jobs", {"command": "true", "env": {LONG + "=": "1"}}, 422),
        ("POST", "/api/jobs", {"command": "true", "env": {"HPC_" + LONG: "1"}}, 422),
        ("POST", "/api/jobs", {"command": "true", "priority": LONG}, 422),
        ("POST", "/api/jobs", {"command": "true", "priority": [1] * 50_000}, 422),
        ("POST", "/api/jobs", {"command": "true", "cores": LONG}, 422),
        ("POST", "/api/jobs", {"command": "true", "sweep": LONG}, 422),
        ("POST", "/api/jobs", {"command": "true", "sweep": {"start": 9**4000, "end": 1}}, 422),
        ("POST", "/api/jobs", {"command": "true", "dependsOn": [9**4000]}, 422),
        ("POST", "/api/jobs", {"command": "true", "workDir": "/" + "d" * 4000 + "\0"}, 422),
        ("POST", "/api/jobs/{job}/hold", {"until": LONG}, 422),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_errors_cut_what_they_repeat_of_the_request(http, method, path, body, status):
    url = path.format(job=new_job(http)) if "{job}" in path else path
    r = http.request(method, url, json=body)
    assert r.status_code == status, r.text[:500]
    assert len(error(r)) < 600, error(r)


@pytest.mark.parametrize(
    "path",
    [
        f"/api/jobs?state={LONG[:6000]}",
        f"/api/jobs?limit={LONG[:6000]}",
        f"/api/jobs/{'9' * 6000}",
        "/api/jobs/{job}/tasks/1/output?stream=" + LONG[:6000],
        "/api/jobs/{job}/tasks/1/output?limit=" + "9" * 6000,
    ],
    ids=lambda p: p[:30],
)
def test_query_and_route_errors_cut_what_they_repeat(http, path):
    r = http.get(path.format(job=new_job(http)) if "{job}" in path else path)
    assert r.status_code in (400, 404), r.text[:500]
    assert "(6000 characters)" in error(r) and len(error(r)) < 400, error(r)
