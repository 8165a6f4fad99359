"""A task's own stdout / stderr files (``--stdout`` / ``--stderr``, Slurm's --output / --error): the CLI sends the fields and checks
them first; and end to end, a sweep writes its files through real agents.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hpc.localcluster import LocalCluster, hpc_command
from hpc.spec import build_spec
from tests.cli_fixtures import StandIn, assert_one_error_line, hpc

# --- the CLI --------------------------------------------------------------------------------


def test_build_spec_puts_the_paths_in_the_task() -> None:
    spec = build_spec(command="x", stdout="o-%j", stderr="e-%j")
    assert spec["tasks"][0]["stdout"] == "o-%j"
    assert spec["tasks"][0]["stderr"] == "e-%j"
    assert "stdout" not in build_spec(command="x")["tasks"][0]


def test_cli_submit_sends_stdout_and_stderr(api: StandIn) -> None:
    result = hpc(
        "job", "submit", "--sweep", "1-3", "--workdir", "/w",
        "--stdout", "o-%j-%a", "--stderr", "o-%j-%a", "--", "echo hi",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [task] = api.posted("/api/jobs")[0]["tasks"]
    assert (task["stdout"], task["stderr"], task["workDir"]) == ("o-%j-%a", "o-%j-%a", "/w")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--stdout", "o-%z", "--", "x"], ["'--stdout'", "unknown placeholder %z"]),
        (["--stderr", "e-%a", "--", "x"], ["'--stderr'", "%a is the sweep index"]),
        (["--file", "job.json", "--stdout", "o"], ["--file", "put --stdout in the file"]),
    ],
)
def test_cli_refuses_bad_paths_before_sending(
    api: StandIn,
    args: list[str],
    fragments: list[str],
) -> None:
    assert_one_error_line(hpc("job", "submit", *args), *fragments)
    assert api.posted("/api/jobs") == []


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.e2e
def test_end_to_end_a_sweep_writes_its_files_and_a_missing_folder_fails_the_task(
    tmp_path: Path,
) -> None:
    """`hpc up` with a real agent process; submitted with the CLI, as a user does."""
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    with LocalCluster(tmp_path / "hpc", nodes=1, cores=2) as cluster:
        submitted = subprocess.run(
            [
                *hpc_command(), "job", "submit", "--sweep", "1-3", "--workdir", str(work),
                "--stdout", "logs/%j-%a.txt", "--stderr", "logs/%j-%a.txt",
                "--", 'echo "out $HPC_SWEEP_INDEX"; echo "err $HPC_SWEEP_INDEX" >&2',
            ],
            env=cluster.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = int(submitted.stdout)
        assert cluster.wait_job(job_id)["state"] == "Finished"
        for i in (1, 2, 3):
            assert (work / "logs" / f"{job_id}-{i}.txt").read_text() == f"out {i}\nerr {i}\n"
        shown = [t["output"] for t in sorted(cluster.tasks(job_id), key=lambda t: t["id"])]
        assert shown == ["out 1\nerr 1\n", "out 2\nerr 2\n", "out 3\nerr 3\n"]
        assert {t["stdout"] for t in cluster.tasks(job_id)} == {"logs/%j-%a.txt"}

        failing = cluster.submit(
            {"command": "echo never", "workDir": str(work), "stdout": "nowhere/%j.out"}
        )
        assert cluster.wait_job(failing)["state"] == "Failed"
        [task] = cluster.tasks(failing)
        assert f"'{work}/nowhere'" in task["error"], task["error"]

        refused = cluster.http.post("/api/jobs", json={"command": "x", "stdout": "o-%q"})
        assert refused.status_code == 422
        assert "unknown placeholder %q" in refused.json()["error"]
