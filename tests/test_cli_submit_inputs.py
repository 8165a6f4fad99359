"""Third probe, ``hpc job submit``: a relative ``--workdir`` (or ``workDir`` in a ``--file``
spec) is sent absolute from the submit directory, as Slurm's ``--chdir`` (it was sent as
given, and the agent took it from its own directory); ``--runtime-limit`` takes Slurm's
``D-HH:MM:SS``, the form ``hpc task view`` shows a day-long limit in; ``--nodegroup A,B``
names two groups.

Against the stand-in control plane of tests/cli_fixtures.py (recorded requests).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpc.spec import resolve_work_dirs
from shared.domain.durations import format_duration, parse_duration
from tests.cli_fixtures import StandIn, assert_one_error_line, hpc


def _task(api: StandIn) -> dict:
    [spec] = api.posted("/api/jobs")
    [task] = spec["tasks"]
    return task


@pytest.mark.parametrize(
    ("given", "sent"),
    [(".", ""), ("relative/dir", "relative/dir"), ("./a/../b", "b"), ("/abs/dir", None)],
)
def test_a_relative_workdir_is_sent_from_the_submit_directory(
    api: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, sent: str | None
) -> None:
    submit_dir = tmp_path / "x"
    submit_dir.mkdir()
    monkeypatch.chdir(submit_dir)
    result = hpc("job", "submit", "--workdir", given, "--", "pwd")
    assert result.exit_code == 0, result.output
    expected = "/abs/dir" if sent is None else str((submit_dir / sent) if sent else submit_dir)
    assert _task(api)["workDir"] == expected


def test_no_workdir_is_still_the_submit_directory(
    api: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert hpc("job", "submit", "--", "pwd").exit_code == 0
    assert _task(api)["workDir"] == str(tmp_path)


def test_a_file_specs_relative_workdir_is_taken_from_the_submit_directory(
    api: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.json").write_text(json.dumps({"command": "pwd", "workDir": "runs/1"}))
    many = {
        "name": "many",
        "tasks": [
            {"command": "a", "workDir": "rel"},
            {"command": "b", "workDir": "/abs"},
            {"command": "c"},  # none: the submit directory, as `-- cmd` (it was the agent's home)
        ],
    }
    (tmp_path / "many.json").write_text(json.dumps(many))
    assert hpc("job", "submit", "--file", "one.json").exit_code == 0
    assert hpc("job", "submit", "--file", "-", input=json.dumps(many)).exit_code == 0
    one, sent = api.posted("/api/jobs")
    assert one == {"command": "pwd", "workDir": str(tmp_path / "runs" / "1")}
    assert sent == {
        "name": "many",
        "tasks": [
            {"command": "a", "workDir": str(tmp_path / "rel")},
            {"command": "b", "workDir": "/abs"},
            {"command": "c", "workDir": str(tmp_path)},
        ],
    }


def test_a_file_spec_without_workdir_runs_where_submitted_or_in_workdir_beside_it(
    api: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe: ``{"command": "pwd"}`` in a file ran in the agent's home where ``hpc job submit
    -- pwd`` ran in the submit directory, and ``--workdir`` beside ``--file`` was refused."""
    monkeypatch.chdir(tmp_path)
    one = json.dumps({"command": "pwd", "stdout": "out.txt"})
    assert hpc("job", "submit", "--file", "-", input=one).exit_code == 0
    assert api.posted("/api/jobs")[-1]["workDir"] == str(tmp_path)
    many = json.dumps(
        {
            "tasks": [
                {"command": "a"},
                {"command": "b", "workDir": "/abs"},
                {"command": "c", "workDir": "case/3"},
            ]
        }
    )
    result = hpc("job", "submit", "--file", "-", "--workdir", "runs", input=many)
    assert result.exit_code == 0, result.output
    assert [t["workDir"] for t in api.posted("/api/jobs")[-1]["tasks"]] == [
        str(tmp_path / "runs"),  # --workdir: the default of the tasks that name none
        "/abs",
        str(tmp_path / "runs" / "case" / "3"),  # a relative one: within the job's --workdir
    ]


def test_resolving_leaves_what_is_not_a_relative_path_to_the_server() -> None:
    spec = {"tasks": [{"command": "a", "workDir": 5}, {"command": "b", "workDir": " "}, "x"]}
    assert resolve_work_dirs(json.loads(json.dumps(spec)), "/base") == spec
    assert resolve_work_dirs({"work_dir": "w"}, "/base") == {"work_dir": "/base/w"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1-00:00:00", 86400),
        ("1-0", 86400),
        ("2-03", 2 * 86400 + 3 * 3600),
        ("1-02:30", 86400 + 2 * 3600 + 30 * 60),
        ("0-00:00:05", 5),
        (" 3-04:05:06 ", 3 * 86400 + 4 * 3600 + 5 * 60 + 6),
        # the forms taken before, unchanged
        ("90", 90),
        ("1:30", 90),
        ("24:00:00", 86400),
        ("1:02:00:00", 93600),
        ("90:00", 5400),  # the leading field may be any size
        ("100:00:00", 360000),
        ("1:23:59:59", 86400 + 86399),
    ],
)
def test_durations_take_slurms_days_form(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "1-",
        "-1:00",
        "1-2:3:4:5",
        "1-1-1",
        "a-1",
        "1-:",
        "1:2-3",
        "²",
        "0-0",
        "367-0",
        "1:99",
        "1:60:00",
        "1:00:60",
        "1-24",
        "1-2:60",
        "1:24:00:00",
        "2-3:4:75",
    ],
)
def test_durations_refuse_what_is_no_form(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [86400, 90061, 366 * 86400, 59, 7200])
def test_every_shown_duration_is_taken_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["99999999999999999999", "1:99999999999999999"])
def test_a_huge_duration_is_said_to_be_out_of_range(text: str) -> None:
    """A probe's 20-digit limit was told it was not a duration at all."""
    with pytest.raises(ValueError, match="give one from 1 second to 366 days"):
        parse_duration(text)


def test_submit_takes_the_runtime_limit_as_task_view_shows_it(api: StandIn) -> None:
    result = hpc("job", "submit", "--runtime-limit", "1-00:00:00", "--", "true")
    assert result.exit_code == 0, result.output
    assert api.posted("/api/jobs")[0]["runtimeLimit"] == 86400
    bad = hpc("job", "submit", "--runtime-limit", "1-xx", "--", "true")
    assert_one_error_line(bad, "D-H[:M[:S]]")
    assert len(api.posted("/api/jobs")) == 1


def test_nodegroup_takes_a_comma_separated_list(api: StandIn) -> None:
    result = hpc(
        "job", "submit", "--nodegroup", "OnPremNodes,AzureNodes", "--node-group", "Gpu",
        "--", "true",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.posted("/api/jobs")[0]["nodeGroups"] == ["OnPremNodes", "AzureNodes", "Gpu"]


@pytest.mark.parametrize("given", ["A,,B", "A,", ","])
def test_an_empty_group_name_in_a_list_is_refused_before_sending(api: StandIn, given: str) -> None:
    assert_one_error_line(hpc("job", "submit", "--nodegroup", given, "--", "true"), "--nodegroup")
    assert api.posted("/api/jobs") == []


def test_sbatchs_names_of_the_same_options_are_taken(
    api: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe's ``--mem 1G``, ``-J`` and ``--output`` were "No such option" (with
    "--file, --name" suggested) though the README calls them ours by Slurm's names."""
    monkeypatch.chdir(tmp_path)
    ours = ["--name", "n", "--min-memory", "1G", "--stdout", "o-%j", "--stderr", "e-%j"]
    ours += ["--cores", "2", "--nodes", "2", "--workdir", "w", "--depends-on", "7"]
    theirs = ["-J", "n", "--mem", "1G", "-o", "o-%j", "-e", "e-%j"]
    theirs += ["-c", "2", "-N", "2", "-D", "w", "-d", "afterok:7"]
    longer = ["--job-name", "n", "--mem", "1G", "--output", "o-%j", "--error", "e-%j"]
    longer += ["--cpus-per-task", "2", "--nodes", "2", "--chdir", "w", "--dependency", "7"]
    for flags in (ours, theirs, longer):
        result = hpc("job", "submit", *flags, "--", "true")
        assert result.exit_code == 0, result.output
    first, *others = api.posted("/api/jobs")[-3:]
    assert first["dependsOn"] == [7] and first["name"] == "n"
    assert all(other == first for other in others)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--time", "10"], "--time 10 is --runtime-limit 10:00"),
        (["-t", "10"], "-t 10 is --runtime-limit 10:00"),
        (["-n", "4"], "--sweep START-END"),
        (["--partition", "AzureNodes"], "--nodegroup G"),
        (["--export", "A=1"], "--env K=V"),
    ],
)
def test_sbatch_options_taken_in_another_form_say_which(
    api: StandIn, flags: list[str], says: str
) -> None:
    """Slurm's --time counts minutes where our bare number is seconds: not taken, explained."""
    result = hpc("job", "submit", *flags, "--", "true")
    assert_one_error_line(result, f"No such option: {flags[0]}", says)
    assert result.exit_code == 2 and api.requests == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("1d12h", 129600), ("45s", 45), ("2H", 7200)],
)
def test_durations_take_units(text: str, seconds: int) -> None:
    """A probe's --runtime-limit 2h was refused while --begin now+2hours was taken."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["h", "0h", "2h30", "30m2h", "367d", "2 h", "1.5h"])
def test_durations_with_units_refuse_what_is_not_one(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
