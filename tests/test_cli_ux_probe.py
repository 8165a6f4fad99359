"""A newcomer's probe of the CLI, against the stand-in control plane of tests/cli_fixtures.py:

- ``hpc job submit mpirun -np 4 ./app`` (no ``--``) said "No such option: -n" and nothing more;
- ``hpc task view 16.2`` (the id as the CLI prints it) was refused (cancel and requeue:
  tests/test_cli_ux_cluster.py);
- ``hpc sim replay TRACE --idle-policy keep`` without ``--elastic`` ran a plain replay;
- a refused HPC_TOKEN was reported as if the token came from HPC_HOME/admin.token;
- ``--runtime-limit`` did not say a bare number is seconds (Slurm's --time: minutes);
- "newest 1 jobs shown".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_fixtures import TOKEN, StandIn, assert_one_error_line, hpc

# --- a command without `--` ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "example"),
    [
        (["mpirun", "-np", "4", "./app"], "hpc job submit -- mpirun -np 4 ./app"),
        (
            ["--cores", "2", "mpirun", "-np", "4", "./app"],
            "hpc job submit --cores 2 -- mpirun -np 4 ./app",
        ),
        (["--name=x", "ls", "-la"], "hpc job submit --name=x -- ls -la"),
    ],
)
def test_an_option_of_the_command_without_dashes_says_to_put_it_after_them(
    api: StandIn, args: list[str], example: str
) -> None:
    result = hpc("job", "submit", *args)
    assert result.exit_code == 2
    assert_one_error_line(
        result, "No such option", "after `--`", "hpc job submit [OPTIONS] -- COMMAND...", example
    )
    assert api.requests == []


def test_an_unknown_option_of_ours_is_still_a_plain_typo(api: StandIn) -> None:
    for args in (["--bogus", "x"], ["--nme", "x", "--", "echo"]):
        result = hpc("job", "submit", *args)
        assert_one_error_line(result, "No such option", "hpc job submit --help")
        assert "after `--`" not in result.stderr


def test_a_command_after_dashes_is_submitted_with_its_options(api: StandIn) -> None:
    result = hpc("job", "submit", "--cores", "2", "--", "mpirun", "-np", "4", "./app")
    assert result.exit_code == 0, result.stderr
    assert api.posted("/api/jobs")[-1]["tasks"][0]["command"] == "mpirun -np 4 ./app"


# --- JOB.TASK -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["view", "output"])
def test_a_task_is_named_as_job_dot_task_or_as_two_ids(api: StandIn, command: str) -> None:
    dotted = hpc("task", command, "16.2")
    assert dotted.exit_code == 0, dotted.stderr
    two = hpc("task", command, "16", "2")
    assert two.exit_code == 0, two.stderr
    assert dotted.stdout == two.stdout
    paths = [r["path"] for r in api.requests]
    assert len(paths) == 2 and paths[0] == paths[1]
    assert paths[0].startswith("/api/jobs/16/tasks/2")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["1."], ["'1.' is not JOB.TASK", "16.2"]),
        ([".2"], ["'.2' is not JOB.TASK"]),
        (["1.2.3"], ["'1.2.3' is not JOB.TASK"]),
        (["a.b"], ["'a.b' is not JOB.TASK", "whole numbers"]),
        (["1.0"], ["'1.0' is not JOB.TASK", "whole numbers from 1"]),
        (["1.2", "3"], ["names the task already", "not both"]),
        (["1"], ["name the task", "JOB TASK or JOB.TASK", "1.1"]),
        (["x", "2"], ["whole numbers", "'x'"]),
        (["1", "y"], ["whole numbers", "'y'"]),
    ],
)
def test_a_malformed_task_is_refused_in_one_line_before_sending(
    api: StandIn, args: list[str], fragments: list[str]
) -> None:
    result = hpc("task", "view", *args)
    assert result.exit_code == 2
    assert_one_error_line(result, *fragments)
    assert api.requests == []


def test_a_negative_task_id_still_says_what_an_id_is(api: StandIn) -> None:
    assert_one_error_line(hpc("task", "view", "1", "-2"), "ids are whole numbers from 1")


# --- sim replay: the elastic options ------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        ["--idle-policy", "keep"],
        ["--boot-delay", "60"],
        ["--timer", "60"],
        ["--scale-down-delay", "600"],
        ["--frontier"],
        ["--timer", "0"],  # the default's value, but given: the user meant an elastic replay
    ],
)
def test_elastic_options_without_elastic_are_refused(tmp_path: Path, flags: list[str]) -> None:
    trace = tmp_path / "one.swf"
    trace.write_text("1 0 0 100 1 -1 -1 1 100\n")
    result = hpc("sim", "replay", str(trace), *flags, "--json")
    assert result.exit_code == 2
    assert_one_error_line(result, flags[0], "--elastic")
    assert result.stdout == ""


def test_elastic_options_name_every_one_given(tmp_path: Path) -> None:
    trace = tmp_path / "one.swf"
    trace.write_text("1 0 0 100 1 -1 -1 1 100\n")
    result = hpc("sim", "replay", str(trace), "--timer", "60", "--frontier")
    assert_one_error_line(result, "--timer, --frontier: they need --elastic")


def test_a_plain_replay_and_an_elastic_one_still_run(tmp_path: Path) -> None:
    trace = tmp_path / "one.swf"
    trace.write_text("1 0 0 100 1 -1 -1 1 100\n")
    assert hpc("sim", "replay", str(trace), "--json").exit_code == 0
    elastic = hpc("sim", "replay", str(trace), "--elastic", "--idle-policy", "keep", "--json")
    assert elastic.exit_code == 0, elastic.stderr


# --- where a refused token came from ------------------------------------------------------


def test_a_refused_hpc_token_is_named_as_the_source(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_TOKEN", "garbage")
    assert_one_error_line(
        hpc("job", "list"), "invalid token", "HPC_TOKEN environment variable", "overrides"
    )


def test_a_refused_token_file_is_named_by_its_path(
    api: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HPC_TOKEN")
    home = tmp_path / "home"
    home.mkdir()
    (home / "admin.token").write_text("stale\n")
    result = hpc("job", "list")
    assert_one_error_line(result, "invalid token", f"read from {home / 'admin.token'}")
    assert "HPC_TOKEN environment" not in result.stderr
    (home / "admin.token").write_text(TOKEN)
    assert hpc("job", "list").exit_code == 0


# --- help and grammar ---------------------------------------------------------------------


def test_runtime_limit_help_says_a_bare_number_is_seconds(api: StandIn) -> None:
    help_text = " ".join(hpc("job", "submit", "--help").stdout.replace("│", " ").split())
    assert "bare number is seconds" in help_text and "90 is 90 s" in help_text


def test_one_task_shown_is_singular(api: StandIn) -> None:
    assert "first 1 task shown;" in hpc("task", "list", "5", "--limit", "1").stderr
    assert "first 2 tasks shown;" in hpc("task", "list", "5", "--limit", "2").stderr
