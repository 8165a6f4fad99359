"""A whole job's runtime limit (``jobRuntimeLimit``; HPC Pack's job RunTime, Slurm's --time
for a job), counted from its first task's start: past it no task of the job starts and the
reconciler cancels the job, saying why. The rule as a table, then through the control plane
(embedded store and bus, an agent double, a hand-driven clock), the API and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from hpc import render
from shared.domain import eligibility
from shared.domain.messages import CancelTask
from shared.domain.models import Job
from shared.domain.states import JobState, TaskState
from shared.errors import InvalidRequest
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import StandIn, assert_one_error_line, hpc
from tests.helpers import error, new_job
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures

T0 = datetime(2026, 1, 1, tzinfo=UTC)
R, Q, F = JobState.RUNNING, JobState.QUEUED, JobState.FINISHED


@pytest.mark.parametrize(
    ("limit", "state", "started", "now", "over"),
    [
        (None, R, T0, T0 + timedelta(days=9), False),  # no limit
        (60, Q, None, T0 + timedelta(days=9), False),  # not started: its wait does not count
        (60, R, T0, T0 + timedelta(seconds=59), False),
        (60, R, T0, T0 + timedelta(seconds=60), True),
        (60, Q, T0, T0 + timedelta(seconds=61), True),  # started, then all its tasks requeued
        (60, F, T0, T0 + timedelta(seconds=61), False),  # ended: nothing to cancel
    ],
)
def test_a_job_is_over_time_once_its_limit_ran_out_since_its_start(
    limit, state, started, now, over
):
    job = Job(id=1, state=state, job_runtime_limit=limit, start_time=started)
    reason = eligibility.over_time(job, now)
    assert (reason is not None) is over
    if over:
        assert reason == "job runtime limit 0:01:00 exceeded"
        assert eligibility.held_back(job, now=now, prerequisites={}) is not None


def test_a_job_past_its_limit_starts_no_more_tasks_and_is_canceled(cp, clock):  # noqa: F811
    agent = register(cp, "n1", cores=1)
    job = cp.submit(
        {"command": "w", "sweep": "1-3", "nodeGroups": ["OnPremNodes"], "jobRuntimeLimit": 60}
    )
    assert cp.get_job(job.id).job_runtime_limit == 60
    assert cp.schedule_pass() == 1
    [first] = agent.runs()
    agent.send(agent.started(first))
    clock.advance(30)
    agent.send(agent.ended(first, exit_code=0))
    assert cp.schedule_pass() == 1
    [second] = agent.runs()
    agent.send(agent.started(second))
    clock.advance(29)
    agent.send(agent.heartbeat(running=[f"{job.id}.{second.task_id}.0"]))
    cp.reconcile()
    assert cp.get_job(job.id).state is JobState.RUNNING  # 59 s since its start
    clock.advance(1)
    agent.send(agent.heartbeat(running=[f"{job.id}.{second.task_id}.0"]))
    cp.reconcile()
    after = cp.get_job(job.id)
    assert after.state is JobState.CANCELING
    assert after.error == "job runtime limit 0:01:00 exceeded"
    cancels = [m for m in agent.assignments() if isinstance(m, CancelTask)]
    assert [(c.task_id, c.attempt) for c in cancels] == [(second.task_id, 0)]
    agent.send(agent.ended(second, exit_code=None, canceled=True))
    done = cp.get_job(job.id)
    assert done.state is JobState.CANCELED and done.error == "job runtime limit 0:01:00 exceeded"
    states = sorted(t.state.value for t in cp.list_tasks(job.id))
    assert states == ["Canceled", "Canceled", "Finished"]


def test_no_task_starts_between_the_limit_and_the_reconcilers_run(cp, clock):  # noqa: F811
    agent = register(cp, "n1", cores=1)
    job = cp.submit(
        {"command": "w", "sweep": "1-2", "nodeGroups": ["OnPremNodes"], "jobRuntimeLimit": 10}
    )
    assert cp.schedule_pass() == 1
    [first] = agent.runs()
    agent.send(agent.started(first))
    clock.advance(10)
    agent.send(agent.ended(first, exit_code=0))
    assert cp.schedule_pass() == 0  # its time is up: the second task does not start
    [queued] = [t for t in cp.list_tasks(job.id) if t.state is TaskState.QUEUED]
    reason = cp.pending_reasons([queued])[(job.id, queued.id)]
    assert "job runtime limit 0:00:10 exceeded" in reason


def test_modify_sets_lengthens_or_removes_the_limit_and_refuses_bad_values(cp, clock):  # noqa: F811
    register(cp, "n1", cores=1)
    job = cp.submit({"command": "w", "nodeGroups": ["OnPremNodes"]})
    assert cp.modify_job(job.id, {"jobRuntimeLimit": 3600}).job_runtime_limit == 3600
    for bad in (0, -5, 1.5, True, "1:00:00", 10**12):
        with pytest.raises(InvalidRequest, match="jobRuntimeLimit is whole seconds"):
            cp.modify_job(job.id, {"jobRuntimeLimit": bad})
    assert cp.get_job(job.id).job_runtime_limit == 3600  # a bad value changed nothing
    assert cp.modify_job(job.id, {"jobRuntimeLimit": None}).job_runtime_limit is None


def test_a_requeued_job_counts_its_limit_from_its_new_start(cp, clock):  # noqa: F811
    agent = register(cp, "n1", cores=1)
    job = cp.submit({"command": "w", "nodeGroups": ["OnPremNodes"], "jobRuntimeLimit": 60})
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    agent.send(agent.started(run))
    clock.advance(61)
    agent.send(agent.heartbeat(running=[f"{job.id}.1.0"]))
    cp.reconcile()
    agent.assignments()
    agent.send(agent.ended(run, exit_code=None, canceled=True))
    assert cp.get_job(job.id).state is JobState.CANCELED
    clock.advance(3600)
    requeued = cp.requeue_job(job.id)
    assert requeued.state is JobState.QUEUED and requeued.start_time is None
    assert cp.schedule_pass() == 1  # not over time: its new run has not started


def test_the_api_takes_it_at_submit_and_in_a_patch(tmp_path) -> None:
    with served_app(tmp_path) as app, app.client() as api:
        AgentDouble(app.cp, "n1", cores=4).register()
        job_id = new_job(api, jobRuntimeLimit=7200)
        assert api.get(f"/api/jobs/{job_id}").json()["jobRuntimeLimit"] == 7200
        r = api.post("/api/jobs", json={"command": "x", "jobRuntimeLimit": "2 hours"})
        assert r.status_code == 422 and "jobRuntimeLimit" in error(r), r.text
        r = api.post("/api/jobs", json={"command": "x", "jobRuntimeLimit": "2h"})  # units
        assert r.status_code == 201 and r.json()["jobRuntimeLimit"] == 7200, r.text
        r = api.post("/api/jobs", json={"tasks": [{"command": "x", "jobRuntimeLimit": 5}]})
        assert r.status_code == 422 and "jobRuntimeLimit is the job's" in error(r), r.text
        r = api.patch(f"/api/jobs/{job_id}", json={"jobRuntimeLimit": 60})
        assert r.status_code == 200 and r.json()["jobRuntimeLimit"] == 60
        r = api.patch(f"/api/jobs/{job_id}", json={"jobRuntimeLimit": 0})
        assert r.status_code == 422 and "jobRuntimeLimit is whole seconds" in error(r), r.text
        assert api.get(f"/api/jobs/{job_id}").json()["jobRuntimeLimit"] == 60


def test_the_cli_sends_it_and_the_view_shows_it(api: StandIn) -> None:
    assert hpc("job", "submit", "--job-runtime-limit", "2:00:00", "--", "x").exit_code == 0
    assert api.requests[-1]["body"]["jobRuntimeLimit"] == 7200
    assert "jobRuntimeLimit" not in api.requests[-1]["body"]["tasks"][0]
    assert hpc("job", "modify", "3", "--job-runtime-limit", "1-00:00:00").exit_code == 0
    assert api.requests[-1]["body"] == {"jobRuntimeLimit": 86400}
    assert hpc("job", "modify", "3", "--job-runtime-limit", "none").exit_code == 0
    assert api.requests[-1]["body"] == {"jobRuntimeLimit": None}
    bad = hpc("job", "modify", "3", "--job-runtime-limit", "soon")
    assert_one_error_line(bad, "--job-runtime-limit")
    bad = hpc("job", "submit", "--job-runtime-limit", "0", "--", "x")
    assert_one_error_line(bad, "--job-runtime-limit")
    shown = render.job_detail({"id": 3, "state": "Running", "jobRuntimeLimit": 5400})
    console = Console(width=120, record=True)
    console.print(shown)
    assert "Job runtime limit  1:30:00 from its start" in console.export_text()


def test_a_templates_max_holds_in_a_later_modify_and_its_default_applies(cp, clock):  # noqa: F811
    from shared.usecases import templates

    register(cp, "n1", cores=1)
    templates.put(cp.deps, "Day", {"jobRuntimeLimit": 3600, "maxJobRuntimeLimit": 86400})
    job = cp.submit({"command": "w", "template": "Day", "nodeGroups": ["OnPremNodes"]})
    assert cp.get_job(job.id).job_runtime_limit == 3600  # the template's default
    assert cp.modify_job(job.id, {"jobRuntimeLimit": 86400}).job_runtime_limit == 86400
    for beyond in (86401, None):
        with pytest.raises(InvalidRequest, match="allows jobRuntimeLimit at most 86400 s"):
            cp.modify_job(job.id, {"jobRuntimeLimit": beyond})
    assert cp.get_job(job.id).job_runtime_limit == 86400
