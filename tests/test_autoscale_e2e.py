"""End to end with `hpc up`: jobs for AzureNodes start Offline local "VMs" through the timer
autoscaler, run there, and the idle nodes return to Offline; `hpc autoscale log` says why.

The VMs are the local provider's agent processes (no Azure is reachable here); everything
else is the real control plane, autoscaler, scheduler and agents.
"""

from __future__ import annotations

import subprocess
from collections import Counter

import pytest

from hpc.localcluster import LocalCluster, hpc_command

pytestmark = pytest.mark.e2e

ELASTIC = {
    "HPC_HEARTBEAT_INTERVAL_S": "0.5",
    "HPC_HEARTBEAT_TIMEOUT_S": "4",
    "HPC_RECONCILE_SCHEDULE": "* * * * * *",
    "HPC_AUTOSCALE_SCHEDULE": "* * * * * *",
    "HPC_SCALE_DOWN_DELAY_S": "2",
    "HPC_DEPLOYMENT_TIMEOUT_S": "60",
}


def test_a_job_for_offline_azure_nodes_starts_them_finishes_and_they_stop_again(tmp_path):
    with LocalCluster(tmp_path / "hpc", nodes=1, cores=2, env=ELASTIC, azure_nodes=3) as cluster:
        cluster.http.patch(
            "/api/nodegroups/AzureNodes",
            json={"growIntervalS": 1, "shrinkIntervalS": 1, "shrinkIdleTimes": 2},
        ).raise_for_status()
        azure = [n for n in cluster.get("/api/nodes")["nodes"] if "AzureNodes" in n["groups"]]
        assert [(n["name"], n["state"]) for n in azure] == [
            ("azure-1", "Offline"),
            ("azure-2", "Offline"),
            ("azure-3", "Offline"),
        ]
        job_id = cluster.submit(
            {"nodeGroups": ["AzureNodes"], "tasks": [{"command": "sleep 0.2", "sweep": "1-40"}]}
        )
        job = cluster.wait_job(job_id, timeout_s=120)
        assert job["state"] == "Finished" and job["taskCounts"] == {"Finished": 40}
        ran = Counter(t["node"] for t in cluster.tasks(job_id))
        assert set(ran) <= {"azure-1", "azure-2", "azure-3"} and len(ran) >= 2, ran

        def all_offline() -> bool:
            nodes = cluster.get("/api/nodes")["nodes"]
            return all(n["state"] == "Offline" for n in nodes if "AzureNodes" in n["groups"])

        cluster.wait_for(all_offline, timeout_s=60, what="idle Azure nodes back to Offline")
        log = cluster.get("/api/autoscale/log", group="AzureNodes")["entries"]
        starts = [e for e in log if e["action"] == "start"]
        stops = [e for e in log if e["action"] == "stop"]
        assert {e["node"] for e in starts} == set(ran) | {e["node"] for e in starts}
        assert len(starts) >= 2 and stops, log
        assert all(e["reason"] for e in starts + stops)
        shown = subprocess.run(
            [*hpc_command(), "autoscale", "log", "--group", "AzureNodes"],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0 and "start" in shown.stdout and "azure-1" in shown.stdout
