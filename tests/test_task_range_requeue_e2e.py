"""``hpc task cancel`` and ``hpc task requeue`` of ranges on `hpc up` with a real agent,
through the CLI: a held sweep, ranges canceled, some of them requeued, the job released;
every task that is not canceled runs exactly once, the canceled ones never, and requeued
again after the job ended Failed they run once too (its output file counts the runs)."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpc.localcluster import LocalCluster, hpc_command

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("range-requeue") / "hpc", nodes=1, cores=4)
    c.start()
    yield c
    c.stop()


def hpc(cluster: LocalCluster, *args: str) -> list[str]:
    done = subprocess.run([*hpc_command(), *args], env=cluster.env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_held_sweep_cancel_and_requeue_of_ranges_runs_each_task_exactly_once(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    spec = {"tasks": [{"command": f"echo * >> {ran}", "sweep": "1-60"}], "held": True}
    job = cluster.submit(spec)
    said = hpc(cluster, "task", "cancel", str(job), "10-40", "45", "50-52")
    assert said == [
        f"tasks {job}.10-40 (sweep index 10-40): Canceled (31)",
        f"task {job}.45 (sweep index 45): Canceled",
        f"tasks {job}.50-52 (sweep index 50-52): Canceled (3)",
    ]
    said = hpc(cluster, "task", "requeue", str(job), "15-30", "45", "51")
    assert said == [
        f"tasks {job}.15-30 (sweep index 15-30): Queued (16)",
        *(f"task {job}.{i} (sweep index {i}): Queued" for i in (45, 51)),
    ]
    hpc(cluster, "job", "release", str(job))
    assert cluster.wait_job(job)["state"] == "Failed"  # 10-14, 31-40, 50, 52 canceled
    canceled = [*range(10, 15), *range(31, 41), 50, 52]
    runs = Counter(int(line) for line in ran.read_text().split())
    assert runs == Counter(i for i in range(1, 61) if i not in canceled)
    said = hpc(cluster, "task", "requeue", str(job), "10-14", "31-40", "50", "52")
    assert said == [
        f"tasks {job}.10-14 (sweep index 10-14): Queued (5)",
        f"tasks {job}.31-40 (sweep index 31-40): Queued (10)",
        *(f"task {job}.{i} (sweep index {i}): Queued" for i in (50, 52)),
    ]
    assert cluster.wait_job(job)["state"] == "Finished"  # reopened, then every task ran
    runs = Counter(int(line) for line in ran.read_text().split())
    assert runs == Counter(range(1, 61))  # each exactly once
    attempts = {t["id"]: t["attempt"] for t in cluster.tasks(job)}
    assert attempts[15] == attempts[10] == attempts[1] + 1  # requeued: a new attempt
