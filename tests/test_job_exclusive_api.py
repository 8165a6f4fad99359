"""Job-level exclusive at the edges: the spec's top-level ``exclusive``, the job's JSON view,
``PATCH`` refusing a change, ``hpc job submit --job-exclusive`` and ``hpc job view``, and the
store carrying the flag to what the scheduler reads (tasks, holdings)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from hpc.render import job_detail
from shared.domain.jobbuild import build
from shared.domain.jobspec import JobSpec
from shared.domain.models import Host, Job, Task
from shared.domain.states import TaskState
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import StandIn, hpc

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("job-exclusive")) as served:
        AgentDouble(served.cp, "n1", cores=4).register()
        with served.client() as client:
            yield client, served.cp


def test_a_top_level_exclusive_makes_the_job_exclusive_and_its_view_says_so(app):
    client, cp = app
    r = client.post("/api/jobs", json={"exclusive": True, "tasks": [{"command": "true"}] * 2})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["exclusive"] is True
    assert client.get(f"/api/jobs/{job['id']}").json()["exclusive"] is True
    tasks = [cp.store.get_task(job["id"], i) for i in (1, 2)]
    assert [t.job_exclusive for t in tasks] == [True, True]
    assert [t.exclusive for t in tasks] == [False, False]  # the tasks' own flag is unchanged


def test_a_job_without_it_says_false(app):
    client, _ = app
    job = client.post("/api/jobs", json={"tasks": [{"command": "true"}]}).json()
    assert job["exclusive"] is False


def test_beside_a_top_level_command_exclusive_stays_the_tasks(app):
    client, cp = app
    job = client.post("/api/jobs", json={"command": "true", "exclusive": True}).json()
    assert job["exclusive"] is False
    assert cp.store.get_task(job["id"], 1).exclusive is True


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_a_non_boolean_exclusive_is_refused_saying_what_to_fix(app, value):
    """A 422, as every other invalid job spec field (the API's rule for a spec it read)."""
    client, _ = app
    r = client.post("/api/jobs", json={"exclusive": value, "tasks": [{"command": "true"}]})
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith("invalid job spec: exclusive: must be true or false, got")


def test_exclusive_cannot_change_after_submit(app):
    client, _ = app
    job = client.post("/api/jobs", json={"tasks": [{"command": "sleep 60"}]}).json()
    r = client.patch(f"/api/jobs/{job['id']}", json={"exclusive": True})
    assert r.status_code == 422  # a field that cannot change (README: 400 or 422)
    assert "exclusive cannot change after submit" in r.json()["error"]
    assert client.get(f"/api/jobs/{job['id']}").json()["exclusive"] is False


def test_a_sweeps_steps_carry_the_jobs_exclusive():
    spec = JobSpec.parse({"exclusive": True, "tasks": [{"command": "x", "sweep": "1-3"}]})
    job, _, ranges = build(spec, 9, now=NOW)
    assert job.exclusive and ranges[0].task(2).job_exclusive


def test_an_old_job_document_without_the_field_reads_as_not_exclusive():
    assert Job.model_validate({"id": 1}).exclusive is False
    assert Task.model_validate({"jobId": 1, "id": 1, "command": "x"}).job_exclusive is False


def test_holdings_carry_the_jobs_exclusive(app):
    client, cp = app
    job_id = client.post(
        "/api/jobs", json={"exclusive": True, "tasks": [{"command": "sleep 30"}]}
    ).json()["id"]

    def dispatch() -> None:
        t = cp.store.get_task(job_id, 1)
        if t.state is TaskState.QUEUED:
            t.move_to(TaskState.DISPATCHING)
            t.node, t.hosts = "n1", [Host(node="n1", cores=1)]
            cp.store.commit(tasks=[t])

    cp.deps.retry(dispatch)
    held = {(h.job_id, h.task_id): h.job_exclusive for h in cp.store.holdings()}
    assert held[(job_id, 1)] is True


# --- the CLI ------------------------------------------------------------------------


def test_submit_job_exclusive_sends_the_jobs_flag_and_exclusive_the_tasks(api: StandIn):
    result = hpc("job", "submit", "--job-exclusive", "--exclusive", "--", "true")
    assert result.exit_code == 0, result.output
    spec = api.posted("/api/jobs")[0]
    assert spec["exclusive"] is True and spec["tasks"][0]["exclusive"] is True


def test_submit_job_exclusive_with_a_one_task_file_moves_its_task_into_tasks(
    api: StandIn, tmp_path
):
    path = tmp_path / "job.json"
    path.write_text('{"command": "true", "exclusive": true, "name": "n"}')
    result = hpc("job", "submit", "--job-exclusive", "--file", str(path))
    assert result.exit_code == 0, result.output
    spec = api.posted("/api/jobs")[0]
    assert spec["exclusive"] is True and spec["name"] == "n"
    assert spec["tasks"][0]["exclusive"] is True and "command" not in spec


def test_submit_help_names_both_flags():
    out = hpc("job", "submit", "--help").stdout
    assert "--job-exclusive" in out and "--exclusive" in out


def test_job_view_shows_exclusive():
    console = Console(width=120, record=True)
    console.print(job_detail({"id": 3, "state": "Queued", "exclusive": True}))
    rows = [line.split(None, 1) for line in console.export_text().splitlines()]
    assert ["Exclusive", "job: no other job's task on its nodes"] in [
        [r[0], r[1].strip()] for r in rows if len(r) == 2
    ]
    console = Console(width=120, record=True)
    console.print(job_detail({"id": 3, "state": "Queued", "exclusive": False}))
    assert "Exclusive" not in console.export_text()
