"""A newcomer's probe of the CLI, on the served function app (the real rules, no nodes, so
its one node drained, so every job stays Queued):

- ``hpc job cancel 1 2 3`` was refused ("unexpected extra argument"): job actions take a list,
  as Slurm's scancel does, go on past a refused job and exit 1 if any was;
- ``hpc task cancel 16.2`` / ``requeue 16.2``: a task as the CLI prints it;
- ``hpc job submit`` lacked ``--hold``, ``--begin`` and ``--max-retries``;
- ``hpc job view`` did not show the runtime limit;
- "newest 1 jobs shown".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hpc.commands import jobs
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    """The served app with the CLI pointed at it (admin token) and jobs 1 and 2 Queued: its
    one node is drained, so that nothing starts."""
    with served_app(tmp_path / "home") as app, app.client() as client:
        assert AgentDouble(app.cp, "n1").register().accepted
        assert client.post("/api/nodes/n1/drain").status_code == 200
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        for _ in range(2):
            assert client.post("/api/jobs", json={"command": "true"}).status_code == 201
        yield client


def job(client: httpx.Client, job_id: int) -> dict:
    return client.get(f"/api/jobs/{job_id}").json()


# --- job actions take several ids ---------------------------------------------------------


def test_job_cancel_takes_several_ids_and_goes_on_past_a_refused_one(
    cluster: httpx.Client,
) -> None:
    result = hpc("job", "cancel", "1", "999", "2")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["job 1: Canceled", "job 2: Canceled"]
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("job 999: not canceled:") and "999" in lines[0]
    assert lines[-1] == "error: 1 of 3 jobs not canceled"
    assert job(cluster, 1)["state"] == job(cluster, 2)["state"] == "Canceled"


def test_job_hold_release_and_requeue_take_several_ids(cluster: httpx.Client) -> None:
    held = hpc("job", "hold", "1", "2")
    assert held.exit_code == 0, held.stderr
    assert job(cluster, 1)["held"] and job(cluster, 2)["held"]
    assert [line for line in held.stdout.splitlines() if line.startswith("job ")] == [
        "job 1: Queued",
        "job 2: Queued",
    ]
    released = hpc("job", "release", "1", "2")
    assert released.exit_code == 0, released.stderr
    assert not job(cluster, 1)["held"] and not job(cluster, 2)["held"]
    assert hpc("job", "cancel", "1", "2").exit_code == 0
    requeued = hpc("job", "requeue", "1", "2")
    assert requeued.exit_code == 0, requeued.stderr
    assert requeued.stdout.splitlines() == ["job 1: Queued", "job 2: Queued"]


def test_one_refused_job_is_still_one_error_line(cluster: httpx.Client) -> None:
    result = hpc("job", "cancel", "999")
    assert_one_error_line(result, "999")
    assert "of 1 job" not in result.stderr


def test_an_error_that_is_not_about_the_job_stops_at_once(
    cluster: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_TOKEN", "garbage")
    assert_one_error_line(hpc("job", "cancel", "1", "2"), "invalid token", "HPC_TOKEN")
    assert job(cluster, 1)["state"] == job(cluster, 2)["state"] == "Queued"


# --- a task as JOB.TASK -------------------------------------------------------------------


def test_task_cancel_and_requeue_take_job_dot_task(cluster: httpx.Client) -> None:
    canceled = hpc("task", "cancel", "1.1")
    assert canceled.exit_code == 0, canceled.stderr
    assert canceled.stdout.strip() == "task 1.1: Canceled"
    requeued = hpc("task", "requeue", "1.1")
    assert requeued.exit_code == 0, requeued.stderr
    assert requeued.stdout.strip() == "task 1.1: Queued"
    assert hpc("task", "cancel", "2", "1").stdout.strip() == "task 2.1: Canceled"


# --- submit --hold, --begin, --max-retries ------------------------------------------------


def test_submit_hold_submits_a_held_job(cluster: httpx.Client) -> None:
    result = hpc("job", "submit", "--hold", "--", "true")
    assert result.exit_code == 0, result.stderr
    held = job(cluster, int(result.stdout))
    assert held["held"] is True and held["state"] == "Queued"
    assert hpc("job", "release", result.stdout.strip()).exit_code == 0


def test_submit_begin_and_max_retries_go_into_the_spec(cluster: httpx.Client) -> None:
    result = hpc("job", "submit", "--begin", "2099-12-01T14:00", "--max-retries", "0", "--", "true")
    assert result.exit_code == 0, result.stderr
    submitted = job(cluster, int(result.stdout))
    local = datetime(2099, 12, 1, 14, 0).astimezone()  # no zone: this machine's local time
    assert datetime.fromisoformat(submitted["holdUntil"]) == local
    assert submitted["maxRetries"] == 0 and not submitted["held"]


def test_submit_begin_takes_now_plus_a_duration(cluster: httpx.Client) -> None:
    before = datetime.now(UTC)
    result = hpc("job", "submit", "--begin", "now+1:00:00", "--", "true")
    assert result.exit_code == 0, result.stderr
    until = datetime.fromisoformat(job(cluster, int(result.stdout))["holdUntil"])
    until = until if until.tzinfo else until.replace(tzinfo=UTC)
    assert before + timedelta(minutes=59) < until < before + timedelta(minutes=61)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--begin", "soon"], "HH:MM[:SS] (the next such time), tomorrow, or now+DURATION"),
        (["--begin", "now"], "leave --begin out"),
        (["--begin", "25:00"], "not a time of day"),
        (["--begin", "now+soon"], "after now+ comes a duration"),
        (["--max-retries", "-1"], "--max-retries"),
        (["--max-retries", "101"], "--max-retries"),
    ],
)
def test_submit_refuses_a_bad_begin_or_max_retries(
    cluster: httpx.Client, flags: list[str], fragment: str
) -> None:
    result = hpc("job", "submit", *flags, "--", "true")
    assert result.exit_code == 2
    assert_one_error_line(result, fragment)


def test_job_settings_may_go_beside_a_file_but_its_tasks_are_the_files(
    cluster: httpx.Client, tmp_path: Path
) -> None:
    """As HPC Pack's ``job submit /jobfile:job.xml /priority:Highest``: job-level flags go
    over the file's settings; what makes its tasks stays the file's."""
    spec = tmp_path / "job.json"
    spec.write_text('{"command": "true", "priority": "Lowest", "maxRetries": 5}')
    refused = hpc("job", "submit", "--file", str(spec), "--cores", "2", "--sweep", "1-3")
    assert_one_error_line(refused, "put --cores, --sweep in the file instead")
    before = datetime.now(UTC)
    given = hpc(
        "job", "submit", "--file", str(spec), "--hold", "--max-retries", "1",
        "--priority", "Highest", "--name", "over", "--begin", "now+1:00:00",
    )  # fmt: skip
    assert given.exit_code == 0, given.stderr
    submitted = job(cluster, int(given.stdout))
    assert submitted["held"] is True and submitted["maxRetries"] == 1
    assert submitted["priority"] == 4000 and submitted["name"] == "over"
    until = datetime.fromisoformat(str(submitted["holdUntil"]).replace("Z", "+00:00"))
    assert timedelta(minutes=59) < until - before < timedelta(minutes=61)


# --- job view shows the runtime limit -----------------------------------------------------


def test_job_view_shows_the_runtime_limit_when_set(cluster: httpx.Client) -> None:
    limited = hpc("job", "submit", "--sweep", "1-3", "--runtime-limit", "90", "--", "true")
    assert limited.exit_code == 0, limited.stderr
    view = hpc("job", "view", limited.stdout.strip())
    assert view.exit_code == 0, view.stderr
    assert "Runtime limit" in view.stdout and "0:01:30" in view.stdout
    assert "Runtime limit" not in hpc("job", "view", "1").stdout


# --- grammar ------------------------------------------------------------------------------


def test_one_job_shown_is_singular(cluster: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "newest 1 job shown;" in hpc("job", "list", "--limit", "1").stderr
    monkeypatch.setattr(jobs, "JOB_PAGE", 1)
    assert "newest 1 job shown;" in hpc("job", "list", "--limit", "1").stderr
