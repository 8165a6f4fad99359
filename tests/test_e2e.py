"""End to end: `hpc up` with real agent processes, driven through the HTTP API and the CLI.

Nothing here is faked: the local Functions host runs function_app.py, the
agents are separate processes sharing the embedded bus, tasks are real
shell processes. Heartbeats and the reconciler are sped up by settings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from hpc.localcluster import LocalCluster, hpc_command
from tests.helpers import pids, process_alive, stat_fields

pytestmark = pytest.mark.e2e

FAST = {
    "HPC_HEARTBEAT_INTERVAL_S": "0.5",
    "HPC_HEARTBEAT_TIMEOUT_S": "3",
    "HPC_RECONCILE_SCHEDULE": "* * * * * *",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("e2e") / "hpc", nodes=2, cores=2, env=FAST)
    c.start()
    yield c
    assert c.stop() == 0, "hpc up must exit 0 on SIGTERM"


def hpc(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*hpc_command(), *args], env=cluster.env, capture_output=True, text=True, timeout=60
    )


def test_fifty_task_sweep_finishes_and_both_nodes_run_some(cluster):
    result = hpc(
        cluster,
        "job",
        "submit",
        "--name",
        "sweep50",
        "--sweep",
        "1-50",
        "--",
        "echo index=$HPC_SWEEP_INDEX node=$HPC_NODE_NAME group=$HPC_NODE_GROUP",
    )
    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout.strip())
    watch = hpc(cluster, "job", "watch", str(job_id))
    assert watch.returncode == 0, watch.stdout + watch.stderr
    job = cluster.job(job_id)
    assert job["state"] == "Finished"
    assert job["taskCounts"] == {"Finished": 50}
    tasks = cluster.tasks(job_id)
    per_node = Counter(t["node"] for t in tasks)
    assert set(per_node) == {"onprem-1", "onprem-2"}, per_node
    for t in tasks:
        assert t["output"].strip() == f"index={t['sweepIndex']} node={t['node']} group=OnPremNodes"
    out = hpc(cluster, "task", "output", str(job_id), "7")
    assert out.stdout.strip().startswith("index=7 ")


def test_job_view_json_carries_id_state_and_task_counts(cluster):
    job_id = cluster.submit({"tasks": [{"command": "true", "sweep": "1-3"}]})
    cluster.wait_job(job_id)
    view = hpc(cluster, "job", "view", str(job_id), "--json")
    assert view.returncode == 0, view.stderr
    import json

    doc = json.loads(view.stdout)
    assert (
        doc["id"] == job_id and doc["state"] == "Finished" and doc["taskCounts"] == {"Finished": 3}
    )


def test_cancel_ends_the_running_processes_and_their_children(cluster, tmp_path):
    """Behaviour, not speed (the time it took is printed; a loaded machine may be slow): the
    task's shell and what it put in the background both end, and the job is Canceled."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    job_id = cluster.submit(
        {
            "name": "long",
            "tasks": [
                {
                    "command": f"sleep 300 & echo $! > {pid_dir}/$HPC_TASK_ID.child; "
                    f"echo $$ > {pid_dir}/$HPC_TASK_ID.shell; wait",
                    "sweep": "1-4",
                }
            ],
        }
    )
    cluster.wait_for(
        lambda: (
            cluster.job(job_id)["taskCounts"].get("Running", 0) == 4
            and sum(1 for p in pid_dir.iterdir() if p.read_text().strip()) == 8
        ),
        timeout_s=20,
        what="4 tasks running, each with its shell and child pids written",
    )
    running = [int(p.read_text()) for p in pid_dir.iterdir()]
    assert all(process_alive(p) for p in running)
    t0 = time.monotonic()
    result = hpc(cluster, "job", "cancel", str(job_id))
    assert result.returncode == 0, result.stderr
    cluster.wait_for(
        lambda: not any(process_alive(p) for p in running),
        timeout_s=30,
        what="canceled processes to end",
    )
    print(f"cancel -> every process ended in {time.monotonic() - t0:.2f} s")
    job = cluster.wait_job(job_id, timeout_s=30)
    assert job["state"] == "Canceled"
    assert job["taskCounts"] == {"Canceled": 4}


def test_bad_input_gets_a_clear_error_and_writes_nothing(cluster):
    before = len(cluster.get("/api/jobs", limit=1000)["jobs"])
    http = cluster.http
    cases = [
        (http.post("/api/jobs", content=b"{not json"), 400, "not valid JSON"),
        (http.post("/api/jobs", json={"tasks": [{"command": ""}]}), 422, "command is empty"),
        (
            http.post("/api/jobs", json={"nodeGroup": "Nope", "command": "x"}),
            404,
            "node group 'Nope'",
        ),
        (http.post("/api/jobs", json={"command": "x", "cores": 64}), 422, "largest node"),
        (http.post("/api/jobs", json={"command": "x", "sweep": "9-1"}), 422, "sweep"),
        (http.post("/api/jobs", content=b"x" * (2 << 20)), 413, "limit"),
        (http.get("/api/jobs/999999"), 404, "999999"),
        (http.get("/api/jobs/abc"), 400, "whole number"),
    ]
    for response, status, text in cases:
        assert response.status_code == status, (response.status_code, response.text)
        assert text in response.json()["error"]
    assert len(cluster.get("/api/jobs", limit=1000)["jobs"]) == before


def test_every_route_but_health_needs_the_token(cluster):
    import httpx

    assert httpx.get(cluster.url + "/api/health").status_code == 200
    r = httpx.get(cluster.url + "/api/jobs")
    assert r.status_code == 401 and "bearer token" in r.json()["error"]
    r = httpx.get(cluster.url + "/api/nodes", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_cli_errors_are_one_line_without_traceback(cluster):
    result = hpc(cluster, "job", "view", "424242")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "424242" in result.stderr


def test_killed_agent_tasks_are_requeued_and_counted_once_and_the_agent_comes_back(tmp_path):
    """kill -9 of an agent `hpc up` runs: its tasks are killed by its watchdog and requeued,
    each counted once, and `hpc up` starts the agent again (hpc/up_restarts.py)."""
    with LocalCluster(tmp_path / "hpc", nodes=2, cores=2, env=FAST) as cluster:
        job_id = cluster.submit(
            # 3 s: the watchdog kills a task the kill caught before it ends on its own (with
            # 1 s, on a loaded machine one ended first and was rightly reported, not requeued)
            {"tasks": [{"command": "sleep 3; echo done $HPC_SWEEP_INDEX", "sweep": "1-6"}]}
        )
        cluster.wait_for(
            lambda: any(
                t["node"] == "onprem-1" and t["state"] == "Running" for t in cluster.tasks(job_id)
            ),
            timeout_s=20,
            what="a task running on onprem-1",
        )
        victim = agent_pid(cluster, "onprem-1")
        os.kill(victim, signal.SIGKILL)
        job = cluster.wait_job(job_id, timeout_s=60)
        assert job["state"] == "Finished", job
        assert job["taskCounts"] == {"Finished": 6}
        tasks = cluster.tasks(job_id)
        requeued = [t for t in tasks if t["attempt"] > 0]
        assert requeued, "the killed node's tasks must have been requeued"
        assert sorted(t["sweepIndex"] for t in tasks) == list(range(1, 7))
        cluster.wait_for(
            lambda: agent_pid(cluster, "onprem-1", missing=victim) != victim,
            timeout_s=20,
            what="a new agent",
        )
        onprem_1 = lambda: cluster.get("/api/nodes/onprem-1")  # noqa: E731
        cluster.wait_for(
            lambda: onprem_1()["state"] == "Online", timeout_s=20, what="onprem-1 Online again"
        )
        assert onprem_1()["incarnation"] > 1  # the new agent's


def agent_pid(cluster: LocalCluster, name: str, *, missing: int | None = None) -> int:
    """The pid of the agent process `hpc up` started for node ``name``; ``missing`` if there
    is none (between an agent's death and its restart), else an AssertionError."""
    assert cluster.proc is not None
    for pid in pids():
        fields = stat_fields(pid)
        if fields is None or int(fields[1]) != cluster.proc.pid:
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent" in cmd and name.encode() in cmd:
            return pid
    if missing is not None:
        return missing
    raise AssertionError(f"no agent process for {name}")
