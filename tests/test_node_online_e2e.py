"""End to end: an on-prem node drained or taken offline comes back Online by `hpc node start`
/ `hpc node online` while its agent runs, without restarting the agent, and takes work again.

Nothing is faked (as in tests/test_e2e.py): `hpc up` with one real agent process, the CLI
as a user runs it, tasks as real shell processes; heartbeats and the reconciler sped up.
The rules and their refusals: tests/test_node_online.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpc.localcluster import LocalCluster
from tests.helpers import process_alive
from tests.test_e2e import FAST, agent_pid, hpc

pytestmark = pytest.mark.e2e

NAME = "onprem-1"


def _node(cluster: LocalCluster) -> dict[str, Any]:
    return next(n for n in cluster.get("/api/nodes")["nodes"] if n["name"] == NAME)


def _pids(folder: Path) -> list[int]:
    path = folder / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_a_drained_then_offlined_onprem_node_comes_back_online_and_runs_new_tasks(tmp_path):
    with LocalCluster(tmp_path / "hpc", nodes=1, cores=2, env=FAST) as cluster:
        agent = agent_pid(cluster, NAME)
        incarnation = _node(cluster)["incarnation"]

        # Drained: back Online at once, the same incarnation; a new task runs there.
        assert hpc(cluster, "node", "drain", NAME).returncode == 0
        assert _node(cluster)["state"] == "Draining"
        started = hpc(cluster, "node", "start", NAME)
        assert (started.returncode, started.stdout.strip()) == (0, f"{NAME}: Online"), started
        assert (_node(cluster)["state"], _node(cluster)["incarnation"]) == ("Online", incarnation)
        job = cluster.submit({"nodeGroups": ["OnPremNodes"], "command": "echo $HPC_NODE_NAME"})
        assert cluster.wait_job(job, timeout_s=30)["state"] == "Finished"
        assert [t["node"] for t in cluster.tasks(job)] == [NAME]

        # Offline while a task runs: the task is requeued; its process runs on under the agent.
        folder = tmp_path / "work"
        folder.mkdir()
        command = f"echo $$ >> {folder}/pids; [ -e {folder}/go ] || sleep 60"
        job = cluster.submit({"nodeGroups": ["OnPremNodes"], "command": command})
        cluster.wait_for(
            lambda: cluster.tasks(job)[0]["state"] == "Running" and len(_pids(folder)) == 1,
            timeout_s=30,
            what="the task running on onprem-1",
        )
        [first] = _pids(folder)
        assert hpc(cluster, "node", "offline", NAME).returncode == 0
        [task] = cluster.tasks(job)
        assert (task["state"], task["attempt"]) == ("Queued", 1)
        (folder / "go").touch()  # the next attempt ends at once

        # Online: the agent is told its incarnation is over, kills the given-up attempt and
        # registers again; the node is Online as a new incarnation and runs the task again.
        online = hpc(cluster, "node", "online", NAME)
        assert online.returncode == 0, online.stderr
        assert online.stdout.startswith(f"{NAME}: Starting (brought online by an admin")
        cluster.wait_for(
            lambda: _node(cluster)["state"] == "Online",
            timeout_s=30,
            what="onprem-1 Online again",
        )
        assert _node(cluster)["incarnation"] == incarnation + 1
        assert agent_pid(cluster, NAME) == agent  # the same agent process
        done = cluster.wait_job(job, timeout_s=30)
        assert (done["state"], done["taskCounts"]) == ("Finished", {"Finished": 1})
        [task] = cluster.tasks(job)
        assert (task["attempt"], task["node"]) == (1, NAME)
        cluster.wait_for(
            lambda: not process_alive(first), timeout_s=10, what="the given-up attempt killed"
        )
        assert len(_pids(folder)) == 2  # the given-up attempt, and the one that finished
