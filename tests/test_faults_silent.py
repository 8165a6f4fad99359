"""A fault test with real processes: an agent paused (``kill -STOP``) while its task runs,
the task ending by itself during the pause, and the node taken offline.

Found by a probe (2026-12-03): nobody told the control plane that the task had ended (its
agent was paused), so its next attempt started on another node once the node's wait was over,
and ran to its end too. The agent's lifeline, a separate process the pause does not stop,
now reports that end itself (agent/lifeline_reports.py): the task runs once, and is Finished
with the first attempt's result.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from hpc.localcluster import LocalCluster
from tests.test_faults import FAST, start_agent

pytestmark = pytest.mark.e2e


def _lines(path) -> Counter[str]:  # type: ignore[no-untyped-def]
    return Counter(path.read_text().split()) if path.exists() else Counter()


def test_a_paused_agents_task_that_ends_by_itself_is_not_run_again_when_its_node_goes_offline(
    tmp_path,
):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    cluster = LocalCluster(tmp_path / "hpc", nodes=0, env=FAST).start()
    paused = start_agent(cluster, "edge-1", cores=1)
    other = None
    try:
        cluster.wait_for(
            lambda: [n["state"] for n in cluster.get("/api/nodes")["nodes"]] == ["Online"],
            timeout_s=30,
            what="edge-1 Online",
        )
        key = "$HPC_JOB_ID.$HPC_TASK_ID.$HPC_TASK_ATTEMPT"
        command = (
            f"echo {key} >> {log_dir}/starts.log; sleep 1.5; "
            f"echo $HPC_JOB_ID.$HPC_TASK_ID >> {log_dir}/ends.log"
        )
        job_id = cluster.submit({"name": "once", "tasks": [{"command": command}]})
        cluster.wait_for(
            lambda: _lines(log_dir / "starts.log"), timeout_s=30, what="the task started"
        )
        os.kill(paused.pid, signal.SIGSTOP)  # the agent alone: its lifeline runs on
        other = start_agent(cluster, "edge-2", cores=1)  # where a next attempt would run
        cluster.post("/api/nodes/edge-1/offline")
        job = cluster.wait_job(job_id, timeout_s=60)
        assert job["state"] == "Finished", job
        task = cluster.tasks(job_id)[0]
        assert task["node"] == "edge-1" and task["exitCode"] == 0, task
        # (before, it was Finished by a second attempt on edge-2, which had run to its end)
        assert _lines(log_dir / "ends.log") == Counter({f"{job_id}.1": 1})
        assert len(_lines(log_dir / "starts.log")) == 1  # no second attempt ever started
    finally:
        for agent in (paused, other):
            if agent is not None:
                os.kill(agent.pid, signal.SIGCONT)
                agent.terminate()
                agent.wait(15)
        cluster.stop()
