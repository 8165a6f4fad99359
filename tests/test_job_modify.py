"""``hpc job modify`` / ``PATCH /api/jobs/{id}``: a job that has not ended gets a new
priority, name, or maxConcurrent (a probe, as an HPC Pack admin, could change only the
priority). A lower cap stops nothing that runs; fewer start. A bad value changes nothing."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py

from __future__ import annotations

import pytest

from shared.domain.states import TaskState
from shared.errors import InvalidRequest
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import StandIn, assert_one_error_line, hpc
from tests.helpers import error, new_job
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures


def running(cp, job_id: int) -> int:
    return sum(1 for t in cp.list_tasks(job_id) if t.state is not TaskState.QUEUED)


def test_a_cap_raised_lets_more_start_and_one_lowered_stops_none(cp) -> None:
    register(cp, "n1", cores=8)
    job = cp.submit({"command": "x", "sweep": "1-8", "maxConcurrent": 2})
    assert cp.schedule_pass() == 2
    assert cp.modify_job(job.id, {"maxConcurrent": 5}).max_concurrent == 5
    assert cp.schedule_pass() == 3 and running(cp, job.id) == 5
    assert cp.modify_job(job.id, {"maxConcurrent": 1}).max_concurrent == 1
    assert cp.schedule_pass() == 0 and running(cp, job.id) == 5  # nothing stopped
    assert cp.modify_job(job.id, {"maxConcurrent": None}).max_concurrent is None
    assert cp.schedule_pass() == 3 and running(cp, job.id) == 8


def test_a_name_and_a_priority_change_together(cp) -> None:
    register(cp, "n1")
    job = cp.submit({"command": "x", "name": "old"})
    changed = cp.modify_job(job.id, {"name": "new", "priority": "Highest"})
    assert (changed.name, changed.priority) == ("new", 4000)


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"maxConcurrent": 0}, "maxConcurrent is a whole number from 1 to 1,000,000"),
        ({"maxConcurrent": True}, "maxConcurrent is a whole number"),
        ({"maxConcurrent": "5"}, "maxConcurrent is a whole number"),
        ({"name": 5}, "name is text of 1 to 256 characters"),
        ({"name": "x" * 257}, "name is text of 1 to 256 characters"),
        ({"name": ""}, "name is text of 1 to 256 characters"),  # a probe's left no name
        ({"name": "ok", "maxConcurrent": -1}, "maxConcurrent is a whole number"),
        ({"priority": "High", "maxConcurrent": 1}, "priority"),
    ],
)
def test_a_bad_value_changes_nothing(cp, changes, said) -> None:
    register(cp, "n1")
    job = cp.submit({"command": "x", "name": "kept", "maxConcurrent": 3})
    with pytest.raises(InvalidRequest, match=said):
        cp.modify_job(job.id, changes)
    kept = cp.get_job(job.id)
    assert (kept.name, kept.max_concurrent, kept.priority) == ("kept", 3, 2000)


def test_the_route_takes_those_fields_only(tmp_path) -> None:
    with served_app(tmp_path) as app, app.client() as api:
        AgentDouble(app.cp, "n1", cores=4).register()
        job_id = new_job(api)
        r = api.patch(f"/api/jobs/{job_id}", json={"name": "n", "maxConcurrent": 4})
        assert r.status_code == 200 and (r.json()["name"], r.json()["maxConcurrent"]) == ("n", 4)
        r = api.patch(f"/api/jobs/{job_id}", json={"maxRetries": 1})
        assert r.status_code == 422 and "nothing else can change" in error(r)
        r = api.patch(f"/api/jobs/{job_id}", json={})
        assert r.status_code == 422 and '"maxConcurrent"' in error(r)


def test_hpc_job_modify_sends_what_is_given(api: StandIn) -> None:
    assert hpc("job", "modify", "3", "--max-concurrent", "10", "--name", "n").exit_code == 0
    assert api.requests[-1]["body"] == {"name": "n", "maxConcurrent": 10}
    assert hpc("job", "modify", "3", "--max-concurrent", "none").exit_code == 0
    assert api.requests[-1]["body"] == {"maxConcurrent": None}
    assert_one_error_line(
        hpc("job", "modify", "3"), "give --priority, --name, --max-concurrent or --job-runtime"
    )
    bad = hpc("job", "modify", "3", "--max-concurrent", "0")
    assert_one_error_line(bad, "give a whole number, 1 or more, or none")
