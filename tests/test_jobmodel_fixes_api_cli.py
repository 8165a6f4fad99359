"""Job-model probe findings, at the HTTP API (the real function_app.py) and the CLI: a hold
or a priority change of a Canceling job is a 409; a submit naming a Canceled prerequisite
job is a 409; a requeue says the job is still held; ``hpc job view`` shows the job's
settings and ``hpc job watch`` why it waits."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from hpc import render, watch
from hpc.client import ApiClient
from shared.domain.states import TaskState
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import StandIn, canned_job, hpc
from tests.helpers import error, wait_until


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("jobmodel-fixes")) as app:
        AgentDouble(app.cp, "n1", cores=4).register()
        with app.client() as client:
            yield client, app.cp


def canceling_job(client, cp) -> int:
    """A job whose task went to its node: canceled, it is Canceling until the agent reports."""
    job_id = int(client.post("/api/jobs", json={"command": "sleep 100"}).json()["id"])

    def placed() -> bool:
        cp.schedule_pass()
        return cp.get_task(job_id, 1).state is not TaskState.QUEUED

    wait_until(placed, timeout=10, what="the task to be dispatched")
    r = client.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "Canceling", r.text
    return job_id


def test_hold_and_priority_of_a_canceling_job_are_409_saying_why(served):
    client, cp = served
    job_id = canceling_job(client, cp)
    held = client.post(f"/api/jobs/{job_id}/hold")
    assert held.status_code == 409, held.text
    assert f"job {job_id} is Canceling" in error(held) and "cannot be held" in error(held)
    patched = client.patch(f"/api/jobs/{job_id}", json={"priority": "Highest"})
    assert patched.status_code == 409, patched.text
    assert "cannot be modified" in error(patched)
    job = client.get(f"/api/jobs/{job_id}").json()
    assert (job["held"], job["priority"]) == (False, 2000)
    requeue = client.post(f"/api/jobs/{job_id}/requeue")
    assert requeue.status_code == 409  # as before


def test_submit_naming_a_canceled_prerequisite_is_409_naming_it(served):
    client, _ = served
    spec = {"command": "true", "holdUntil": "2099-01-01T00:00:00Z"}  # never dispatched
    first = int(client.post("/api/jobs", json=spec).json()["id"])
    assert client.post(f"/api/jobs/{first}/cancel").json()["state"] == "Canceled"
    r = client.post("/api/jobs", json={"command": "true", "dependsOn": [first]})
    assert r.status_code == 409, r.text
    assert f"dependency job {first} ended Canceled" in error(r)
    assert f"hpc job requeue {first}" in error(r)
    anyway = {"command": "true", "dependsOn": [first], "runDependentsOnFailure": True}
    assert client.post("/api/jobs", json=anyway).status_code == 201


def test_a_requeue_answers_that_the_job_is_still_held(served):
    client, _ = served
    job_id = int(client.post("/api/jobs", json={"command": "true", "held": True}).json()["id"])
    assert client.post(f"/api/jobs/{job_id}/cancel").json()["state"] == "Canceled"
    r = client.post(f"/api/jobs/{job_id}/requeue")
    assert r.status_code == 200, r.text
    job = r.json()
    assert (job["state"], job["held"]) == ("Queued", True)
    assert job["pendingReason"] == f"held (hpc job release {job_id})"


# --- the CLI ----------------------------------------------------------------------------


def test_hpc_job_requeue_says_the_job_is_still_held(api: StandIn, monkeypatch) -> None:
    def requeue(self: ApiClient, job_id: int) -> dict[str, Any]:
        return canned_job(job_id, "Queued", held=True, pendingReason="held")

    monkeypatch.setattr(ApiClient, "requeue_job", requeue)
    result = hpc("job", "requeue", "21")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "job 21: Queued (held: hpc job release 21)"


def test_hpc_job_requeue_of_a_job_not_held_is_one_state(api: StandIn) -> None:
    result = hpc("job", "requeue", "21")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "job 21: Queued"


def shown(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_job_view_shows_the_settings_that_are_set() -> None:
    job = canned_job(
        5,
        maxConcurrent=2,
        maxRetries=1,
        dependsOn=[3, 4],
        runDependentsOnFailure=True,
        validExitCodes=[0, 3],
        held=True,
        holdUntil="2099-01-01T00:00:00Z",
        template="Short",
    )
    text = shown(render.job_detail(job))
    for row in (
        "Template          Short",
        "Max concurrent    2",
        "Max retries       1",
        "Depends on        jobs 3, 4 (runs even if they do not finish)",
        "Valid exit codes  0, 3",
        "Held              yes (hpc job release 5)",
        "Hold until        2099-01-01",
    ):
        assert row in text, text


def test_job_view_leaves_out_what_is_not_set() -> None:
    text = shown(render.job_detail(canned_job(5, maxConcurrent=None, dependsOn=[], held=False)))
    for label in ("Template", "Max concurrent", "Depends on", "Held", "Hold until", "Valid exit"):
        assert label not in text, text


class _Jobs:
    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers

    def get_job(self, job_id: int) -> dict[str, Any]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_watch_prints_why_the_job_waits() -> None:
    waiting = canned_job(113, taskCount=1, taskCounts={"Queued": 1})
    waiting["pendingReason"] = "held (hpc job release 113)"
    done = canned_job(113, "Finished", taskCount=1, taskCounts={"Finished": 1})
    out = io.StringIO()
    watch.watch_job(
        _Jobs([waiting, done]),  # type: ignore[arg-type]
        113,
        console=Console(file=out, force_terminal=False),
        interval_s=0,
        sleep=lambda s: None,
    )
    lines = out.getvalue().splitlines()
    assert lines[0] == "job 113 Queued: 0/1 ended  Queued 1  waiting: held (hpc job release 113)"
    assert "job 113 Finished: 1/1 ended  Finished 1" in lines  # no reason once it ends
