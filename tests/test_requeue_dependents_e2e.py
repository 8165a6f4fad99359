"""The user probe on `hpc up` with a real agent, through the CLI: a job file whose ``prep`` runs
``test -f flag``, ``work`` (a sweep 1-2) depends on it and ``sum`` on ``work``. prep fails and
its dependents are canceled; after ``touch flag; hpc task requeue J 1`` the dependents come
back with it and the job Finishes (before: they stayed Canceled and the job ended "Failed: 3
of 4 tasks canceled"). A dependent *job* stays Canceled, and the requeue says so and how to
requeue it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpc.localcluster import LocalCluster, hpc_command

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("requeue-deps") / "hpc", nodes=1, cores=2)
    c.start()
    yield c
    c.stop()


def hpc(cluster: LocalCluster, *args: str) -> str:
    done = subprocess.run([*hpc_command(), *args], env=cluster.env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_task_requeue_brings_back_its_canceled_dependents(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    spec = {
        "name": "probe",
        "tasks": [
            {"name": "prep", "command": f"test -f {flag}"},
            {"name": "work", "command": "echo work *", "sweep": "1-2", "dependsOn": ["prep"]},
            {"name": "sum", "command": "echo sum", "dependsOn": ["work"]},
        ],
    }
    (tmp_path / "job.json").write_text(json.dumps(spec))
    job = json.loads(hpc(cluster, "job", "submit", "--file", str(tmp_path / "job.json"), "--json"))
    job_id = job["id"]
    assert cluster.wait_job(job_id)["state"] == "Failed"
    tasks = cluster.tasks(job_id)
    assert [t["state"] for t in tasks] == ["Failed", "Canceled", "Canceled", "Canceled"]
    assert tasks[1]["error"].startswith("dependency 'prep' failed")
    flag.touch()
    said = hpc(cluster, "task", "requeue", str(job_id), "1")
    assert said == f"task {job_id}.1: Queued (3 dependent tasks requeued with it)\n"
    done = cluster.wait_job(job_id)
    assert (done["state"], done.get("error")) == ("Finished", None)
    assert [t["state"] for t in cluster.tasks(job_id)] == ["Finished"] * 4


def test_a_requeue_says_which_dependent_jobs_stay_canceled_and_how_to_requeue_them(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    flag, gate = tmp_path / "flag", tmp_path / "gate"
    first = cluster.submit(
        {"command": f"while [ ! -e {gate} ]; do sleep 0.1; done; test -f {flag}"}
    )
    second = json.loads(
        hpc(cluster, "job", "submit", "--depends-on", str(first), "--json", "--", "echo", "b")
    )["id"]
    gate.touch()  # (a prerequisite that had failed already is refused at submit)
    assert cluster.wait_job(first)["state"] == "Failed"
    assert cluster.wait_job(second)["state"] == "Canceled"  # the reconciler's, at its next run
    flag.touch()
    said = hpc(cluster, "job", "requeue", str(first)).splitlines()
    assert said[0] in (f"job {first}: {s}" for s in ("Queued", "Running", "Finished"))  # (read
    assert said[1:] == [  # after the requeue: the scheduler may have started it by then)
        f"job {second}, canceled because job {first} did not finish, stays Canceled: "
        f"requeue it too: hpc job requeue {second}"
    ]
    assert cluster.wait_job(first)["state"] == "Finished"
    assert cluster.job(second)["state"] == "Canceled"  # left as Slurm leaves it
    assert hpc(cluster, "job", "requeue", str(second)).startswith(f"job {second}: ")
    assert cluster.wait_job(second)["state"] == "Finished"
