"""Bad input to the job routes is a 4xx that says what to fix, and changes nothing.

Found by probing a live cluster: each case once gave a 500 (or was accepted and broke the
job later). The HTTP cases run against the real function_app.py (tests/app_fixtures.py);
the dispatch case plays an agent through the control plane (tests/test_control.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.jobspec import JobSpec
from shared.domain.messages import MAX_ID
from shared.domain.tasksize import MAX_ASSIGNMENT_BYTES, MAX_ENV_BYTES
from shared.errors import InvalidRequest
from shared.ports.bus import MAX_MESSAGE_BYTES
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.helpers import error, new_job, submit
from tests.test_control import make_cp

BEYOND_SQLITE = "9223372036854775808"  # 2**63: no SQLite integer holds it
HUGE = "99999999999999999999"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("bad-input")) as app:
        AgentDouble(app.cp, "n1", cores=4).register()
        with app.client() as client:
            yield client


# --- 1. priority: an int 0-4000 or a name, nothing else ----------------------------------------

NOT_PRIORITIES = [1.5, 2.0, True, False, None, [1], {}, "²", "１", "1.5", ""]


@pytest.mark.parametrize("value", NOT_PRIORITIES, ids=repr)
def test_patch_priority_refuses_what_is_not_an_int_or_a_name_and_the_job_still_reads(api, value):
    job_id = new_job(api, priority="AboveNormal")
    r = api.patch(f"/api/jobs/{job_id}", json={"priority": value})
    assert r.status_code == 422, r.text
    assert "Lowest" in error(r) and "integer 0-4000" in error(r)
    assert "invalid literal" not in error(r)
    job = api.get(f"/api/jobs/{job_id}")
    assert job.status_code == 200 and job.json()["priority"] == 3000
    assert api.get(f"/api/jobs/{job_id}/tasks").status_code == 200


@pytest.mark.parametrize("value", NOT_PRIORITIES, ids=repr)
def test_submit_priority_refuses_what_is_not_an_int_or_a_name(api, value):
    r = submit(api, priority=value)
    assert r.status_code == 422, r.text
    assert "priority" in error(r) and "integer 0-4000" in error(r)


def test_priority_still_takes_names_ints_and_digits_as_text(api):
    for value, stored in (("Highest", 4000), (0, 0), (4000, 4000), (" 12 ", 12)):
        assert JobSpec.parse({"command": "x", "priority": value}).priority == stored
    job_id = new_job(api)
    r = api.patch(f"/api/jobs/{job_id}", json={"priority": "1500"})
    assert r.status_code == 200 and r.json()["priority"] == 1500


# --- 2. ids and numbers beyond what the store holds --------------------------------------------


@pytest.mark.parametrize("huge", [BEYOND_SQLITE, HUGE, str(MAX_ID + 1)])
def test_job_ids_beyond_any_stored_id_are_404(api, huge):
    assert api.get(f"/api/jobs/{huge}").status_code == 404
    r = api.get(f"/api/jobs/{huge}")
    assert error(r) == f"job {huge} does not exist"
    for action in ("cancel", "requeue", "hold", "release"):
        r = api.post(f"/api/jobs/{huge}/{action}")
        assert r.status_code == 404 and "does not exist" in error(r), (action, r.text)
    assert api.patch(f"/api/jobs/{huge}", json={"priority": 1}).status_code == 404
    assert api.get(f"/api/jobs/{huge}/tasks").status_code == 404
    assert api.get(f"/api/jobs/{huge}/tasks/1").status_code == 404
    assert api.get(f"/api/jobs/{huge}/tasks/1/output").status_code == 404


def test_task_ids_beyond_any_stored_id_are_404(api):
    job_id = new_job(api)
    for path in (f"/api/jobs/{job_id}/tasks/{HUGE}", f"/api/jobs/{job_id}/tasks/{HUGE}/output"):
        r = api.get(path)
        assert r.status_code == 404, r.text
        assert error(r) == f"task {job_id}.{HUGE} does not exist; job {job_id} has tasks 1 to 1"


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/jobs", "before"),  # (a page's limit has its own maximum: below)
        ("/api/jobs/{job}/tasks", "offset"),
        ("/api/jobs/{job}/tasks", "after"),
        ("/api/jobs/{job}/tasks/1/output", "offset"),
        ("/api/jobs/{job}/tasks/1/output", "attempt"),
    ],
)
def test_query_numbers_beyond_the_maximum_are_400_saying_it(api, path, param):
    url = path.format(job=new_job(api))
    for huge in ("9223372036854775807", BEYOND_SQLITE, HUGE):
        r = api.get(url, params={param: huge})
        assert r.status_code == 400, (param, huge, r.text)
        assert error(r) == f"{param} must be at most {MAX_ID}, got {huge}"
    r = api.get(url, params={param: str(MAX_ID)})  # the largest taken is served
    assert r.status_code in (200, 404), r.text  # 404: the attempt the task never had


@pytest.mark.parametrize("text", ["１", "٣", "²", "1_0", "+1", "0x10", "1e3"])
def test_query_numbers_are_ascii_digits(api, text):
    r = api.get("/api/jobs", params={"limit": text})
    assert r.status_code == 400 and "digits 0-9" in error(r), r.text
    r = api.get(f"/api/jobs/{text}")
    assert r.status_code == 400 and "job id" in error(r), r.text


def test_depends_on_an_id_beyond_any_job_is_422(api):
    for huge in (int(BEYOND_SQLITE), MAX_ID + 1):
        r = submit(api, dependsOn=[huge])
        assert r.status_code == 422, r.text
        assert f"dependsOn.0: job {huge} does not exist" in error(r)
    r = submit(api, dependsOn=[True])
    assert r.status_code == 422 and "dependsOn.0" in error(r), r.text


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        ({"dependsOn": ["prep"]}, "dependsOn.0", "task names go in a task's dependsOn"),
        (
            {"tasks": [{"name": "a", "command": "x"}, {"command": "y", "dependsOn": [3]}]},
            "tasks.1.dependsOn.0",
            "job ids go in the job's dependsOn",
        ),
        ({"tasks": [{"command": "y", "dependsOn": "a"}]}, "tasks.0.dependsOn", "a JSON array"),
    ],
)
def test_depends_on_at_the_wrong_level_says_where_it_goes(api, body, where, says):
    """A probe: task names in the job's dependsOn (or job ids in a task's) got only the
    type error; they are the other level's, and the message says so."""
    body = {"command": "x", **body} if "tasks" not in body else body
    r = api.post("/api/jobs", json={"nodeGroups": ["OnPremNodes"], **body})
    assert r.status_code == 422, r.text
    assert f"{where}: " in error(r) and says in error(r)


def test_a_sweep_beyond_the_index_range_is_422_not_an_overflow(api):
    r = submit(api, sweep=f"1-{HUGE}000")
    assert r.status_code == 422, r.text
    assert f"would have {HUGE}000 tasks" in error(r) and "HPC_MAX_TASKS_PER_JOB" in error(r)
    r = submit(api, sweep=f"{HUGE}-{HUGE}")
    assert r.status_code == 422 and f"{MAX_ID}" in error(r), r.text
    r = submit(api, sweep=f"1-{MAX_ID}")  # within the index range: the task-count check says no
    assert r.status_code == 422 and "HPC_MAX_TASKS_PER_JOB" in error(r), r.text
    r = submit(api, sweep="١-٣")  # Arabic-Indic digits are not a range
    assert r.status_code == 422 and "START-END" in error(r), r.text


# --- 3. times out of range; a refused submit uses no job id ------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:59:59-05:00",  # past the year 9999 in UTC
        "0001-01-01T00:00:00+05:00",  # before the year 1 in UTC
        "0999-06-01T00:00:00Z",  # a year the store could not read back
    ],
)
def test_hold_times_out_of_range_are_422_and_use_no_job_id(api, moment):
    first = new_job(api)
    r = submit(api, holdUntil=moment)
    assert r.status_code == 422, r.text
    assert "holdUntil" in error(r) and "1970" in error(r) and "9999" in error(r)
    assert new_job(api) == first + 1  # the refused submit took no id
    r = api.post(f"/api/jobs/{first}/hold", json={"until": moment})
    assert r.status_code == 422 and "until" in error(r) and "9999" in error(r), r.text
    job = api.get(f"/api/jobs/{first}")
    assert job.status_code == 200 and job.json()["holdUntil"] is None


def test_the_last_moment_of_9999_is_held_and_reads_back(api):
    job_id = new_job(api, holdUntil="9999-12-31T23:59:59.999999Z")
    job = api.get(f"/api/jobs/{job_id}")
    assert job.status_code == 200 and job.json()["pendingReason"].startswith("held until 9999")
    r = api.post(f"/api/jobs/{job_id}/hold", json={"until": "9999-12-31T18:00:00-05:00"})
    assert r.status_code == 200 and r.json()["holdUntil"].startswith("9999-12-31T23:00:00")


def test_hold_until_a_past_time_is_refused_and_keeps_the_hold(api):
    job_id = new_job(api)
    assert api.post(f"/api/jobs/{job_id}/hold").json()["held"] is True
    r = api.post(f"/api/jobs/{job_id}/hold", json={"until": "2020-01-01T00:00:00Z"})
    assert r.status_code == 422, r.text
    assert "until 2020-01-01 00:00:00 UTC is in the past" in error(r)
    assert "hpc job release" in error(r)
    job = api.get(f"/api/jobs/{job_id}").json()
    assert job["held"] is True and job["pendingReason"] == f"held (hpc job release {job_id})"


# --- 4. what travels in a task's assignment message --------------------------------------------


def test_env_beyond_its_bound_is_refused_saying_the_limit_and_why(api):
    env = {f"V{i}": "x" * 100 for i in range(3000)}
    r = submit(api, env=env)
    assert r.status_code == 422, r.text
    assert f"at most {MAX_ENV_BYTES}" in error(r) and "Service Bus" in error(r)
    near = {"BIG": "x" * (MAX_ENV_BYTES - 3)}  # names and values: exactly the bound
    assert submit(api, env=near).status_code == 201


def test_a_task_whose_assignment_could_not_be_sent_is_refused(api):
    r = submit(api, command="echo " + "\U0001d11e" * 30_000)  # 12 JSON bytes a character
    assert r.status_code == 422, r.text
    assert f"at most {MAX_ASSIGNMENT_BYTES} bytes" in error(r) and "shorten" in error(r)
    # A sweep's command grows by its index at each *: the widest index counts.
    stars = "echo " + "*," * 16_000  # (** would be a literal *)
    assert submit(api, command=stars, sweep="1-3").status_code == 201
    r = submit(api, command=stars, sweep=f"{10**15}-{10**15 + 2}")
    assert r.status_code == 422 and f"at sweep index {10**15}" in error(r), r.text


def test_the_assignment_bound_is_service_bus_standards_message_size():
    assert MAX_ASSIGNMENT_BYTES == MAX_MESSAGE_BYTES


def test_a_task_just_within_the_bound_is_dispatched(tmp_path):
    """The bound holds for the real message: the embedded bus refuses what Service Bus would
    (shared/ports/bus.py), so the largest task accepted must still reach its agent."""
    from tests.test_control import Clock

    cp = make_cp(tmp_path, Clock())
    name = "n" * 128  # the longest node name (messages.NodeName)
    agent = AgentDouble(cp, name, cores=1_000, host_id="host-of-the-longest-name")
    assert agent.register().accepted
    env = {"E": "é" * ((MAX_ENV_BYTES - 1) // 2)}  # 6 JSON bytes a character

    def spec(n: int) -> dict[str, Any]:
        command = "echo " + "\u20ac" * n + " %j"  # 6 JSON bytes a character
        return {"command": command, "env": env, "stdout": "%j.%t.%a", "sweep": f"{MAX_ID}-{MAX_ID}"}

    low, high = 0, 32_000
    while low < high:  # the longest command the bound lets through
        mid = (low + high + 1) // 2
        try:
            JobSpec.parse(spec(mid))
            low = mid
        except InvalidRequest:
            high = mid - 1
    assert 10_000 < low < 32_000
    job = cp.submit(spec(low))
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    assert run.job_id == job.id and run.env["E"] == env["E"]
    with pytest.raises(InvalidRequest, match="assignment"):
        cp.submit(spec(low + 1))


# --- 5. NUL characters, '=' in names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"command": "echo a\0b"}, "command"),
        ({"env": {"A": "x\0y"}}, "env"),
        ({"env": {"A\0": "x"}}, "env"),
        ({"env": {"A=B": "x"}}, "env"),
        ({"workDir": "/tmp\0x"}, "workDir"),
        ({"stdout": "out\0"}, "stdout"),
    ],
)
def test_nul_characters_and_equals_in_env_names_are_refused(api, spec, where):
    r = submit(api, **spec)
    assert r.status_code == 422, r.text
    assert where in error(r)
    if "=" not in str(spec):
        assert "NUL" in error(r)


# --- 6. unknown fields in a sweep -------------------------------------------------------------


def test_unknown_fields_of_a_sweep_object_are_refused(api):
    r = submit(api, sweep={"start": 1, "end": 3, "extra": 1})
    assert r.status_code == 422 and "sweep.extra" in error(r), r.text
    assert submit(api, sweep={"start": 1, "end": 3, "step": 2}).status_code == 201


# --- 7. an empty body says what the route takes -----------------------------------------------


def test_an_empty_body_says_what_the_route_takes(api):
    job_id = new_job(api)
    r = api.patch(f"/api/jobs/{job_id}", content=b"")
    assert r.status_code == 400 and '{"priority"' in error(r) and "job spec" not in error(r)
    r = api.post("/api/jobs", content=b" ")
    assert r.status_code == 400 and "job spec" in error(r)
    r = api.post(f"/api/jobs/{job_id}/hold", content=b"")  # no body: held until released
    assert r.status_code == 200 and r.json()["held"] is True


def test_a_number_json_cannot_convert_is_400_not_500(api):
    body = b'{"command": "true", "priority": 1' + b"0" * 5000 + b"}"
    r = api.post("/api/jobs", content=body)
    assert r.status_code == 400 and "not valid JSON" in error(r), r.text


def test_a_refused_request_changes_nothing(api):
    """One sweep over the cases above: the job reads back as it was."""
    job_id = new_job(api, priority=7)
    before = api.get(f"/api/jobs/{job_id}").json()
    api.patch(f"/api/jobs/{job_id}", json={"priority": 1.5})
    api.post(f"/api/jobs/{job_id}/hold", json={"until": "0001-01-01T00:00:00+05:00"})
    api.post(
        f"/api/jobs/{job_id}/hold", json={"until": datetime(2001, 1, 1, tzinfo=UTC).isoformat()}
    )
    after = api.get(f"/api/jobs/{job_id}").json()
    assert {k: after[k] for k in ("priority", "held", "holdUntil", "state")} == {
        k: before[k] for k in ("priority", "held", "holdUntil", "state")
    }


def test_a_fractional_priority_stored_before_it_was_refused_still_loads():
    """A store written by the old PATCH (priority 1.5 taken) must be readable again."""
    from shared.domain.models import Job, Task

    job = Job.model_validate({"id": 1, "priority": 1.5, "taskCount": 1})
    task = Task.model_validate({"jobId": 1, "id": 1, "command": "x", "priority": 2999.7})
    assert (job.priority, task.priority) == (2, 3000)


def test_a_spec_with_both_a_top_level_command_and_tasks_says_to_pick_one(api):
    """Found by a probe: it said "command: Extra inputs are not permitted", though a
    top-level command is a valid key (a one-task job)."""
    spec = {"command": "echo a", "tasks": [{"command": "echo b"}]}
    r = api.post("/api/jobs", json=spec)
    assert r.status_code == 422
    assert "a top-level command (a one-task job) or tasks, not both" in r.json()["error"]
    assert "Extra inputs" not in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "most"),
    [("/api/jobs", 1000), ("/api/jobs/1/tasks", 10_000)],
)
def test_a_page_larger_than_the_most_one_request_returns_is_400(api, path, most):
    """Found by a probe: limit=100000000 on a million-task sweep answered 730 MB over 1 min
    44 s while a node missed its heartbeats and lost its task. A page has a maximum."""
    api.post("/api/jobs", json={"command": "x"}).raise_for_status()
    r = api.get(path, params={"limit": most + 1})
    assert r.status_code == 400, r.text
    assert f"limit must be at most {most}" in r.json()["error"]
    assert "pages" in r.json()["error"]
    assert api.get(path, params={"limit": most}).status_code == 200


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({}, 'give a command (a one-task job: {"command": "..."}) or tasks'),
        ({"name": "x"}, 'give a command (a one-task job: {"command": "..."}) or tasks'),
        ({"command": 42}, "command: must be text"),  # the field sent, not tasks.0.command
        ({"command": ""}, "command: command is empty"),
    ],
)
def test_a_spec_without_a_command_names_both_forms_and_the_one_task_forms_fields(api, spec, said):
    """A user probe: ``{}`` was told only "tasks: Field required", and ``{"command": 42}``
    of ``tasks.0.command``, a path the user never wrote."""
    r = api.post("/api/jobs", json=spec)
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith(f"invalid job spec: {said}")


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (
            {"nodegroups": ["OnPremNodes"], "tasks": [{"command": "x", "workdir": "/tmp"}]},
            "tasks.0.workdir: unknown field; did you mean workDir? (workDir is a task's (in "
            "each task, or beside a top-level command)); nodegroups: unknown field; did you "
            "mean nodeGroups? (nodeGroups is the job's (top level))",
        ),
        (
            {"command": "x", "run_time_limit": 5},
            "run_time_limit: unknown field; did you mean runtimeLimit? (runtimeLimit is the job's "
            "(top level) or a task's (in each task, or beside a top-level command))",
        ),
        (
            {"command": "x", "maxRetires": 1},
            "maxRetires: unknown field; did you mean maxRetries? (maxRetries is the job's (top "
            "level))",
        ),
        ({"command": "x", "colour": 1}, "colour: unknown field"),
        # a field of another level says where it goes (a probe was told "did you mean
        # priority?" of its task's priority)
        (
            {"tasks": [{"command": "x", "priority": "High", "maxConcurrent": 2}]},
            "tasks.0.priority: not taken here: priority is the job's (top level); "
            "tasks.0.maxConcurrent: not taken here: maxConcurrent is the job's (top level)",
        ),
        (
            {"tasks": [{"command": "x"}], "sweep": "1-3"},
            "sweep: not taken here: sweep is a task's (in each task, or beside a top-level "
            "command)",
        ),
        (
            {"command": "x", "cores": {"min": 1, "max": 2, "nodes": 3}},
            "cores: nodes: not taken here: nodes is a task's (in each task, or beside a "
            "top-level command)",
        ),
        (
            {"tasks": [{"command": "x", "max": 2}]},
            "tasks.0.max: not taken here: max is part of cores",
        ),
    ],
)
def test_an_unknown_field_names_the_field_meant(api, spec, said):
    """Found by a newcomer probe: ``workdir`` and ``nodegroups`` got pydantic's "Extra inputs
    are not permitted", with no word of workDir and nodeGroups."""
    r = api.post("/api/jobs", json=spec)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == f"invalid job spec: {said}"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("   ", "name: is only blanks"),
        ("x\u0000y", "holds the control character U+0000"),
        ("a\u202eb", "holds the control character U+202E"),  # a bidi override
    ],
)
def test_a_name_of_blanks_or_control_characters_is_refused_at_submit_and_in_a_change(
    api, name, says
):
    """A probe: such names were accepted and listed as an empty or garbled Name."""
    r = submit(api, name=name)
    assert r.status_code == 422 and says in error(r), r.text
    r = api.post("/api/jobs", json={"tasks": [{"command": "x", "name": name}]})
    assert r.status_code == 422 and "tasks.0.name" in error(r), r.text
    job_id = new_job(api, name="kept")
    r = api.patch(f"/api/jobs/{job_id}", json={"name": name})
    assert r.status_code == 422 and says in error(r), r.text
    assert api.get(f"/api/jobs/{job_id}").json()["name"] == "kept"
    api.post(f"/api/jobs/{job_id}/cancel")
