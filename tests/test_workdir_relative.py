"""A relative workDir sent through the API is taken from the home of the user the task runs
as (the agent's; --run-as-owner: the owner's), not from the agent's own working directory
(under `hpc up` the source checkout: a probe's "." ran there). The CLI sends absolute ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.taskenv import work_dir
from tests.agent_fixtures import run_task


@pytest.mark.parametrize(
    ("given", "home", "cwd"),
    [
        ("runs/1", "/home/ann", "/home/ann/runs/1"),
        (".", "/home/ann", "/home/ann/."),
        ("/data/run", "/home/ann", "/data/run"),  # absolute: as given
        (None, "/home/ann", "/home/ann"),  # none: the home too (it was the agent's folder)
        (None, None, None),
        ("runs/1", None, "runs/1"),  # --run-as-owner: its own rule takes the owner's home
    ],
)
def test_the_rule(given: str | None, home: str | None, cwd: str | None) -> None:
    assert work_dir(given, home=home) == cwd


def test_a_task_runs_in_its_relative_workdir_under_home(
    agent, cp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / "runs" / "1").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    cp.send(run_task(1, "pwd", work_dir="runs/1"))
    ended = cp.ended(1)
    assert (ended.exit_code, ended.output) == (0, f"{home}/runs/1\n")


def test_a_task_without_workdir_runs_in_home(
    agent, cp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe: `POST /api/jobs {"command": "pwd"}` ran in the agent's folder (under hpc up
    the source checkout, which a user's task could write over)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    cp.send(run_task(1, "pwd"))
    assert cp.ended(1).output == f"{tmp_path}\n"
