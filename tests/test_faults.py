"""Fault tests with real processes: kill -9 of the control plane and of agents mid-burst.

Each task appends its key to ``ends.log`` as its last act, so a line that appears
twice is a task that ran to its end twice, and a task without a line was lost. Each
test asserts both are 0, and that every task is counted Finished exactly once.

The agents run apart from the control plane (``hpc up --nodes 0`` plus ``hpc agent
run``), as on-prem agents do, so killing the control plane leaves them running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from hpc.localcluster import LocalCluster, hpc_command
from tests.helpers import pids, stat_fields

pytestmark = pytest.mark.e2e

FAST = {
    "HPC_HEARTBEAT_INTERVAL_S": "0.5",
    "HPC_HEARTBEAT_TIMEOUT_S": "4",
    "HPC_DISPATCH_TIMEOUT_S": "12",
    "HPC_RECONCILE_SCHEDULE": "* * * * * *",
}
TASKS = 1000


def burst(log_dir: Path, n: int = TASKS) -> dict:
    """A sweep whose tasks log their start (with a timestamp) and, as their last act, their end.
    Each ``exec``s its last step, as ``exec mpirun ...`` does: a probe found that such a task,
    ending while its agent was down, left no end record and so ran to its end twice."""
    key = "$HPC_JOB_ID.$HPC_TASK_ID"
    return {
        "name": "burst",
        "maxRetries": 5,
        "tasks": [
            {
                "command": f'echo "{key} $(date +%s.%N)" >> {log_dir}/starts.log; '
                f'exec sh -c "sleep 0.02; echo {key} >> {log_dir}/ends.log"',
                "sweep": f"1-{n}",
            }
        ],
    }


def ends(log_dir: Path) -> Counter[str]:
    path = log_dir / "ends.log"
    return Counter(path.read_text().split()) if path.exists() else Counter()


def first_start_after(log_dir: Path, moment: float) -> float | None:
    path = log_dir / "starts.log"
    times = [float(line.split()[1]) for line in path.read_text().splitlines() if line.strip()]
    later = [t for t in times if t >= moment]
    return min(later) if later else None


def start_agent(cluster: LocalCluster, name: str, cores: int = 2) -> subprocess.Popen[bytes]:
    log = open(cluster.home / f"agent-{name}.log", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(
        [*hpc_command(), "agent", "run", "--name", name, "--cores", str(cores)],
        env=cluster.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def kill9_control_plane(cluster: LocalCluster) -> None:
    """SIGKILL ``hpc up`` and the local Functions host it runs: no cleanup of any kind."""
    assert cluster.proc is not None
    children = [p for p in pids() if (f := stat_fields(p)) and int(f[1]) == cluster.proc.pid]
    for pid in [cluster.proc.pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    cluster.proc.wait(10)
    for pid in children:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    if cluster._http:
        cluster._http.close()
        cluster._http = None


def check_exactly_once(cluster: LocalCluster, job_id: int, log_dir: Path, n: int) -> None:
    job = cluster.wait_job(job_id, timeout_s=120)
    counted = ends(log_dir)
    twice = sorted(k for k, c in counted.items() if c > 1)
    lost = n - len(counted)
    print(f"\nfaults: ran to their end twice: {len(twice)}, lost: {lost}")
    if twice:
        for key in twice[:3]:
            task = cluster.get(f"/api/jobs/{job_id}/tasks/{key.split('.')[1]}")
            print(
                "twice:",
                {
                    k: task.get(k)
                    for k in ("attempt", "node", "error", "lost", "resultAttempt", "requeueCount")
                },
            )
    assert twice == [], f"{len(twice)} task(s) ran to their end twice: {twice[:10]}"
    assert lost == 0
    assert job["state"] == "Finished", job
    assert job["taskCounts"] == {"Finished": n}


def test_control_plane_killed_twice_mid_burst_loses_nothing_and_runs_nothing_twice(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    cluster = LocalCluster(tmp_path / "hpc", nodes=0, env=FAST).start()
    agents = [start_agent(cluster, f"edge-{i}") for i in (1, 2)]
    try:
        cluster.wait_for(
            lambda: sum(n["state"] == "Online" for n in cluster.get("/api/nodes")["nodes"]) == 2,
            timeout_s=30,
            what="2 agents Online",
        )
        job_id = cluster.submit(burst(log_dir))
        delays = []
        for at in (TASKS // 5, TASKS // 2):
            cluster.wait_for(
                lambda at=at: sum(ends(log_dir).values()) >= at, timeout_s=60, what=f"{at} ends"
            )
            kill9_control_plane(cluster)
            time.sleep(1.0)  # agents go on without it; their events wait in the queue
            restarted = time.time()
            cluster = LocalCluster(cluster.home, nodes=0, port=cluster.port, env=FAST).start()
            cluster.wait_for(
                lambda t=restarted: first_start_after(log_dir, t) is not None,
                timeout_s=30,
                what="a task started after the restart",
            )
            delays.append(first_start_after(log_dir, restarted) - restarted)  # type: ignore[operator]
        print(f"\nfaults: restart -> first task started: {', '.join(f'{d:.2f} s' for d in delays)}")
        assert all(agent.poll() is None for agent in agents), "agents must survive"
        check_exactly_once(cluster, job_id, log_dir, TASKS)
        assert max(delays) < 5.0, delays
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            agent.wait(15)
        cluster.stop()


def test_agent_killed_mid_burst_and_restarted_at_once_loses_nothing_and_runs_nothing_twice(
    tmp_path,
):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    # The restarted agent must register before the killed one is judged silent: with a
    # 4 s timeout a slow machine (an agent process takes 3-5 s to start under full CPU
    # load) turns "restarted at once" into "node lost", a different fault (the design lets
    # a task whose node was lost mid-run run again). 10 s keeps it a restart.
    env = {**FAST, "HPC_HEARTBEAT_TIMEOUT_S": "10"}
    cluster = LocalCluster(tmp_path / "hpc", nodes=0, env=env).start()
    agents = {name: start_agent(cluster, name) for name in ("edge-1", "edge-2")}
    try:
        cluster.wait_for(
            lambda: sum(n["state"] == "Online" for n in cluster.get("/api/nodes")["nodes"]) == 2,
            timeout_s=30,
            what="2 agents Online",
        )
        job_id = cluster.submit(burst(log_dir, 500))
        for at in (100, 300):
            cluster.wait_for(
                lambda at=at: sum(ends(log_dir).values()) >= at, timeout_s=60, what=f"{at} ends"
            )
            agents["edge-1"].send_signal(signal.SIGKILL)
            agents["edge-1"].wait(10)
            agents["edge-1"] = start_agent(cluster, "edge-1")  # at once, the same name
        check_exactly_once(cluster, job_id, log_dir, 500)
        assert agents["edge-1"].poll() is None, "the restarted agent must be accepted"
        nodes = {n["name"]: n for n in cluster.get("/api/nodes")["nodes"]}
        assert nodes["edge-1"]["state"] == "Online"
        assert nodes["edge-1"]["incarnation"] == 3
    finally:
        for agent in agents.values():
            agent.terminate()
        for agent in agents.values():
            agent.wait(15)
        cluster.stop()


def _stopped_task_shell(cluster: LocalCluster) -> int | None:
    """A task's wrapper shell (agent/endrecords.py) of this cluster, stopped."""
    for pid in pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat_fields(pid)
        ours = b"hybridhpc-task" in argv and str(cluster.home).encode() in b"".join(argv)
        if ours and fields is not None and fields[0] == "T":
            return pid
    return None


def test_an_agent_killed_as_its_tasks_command_returns_leaves_the_task_run_once(tmp_path):
    """kill -9 of an agent in the instant between a task's command returning and its shell
    writing the end record (agent/groups.py), made to last: the command stops its own shell
    (``kill -STOP $$``) once. The agent's watchdog spares the shell, which writes the end; the
    restarted agent reports it; the task is not run again."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    once = log_dir / "once"
    env = {**FAST, "HPC_HEARTBEAT_TIMEOUT_S": "10"}  # a restart, not a lost node (see above)
    cluster = LocalCluster(tmp_path / "hpc", nodes=0, env=env).start()
    agent = start_agent(cluster, "edge-1")
    try:
        cluster.wait_for(
            lambda: [n["state"] for n in cluster.get("/api/nodes")["nodes"]] == ["Online"],
            timeout_s=30,
            what="the agent Online",
        )
        command = (
            f"echo end >> {log_dir}/ends.log; [ -e {once} ] || {{ touch {once}; kill -STOP $$; }}"
        )
        job_id = cluster.submit({"name": "window", "tasks": [{"command": command}]})
        cluster.wait_for(
            lambda: _stopped_task_shell(cluster) is not None, timeout_s=30, what="the window"
        )
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        agent = start_agent(cluster, "edge-1")
        job = cluster.wait_job(job_id, timeout_s=60)
        assert sum(ends(log_dir).values()) == 1  # ran to its end once
        assert job["state"] == "Finished", job
        task = cluster.get(f"/api/jobs/{job_id}/tasks/1")
        assert (task["attempt"], task["requeueCount"], task["lost"]) == (0, 0, []), task
    finally:
        agent.terminate()
        agent.wait(15)
        cluster.stop()


def test_an_agent_killed_with_its_watchdog_leaves_no_task_to_run_beside_its_next_attempt(
    tmp_path,
):
    """A probe: ``kill -9`` of an agent and its lifeline watchdog at once (``pkill -9 -f
    agent`` matches both) left its tasks running, and the restarted agent ran their next
    attempts beside them: each ran to its end twice. The new agent now ends them first."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    env = {**FAST, "HPC_HEARTBEAT_TIMEOUT_S": "10"}  # a restart, not a lost node (see above)
    cluster = LocalCluster(tmp_path / "hpc", nodes=0, env=env).start()
    agent = start_agent(cluster, "edge-1", cores=4)
    try:
        cluster.wait_for(
            lambda: [n["state"] for n in cluster.get("/api/nodes")["nodes"]] == ["Online"],
            timeout_s=30,
            what="the agent Online",
        )
        key = "$HPC_JOB_ID.$HPC_TASK_ID"
        command = f"echo {key} >> {log_dir}/starts.log; sleep 4; echo {key} >> {log_dir}/ends.log"
        job_id = cluster.submit({"name": "both", "tasks": [{"command": command, "sweep": "1-4"}]})
        cluster.wait_for(
            lambda: (
                len((log_dir / "starts.log").read_text().split()) == 4
                if (log_dir / "starts.log").exists()
                else False
            ),
            timeout_s=30,
            what="4 tasks started",
        )
        watchdog = [
            p
            for p in pids()
            if (f := stat_fields(p))
            and int(f[1]) == agent.pid
            and b"lifeline" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert len(watchdog) == 1
        for pid in (agent.pid, *watchdog):
            os.kill(pid, signal.SIGKILL)
        agent.wait(10)
        agent = start_agent(cluster, "edge-1", cores=4)
        job = cluster.wait_job(job_id, timeout_s=60)
        assert job["state"] == "Finished", job
        assert ends(log_dir) == Counter({f"{job_id}.{i}": 1 for i in range(1, 5)})
    finally:
        agent.terminate()
        agent.wait(15)
        cluster.stop()


def test_an_impostor_under_a_live_nodes_name_is_refused_and_the_node_keeps_working(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with LocalCluster(tmp_path / "hpc", nodes=1, cores=2, env=FAST) as cluster:
        job_id = cluster.submit(burst(log_dir, 100))
        cluster.wait_for(lambda: sum(ends(log_dir).values()) >= 10, timeout_s=60, what="10 ends")
        # Another machine (its own HPC_HOME, hence host id) but the same bus and name.
        elsewhere = {**cluster.env, "HPC_HOME": str(tmp_path / "elsewhere")}
        (tmp_path / "elsewhere").mkdir()
        os.symlink(cluster.home / "bus.db", tmp_path / "elsewhere" / "bus.db")
        impostor = subprocess.run(
            [*hpc_command(), "agent", "run", "--name", "onprem-1", "--cores", "8"],
            env=elsewhere,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert impostor.returncode == 3, impostor.stderr
        assert "Traceback" not in impostor.stderr
        [error] = [line for line in impostor.stderr.splitlines() if "error" in line]
        assert "held by a live agent" in error, impostor.stderr
        assert "'onprem-1'" in error and "--name" in error
        # Same machine and HPC_HOME: the lock file refuses it before it even asks.
        twin = subprocess.run(
            [*hpc_command(), "agent", "run", "--name", "onprem-1"],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert twin.returncode == 3 and "already has an agent running" in twin.stderr
        assert len(twin.stderr.strip().splitlines()) == 1, twin.stderr
        check_exactly_once(cluster, job_id, log_dir, 100)
        [node] = cluster.get("/api/nodes")["nodes"]
        assert (node["state"], node["incarnation"], node["cores"]) == ("Online", 1, 2)
