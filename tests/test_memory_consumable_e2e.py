"""End to end: on a 1-node `hpc up` cluster whose agent reports 10 GB (HPC_AGENT_MEMORY_MB)
and has cores for both, two tasks asking 6 GB each (60% of the node's memory) both run and
never at the same time: the first holds its memory until it ends. Each task prints its own
start and end (the machine's clock, read by the task's process), so the check is on what
really ran."""

from __future__ import annotations

import pytest

from hpc.localcluster import LocalCluster

pytestmark = pytest.mark.e2e

FAST = {"HPC_HEARTBEAT_INTERVAL_S": "0.5", "HPC_HEARTBEAT_TIMEOUT_S": "3"}


def timed(seconds: float, memory: str | None) -> dict[str, object]:
    """A task that prints when it started and when it ended, in nanoseconds."""
    command = f'echo "$(date +%s%N)"; sleep {seconds}; echo "$(date +%s%N)"'
    return {"command": command, **({"minMemoryMb": memory} if memory else {})}


def test_two_tasks_asking_60_percent_of_a_nodes_memory_never_overlap(tmp_path):
    env = {**FAST, "HPC_AGENT_MEMORY_MB": "10G"}
    with LocalCluster(tmp_path / "hpc", nodes=1, cores=4, env=env) as cluster:
        [node] = cluster.get("/api/nodes")["nodes"]
        assert (node["memoryMb"], node["freeMemoryMb"], node["freeCores"]) == (10240, 10240, 4)
        spec = {"name": "mem", "tasks": [timed(1.0, "6G"), timed(1.0, "6G"), timed(1.0, None)]}
        job_id = cluster.submit(spec)
        assert cluster.wait_job(job_id, timeout_s=120)["state"] == "Finished"
        spans = {}
        for task in cluster.tasks(job_id):
            start, end = (int(x) for x in task["output"].split())
            spans[task["id"]] = (start, end)
        (s1, e1), (s2, e2) = spans[1], spans[2]
        assert e1 <= s2 or e2 <= s1, (spans[1], spans[2])  # never both holding 6 GB
        assert len(spans) == 3  # the one asking none ran too
