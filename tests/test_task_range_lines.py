"""What ``hpc task cancel | requeue`` print (``hpc/task_runs.py``): consecutive tasks with the
same outcome as one line per run (a probe's 1,000-task cancel printed 1,000 lines; scancel
prints none), a task alone still as its own line and each refusal on stderr."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_task_range_cancel_api.py

from __future__ import annotations

import pytest

from hpc.commands.tasks import _requeued_said, _state_said
from hpc.task_runs import run_lines
from tests.cli_fixtures import hpc
from tests.test_task_range_cancel_api import host, older  # noqa: F401 - fixtures


@pytest.fixture
def cli(host, monkeypatch):
    client, app = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", app.token)
    return client


def test_runs_are_one_line_each_refusals_break_them_and_a_task_alone_keeps_its_line(cli):
    spec = {"tasks": [{"command": "echo *", "sweep": "0-198:2"}], "held": True}
    job = cli.post("/api/jobs", json=spec).json()["id"]
    assert hpc("task", "cancel", f"{job}.5").stdout == f"task {job}.5 (sweep index 8): Canceled\n"
    out = hpc("task", "cancel", str(job), "1-10", "12", "20", "19")
    assert out.exit_code == 1
    assert out.stdout.splitlines() == [
        f"tasks {job}.1-4 (sweep index 0-6:2): Canceled (4)",
        f"tasks {job}.6-10 (sweep index 10-18:2): Canceled (5)",
        f"task {job}.12 (sweep index 22): Canceled",
        f"task {job}.20 (sweep index 38): Canceled",  # (given before 19: the order given)
        f"task {job}.19 (sweep index 36): Canceled",
    ]
    assert out.stderr.splitlines() == [
        f"task {job}.5: not canceled: task {job}.5 is already Canceled; nothing to cancel",
        "error: 1 of 13 tasks not canceled",
    ]
    plain = cli.post("/api/jobs", json={"tasks": [{"command": "true"}] * 3, "held": True})
    out = hpc("task", "cancel", str(plain.json()["id"]), "1-3")
    assert out.stdout == f"tasks {plain.json()['id']}.1-3: Canceled (3)\n"
    out = hpc("task", "requeue", str(plain.json()["id"]), "1-2")
    assert out.stdout == f"tasks {plain.json()['id']}.1-2: Queued (2)\n"
    cli.post(f"/api/jobs/{job}/cancel")


def test_an_older_control_plane_s_answers_are_said_by_run_too(older):
    out = hpc("task", "cancel", "9", "4-8", "2-3")
    assert out.exit_code == 1
    assert out.stdout.splitlines() == [
        "tasks 9.4-8 (sweep index 4-8): Canceled (5)",
        "task 9.2 (sweep index 2): Canceled",
    ]
    assert "task 9.3: not canceled: task 9.3 is already Finished" in out.stderr


def done(job: int, ids: range, state: str, step: int = 1, **more: object) -> list:
    return [(job, i, {"id": i, "state": state, "sweepIndex": i * step, **more}) for i in ids]


def test_a_run_is_cut_where_the_outcome_job_or_sweep_index_step_changes():
    tasks = [
        *done(7, range(1, 4), "Running"),
        *done(7, range(4, 6), "Canceled"),
        *done(7, range(6, 8), "Canceled", step=3),  # another sweep of the job: 18, 21
        (7, 8, {"id": 8, "state": "Canceled"}),  # no index: a task of the job's own
        (7, 9, {"id": 9, "state": "Canceled"}),
        *done(8, range(10, 11), "Canceled"),
    ]
    assert run_lines(tasks, _state_said) == [
        "tasks 7.1-3 (sweep index 1-3): Running (3, until their agents have killed them)",
        "tasks 7.4-5 (sweep index 4-5): Canceled (2)",
        "tasks 7.6-7 (sweep index 18-21:3): Canceled (2)",
        "tasks 7.8-9: Canceled (2)",
        "task 8.10 (sweep index 10): Canceled",
    ]
    assert run_lines(done(7, range(1, 2), "Running"), _state_said) == [
        "task 7.1 (sweep index 1): Running (until its agent has killed it)"
    ]


def test_a_requeues_dependents_are_said_of_each_task_or_of_each_in_a_run():
    back = [*done(7, range(1, 3), "Queued", requeuedDependents=2), *done(7, range(3, 4), "Queued")]
    assert run_lines(back, _requeued_said) == [
        "tasks 7.1-2 (sweep index 1-2): Queued (2, each with 2 dependent tasks requeued with it)",
        "task 7.3 (sweep index 3): Queued",
    ]
    assert run_lines(done(7, range(5, 6), "Queued", requeuedDependents=1), _requeued_said) == [
        "task 7.5 (sweep index 5): Queued (1 dependent task requeued with it)"
    ]


def test_a_run_of_tasks_refused_alike_is_one_line_and_a_lone_refusal_its_own() -> None:
    """A probe's second cancel of a 3,000-task range printed 3,001 lines on stderr."""
    from hpc.task_runs import refusal_lines

    refused = [
        (15, t, f"task 15.{t} is already Canceled; nothing to cancel") for t in range(1, 3001)
    ]
    refused += [(15, 3002, "task 15.3002 is already Finished; nothing to cancel")]
    refused += [(16, 7, "task 16.7 does not exist; job 16 has 6 tasks")]
    assert refusal_lines(refused, "canceled") == [
        "tasks 15.1-3000: not canceled: each is already Canceled; nothing to cancel (3,000)",
        "task 15.3002: not canceled: task 15.3002 is already Finished; nothing to cancel",
        "task 16.7: not canceled: task 16.7 does not exist; job 16 has 6 tasks",
    ]
