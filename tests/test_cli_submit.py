"""``hpc job submit``: the spec it builds from options, a file or stdin, and what it prints.

Against the stand-in control plane of tests/cli_fixtures.py (canned JSON, recorded requests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli_fixtures import TOKEN, StandIn, assert_one_error_line, hpc

# --- submit -------------------------------------------------------------------


def test_submit_builds_the_spec_from_options_and_prints_only_the_id(api: StandIn) -> None:
    result = hpc(
        "job", "submit", "--name", "sweep", "--nodegroup", "OnPremNodes", "--cores", "2",
        "--priority", "abovenormal", "--sweep", "1-10:2", "--workdir", "/tmp",
        "--env", "A=1", "--env", "B=x=y", "--", "python", "-c", "print(1)",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "7\n"
    assert "hpc job watch 7" in result.stderr
    assert api.posted("/api/jobs") == [
        {
            "name": "sweep",
            "nodeGroups": ["OnPremNodes"],
            "priority": "AboveNormal",
            "tasks": [
                {
                    "command": "python -c 'print(1)'",
                    "cores": 2,
                    "sweep": "1-10:2",
                    "workDir": "/tmp",
                    "env": {"A": "1", "B": "x=y"},
                }
            ],
        }
    ]
    assert api.requests[-1]["auth"] == f"Bearer {TOKEN}"


def test_submit_takes_node_group_spelled_as_the_other_commands_do(api: StandIn) -> None:
    result = hpc("job", "submit", "--node-group", "AzureNodes", "--nodegroup", "B", "--", "true")
    assert result.exit_code == 0, result.output
    assert api.posted("/api/jobs")[0]["nodeGroups"] == ["AzureNodes", "B"]


def test_submit_takes_a_single_argument_command_as_is(api: StandIn) -> None:
    result = hpc("job", "submit", "--priority", "3500", "--", "echo $HPC_SWEEP_INDEX")
    assert result.exit_code == 0, result.output
    cwd = os.getcwd()  # Slurm's habit: the task runs where it was submitted from
    assert api.posted("/api/jobs") == [
        {
            "priority": 3500,
            "tasks": [{"command": "echo $HPC_SWEEP_INDEX", "cores": 1, "workDir": cwd}],
        }
    ]


def _run_here(spec: dict) -> dict:
    """The spec as sent: a task that names no workDir runs where hpc job submit was run."""
    return {**spec, "tasks": [{**t, "workDir": os.getcwd()} for t in spec["tasks"]]}


def test_submit_file_and_stdin_send_the_spec_as_written_but_where_to_run(
    api: StandIn, tmp_path: Path
) -> None:
    spec = {"name": "f", "priority": "Highest", "tasks": [{"command": "true", "cores": 1}]}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    assert hpc("job", "submit", "--file", str(path)).exit_code == 0
    assert hpc("job", "submit", "--file", "-", input=json.dumps(spec)).exit_code == 0
    assert api.posted("/api/jobs") == [_run_here(spec)] * 2


def test_a_job_file_with_a_byte_order_mark_is_read(api: StandIn, tmp_path: Path) -> None:
    """Notepad and PowerShell's Out-File -Encoding utf8 write one (a probe's was refused)."""
    spec = {"name": "bom", "tasks": [{"command": "echo bom", "cores": 1}]}
    path = tmp_path / "job.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(spec).encode())
    result = hpc("job", "submit", "--file", str(path))
    assert result.exit_code == 0, result.output
    piped = hpc("job", "submit", "--file", "-", input="\ufeff" + json.dumps(spec))
    assert piped.exit_code == 0, piped.output
    assert api.posted("/api/jobs") == [_run_here(spec)] * 2


def test_a_files_job_settings_give_way_to_the_flags_beside_it(api: StandIn, tmp_path: Path) -> None:
    spec = {"name": "f", "priority": "Lowest", "tasks": [{"command": "true", "minMemoryMb": 9}]}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    flags = ("--priority", "Highest", "--nodegroup", "G", "--runtime-limit", "1:00")
    more = ("--min-memory", "2G", "--depends-on", "3", "--run-dependents-on-failure")
    assert hpc("job", "submit", "--file", str(path), *flags, *more).exit_code == 0
    assert api.posted("/api/jobs") == [
        {
            **_run_here(spec),
            "priority": "Highest",
            "nodeGroups": ["G"],
            "runtimeLimit": 60,
            "minMemoryMb": 2048,  # the job's: a task's own stays
            "dependsOn": [3],
            "runDependentsOnFailure": True,
        }
    ]


def test_env_with_a_name_alone_passes_this_shells_value_as_slurms_export(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user probe: ``--env A`` was refused; Slurm's ``--export=A`` passes A on."""
    monkeypatch.setenv("PROBE_A", "7=x")
    monkeypatch.delenv("PROBE_UNSET", raising=False)
    result = hpc("job", "submit", "--env", "PROBE_A", "--env", "B=2", "--", "true")
    assert result.exit_code == 0, result.output
    assert api.posted("/api/jobs")[-1]["tasks"][0]["env"] == {"PROBE_A": "7=x", "B": "2"}
    unset = hpc("job", "submit", "--env", "PROBE_UNSET", "--", "true")
    assert unset.exit_code == 2 and "is not set in this shell" in unset.stderr


def test_submit_json_prints_the_created_job(api: StandIn) -> None:
    result = hpc("job", "submit", "--json", "--", "true")
    assert json.loads(result.stdout)["id"] == 7


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--sweep", "1-"), "START-END[:STEP]"),
        (("--sweep", "9-1"), "below its start"),
        (("--env", "NOEQUALS"), "KEY=VALUE"),
        (("--env", "1X=2"), "not a valid variable name"),
        (("--priority", "urgent"), "AboveNormal"),
        (("--priority", "5000"), "0-4000"),
        (("--file", "job.json", "--cores", "2"), "--cores"),
        ((), "give the command after --"),
    ],
)
def test_bad_options_are_rejected_locally_in_one_line(
    api: StandIn, args: tuple[str, ...], fragment: str
) -> None:
    result = hpc("job", "submit", *args, *(["--", "echo"] if args and "--file" not in args else []))
    assert_one_error_line(result, fragment)
    assert result.exit_code == 2
    assert api.posted("/api/jobs") == []
