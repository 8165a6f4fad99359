"""End to end: a job-exclusive job and a normal one on a 2-node `hpc up` cluster with real
agent processes both run, and never run on one node at the same time. Each task prints
its own start and end (the machine's clock, read by the task's process), so the check is
on what really ran, not on when events were recorded."""

from __future__ import annotations

import pytest

from hpc.localcluster import LocalCluster

pytestmark = pytest.mark.e2e

FAST = {"HPC_HEARTBEAT_INTERVAL_S": "0.5", "HPC_HEARTBEAT_TIMEOUT_S": "3"}


def timed(seconds: float) -> dict[str, str]:
    """A task that prints when it started and when it ended, in nanoseconds."""
    return {"command": f'echo "$(date +%s%N)"; sleep {seconds}; echo "$(date +%s%N)"'}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("jobx") / "hpc", nodes=2, cores=2, env=FAST)
    c.start()
    yield c
    assert c.stop() == 0


def spans(cluster: LocalCluster, job_id: int) -> list[tuple[str, int, int]]:
    """(node, start ns, end ns) of each task of the finished job."""
    assert cluster.wait_job(job_id, timeout_s=120)["state"] == "Finished"
    out = []
    for task in cluster.tasks(job_id):
        start, end = (int(x) for x in task["output"].split())
        out.append((task["node"], start, end))
    return out


@pytest.mark.parametrize("exclusive_first", [True, False], ids=["exclusive-first", "normal-first"])
def test_an_exclusive_job_and_a_normal_one_never_share_a_node(cluster, exclusive_first):
    """Normal tasks of unequal lengths free cores on a node while another of them still
    runs there: the exclusive job must not take those cores (nor may the normal job take
    the free cores of a node the exclusive job runs on)."""
    ex = {"name": "alone", "exclusive": True, "tasks": [timed(0.6), timed(0.6)]}
    normal = {"name": "shared", "tasks": [timed(0.3), timed(0.3), timed(1.2), timed(1.2)]}
    first, second = (ex, normal) if exclusive_first else (normal, ex)
    ids = {spec["name"]: cluster.submit(spec) for spec in (first, second)}
    assert cluster.job(ids["alone"])["exclusive"] is True
    alone, shared = spans(cluster, ids["alone"]), spans(cluster, ids["shared"])
    assert {n for n, _, _ in alone + shared} <= {"onprem-1", "onprem-2"}
    for node, start, end in alone:
        for other, s, e in shared:
            if other == node:
                assert end <= s or e <= start, (node, (start, end), (s, e))
