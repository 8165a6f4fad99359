"""`hpc up` starts a dead agent again, as systemd's Restart=on-failure does for an Azure
node's (hpc/up_restarts.py). A probe: an agent stopped (kill -STOP) while its task ran to its
end, then killed (kill -9): `hpc up` left it dead, nobody read the end record on its disk,
and at the heartbeat timeout the task was given a new attempt and ran to its end twice. The
rule as a table, the supervisor with played processes, then end to end."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hpc import up_processes
from hpc.localcluster import LocalCluster
from hpc.up_processes import Child, ClusterProcesses, Stopper
from hpc.up_restarts import BURST, WINDOW_S, exit_text, restart_refusal
from tests.helpers import pids, stat_fields, wait_until


@pytest.mark.parametrize(
    ("code", "restarts", "refusal"),
    [
        (-signal.SIGKILL, [], None),  # killed: started again
        (-signal.SIGSEGV, [], None),
        (1, [], None),  # the bus could not be opened (yet): again
        (0, [], "it stopped cleanly"),
        (2, [], "its options are wrong"),
        (3, [], "it was refused"),
        (-9, [100.0 - i for i in range(BURST - 1)], None),  # under the burst
        (-9, [100.0 - i for i in range(BURST)], f"it exited {BURST + 1} times within 60 s"),
        (-9, [100.0 - WINDOW_S - i for i in range(BURST)], None),  # those are old
    ],
)
def test_the_rule(code: int, restarts: list[float], refusal: str | None) -> None:
    assert restart_refusal(code, restarts, now=100.0) == refusal


def test_how_an_exit_is_said() -> None:
    assert exit_text(-9) == "was killed by SIGKILL"
    assert exit_text(1) == "exited with code 1"


class Dead:
    def __init__(self, returncode: int) -> None:
        self.returncode = returncode

    def poll(self) -> int:
        return self.returncode


def test_the_supervisor_starts_a_killed_agent_again_with_its_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(up_processes, "RESTART_AFTER_S", 0.0)
    out = io.StringIO()
    cluster = ClusterProcesses(
        root=tmp_path, home=tmp_path, port=1, env={},
        console=Console(file=out, width=200, log_path=False), stopper=Stopper(),
    )  # fmt: skip
    spawned: list[tuple[str, list[str]]] = []

    def spawn(name: str, args: list[str]) -> Child:
        spawned.append((name, args))
        log = tmp_path / f"{name}.again.log"
        return Child(name, Dead(-9), log, log.open("wb"), args=args)  # type: ignore[arg-type]

    args = ["-m", "agent", "--name", "onprem-1"]
    for name, code in (("onprem-1", -9), ("onprem-2", 2)):
        log = tmp_path / f"{name}.log"
        proc: Any = Dead(code)
        cluster.agents.append(Child(name, proc, log, log.open("wb"), args=args))
    monkeypatch.setattr(cluster, "spawn", spawn)
    cluster.report_dead_agents(restart=True)
    assert spawned == [("onprem-1", args)]  # not onprem-2: a usage error would come again
    said = " ".join(out.getvalue().split())
    assert "agent onprem-1 was killed by SIGKILL; starting it again in 0 s" in said
    assert "agent onprem-2 exited with code 2; the cluster stays up without it" in said
    assert "(not started again: its options are wrong)" in said
    assert cluster.agents[0].restarts.made  # counted toward the burst


# --- end to end --------------------------------------------------------------------------

SLOW_TIMEOUT = {  # a restart comes long before the heartbeat timeout
    "HPC_HEARTBEAT_INTERVAL_S": "0.5",
    "HPC_HEARTBEAT_TIMEOUT_S": "10",
    "HPC_RECONCILE_SCHEDULE": "* * * * * *",
}


def _agents_of(cluster: LocalCluster, name: str) -> list[int]:
    assert cluster.proc is not None
    found = []
    for pid in pids():
        fields = stat_fields(pid)
        if fields is None or int(fields[1]) != cluster.proc.pid:
            continue
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"agent" in argv and name.encode() in argv:
                found.append(pid)
    return found


def _agent_of(cluster: LocalCluster, name: str) -> int:
    found = _agents_of(cluster, name)
    assert found, f"no agent {name} of this hpc up"
    return found[0]


@pytest.mark.e2e
def test_an_agent_killed_after_its_task_ended_unreported_is_started_again_and_the_task_runs_once(
    tmp_path: Path,
) -> None:
    runs, go = tmp_path / "runs", tmp_path / "go"
    command = f"echo run >> {runs}; while [ ! -e {go} ]; do sleep 0.05; done; echo end >> {runs}"
    with LocalCluster(tmp_path / "hpc", nodes=1, cores=1, env=SLOW_TIMEOUT) as cluster:
        cluster.wait_for(lambda: "Ctrl-C to stop" in cluster.log(), timeout_s=60, what="up")
        job_id = cluster.submit({"name": "once", "tasks": [{"command": command}]})
        cluster.wait_for(lambda: runs.exists(), timeout_s=30, what="the task to start")
        agent = _agent_of(cluster, "onprem-1")
        os.kill(agent, signal.SIGSTOP)  # it cannot report the end now
        go.touch()
        cluster.wait_for(
            lambda: runs.read_text().count("end") == 1, timeout_s=10, what="the task's end"
        )
        os.kill(agent, signal.SIGKILL)
        began = time.monotonic()
        job = cluster.wait_job(job_id, timeout_s=60)
        waited = time.monotonic() - began
        assert runs.read_text().split() == ["run", "end"]  # ran to its end once
        assert job["state"] == "Finished", job
        task = cluster.get(f"/api/jobs/{job_id}/tasks/1")
        assert (task["attempt"], task["requeueCount"]) == (0, 0), task
        # (its end may come first from the dead agent's lifeline: agent/lifeline_reports.py)
        cluster.wait_for(
            lambda: _agents_of(cluster, "onprem-1") not in ([], [agent]),
            timeout_s=30,
            what="a new agent running the node",
        )
        assert "agent onprem-1 was killed by SIGKILL; starting it again" in cluster.log()
        print(f"\nrestart: the end reported {waited:.1f} s after the kill")


def _host_of(cluster: LocalCluster) -> int:
    """The pid of this ``hpc up``'s control plane (its child ``python -m devhost``)."""
    for pid in pids():
        fields = stat_fields(pid)
        if fields is None or int(fields[1]) != cluster.proc.pid:
            continue
        if b"devhost" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
            return pid
    raise AssertionError("no control plane of this hpc up")


@pytest.mark.e2e
def test_a_killed_control_plane_is_started_again_and_the_job_goes_on(tmp_path: Path) -> None:
    """A fault probe: kill -9 of the control plane stopped the whole local cluster ("the
    control plane exited; stopping"). It is started again, as an agent is, and the queued
    work runs on; every task runs to its end once."""
    runs = tmp_path / "runs"
    command = f"echo $HPC_TASK_ID >> {runs}; sleep 0.2"
    with LocalCluster(tmp_path / "hpc", nodes=1, cores=2, env=SLOW_TIMEOUT) as cluster:
        cluster.wait_for(lambda: "Ctrl-C to stop" in cluster.log(), timeout_s=60, what="up")
        job_id = cluster.submit({"name": "on", "tasks": [{"command": command, "sweep": "1-20"}]})
        cluster.wait_for(lambda: runs.exists(), timeout_s=30, what="the first task")
        host = _host_of(cluster)
        os.kill(host, signal.SIGKILL)
        cluster.wait_for(
            lambda: "the control plane was killed by SIGKILL; starting it again" in cluster.log(),
            timeout_s=30,
            what="the restart said",
        )
        job = cluster.wait_job(job_id, timeout_s=120)
        assert job["state"] == "Finished", job
        assert sorted(map(int, runs.read_text().split())) == list(range(1, 21))
        assert cluster.proc.poll() is None  # hpc up runs on
        assert _host_of(cluster) != host


@pytest.mark.e2e
def test_a_vm_on_when_hpc_up_alone_is_killed_is_booted_again_by_the_next(tmp_path: Path) -> None:
    """An admin probe: kill -9 of ``hpc up`` alone. Its control plane gets SIGTERM
    (PR_SET_PDEATHSIG) and stopped as if cleanly: it recorded its running VMs off, and the
    next ``hpc up`` left them Offline, their work waiting for an admin. A crash is not a
    clean stop: the VM stays on record as on and is booted again at once."""
    env = {**SLOW_TIMEOUT, "HPC_AUTOSCALE_SCHEDULE": "* * * * * *", "HPC_LOCAL_BOOT_DELAY_S": "0"}
    cluster = LocalCluster(tmp_path / "hpc", nodes=0, cores=1, env=env, azure_nodes=1)
    record = tmp_path / "hpc" / "vms" / "azure-1.json"
    with cluster:
        job_id = cluster.submit({"nodeGroups": ["AzureNodes"], "tasks": [{"command": "sleep 600"}]})
        cluster.wait_for(
            lambda: cluster.get(f"/api/jobs/{job_id}/tasks/1")["state"] == "Running",
            timeout_s=120,
            what="the task to run on a VM",
        )
        host = _host_of(cluster)
        os.kill(cluster.proc.pid, signal.SIGKILL)  # hpc up alone
        cluster.proc.wait(10)
        wait_until(lambda: not Path(f"/proc/{host}").exists(), 30, "its control plane to stop")
        assert json.loads(record.read_text())["on"] is True
        cluster._http = None
        cluster.start()  # `hpc up` again, on the same HPC_HOME
        cluster.wait_for(
            lambda: "azure-1 was on; booting it again" in _host_logs(tmp_path / "hpc"),
            timeout_s=60,
            what="the VM booted again",
        )
        cluster.wait_for(
            lambda: cluster.get(f"/api/jobs/{job_id}/tasks/1")["state"] == "Running",
            timeout_s=120,
            what="the task to run again",
        )


def _host_logs(home: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((home / "logs").glob("*.log")))


def _tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid in pids():
        fields = stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


@pytest.mark.e2e
def test_a_task_that_outlives_the_kill_of_the_whole_cluster_on_a_vm_runs_once(
    tmp_path: Path,
) -> None:
    """A fault probe: kill -9 of every process of `hpc up` mid-sweep, then `hpc up` again. A
    task on a local VM outlived its agent and watchdog, ended with its end recorded only in
    the VM's folder, and the restarted control plane ran it again (the VM came back only when
    work needed it). The VM is now booted again with the control plane (its record in
    $HPC_HOME/vms says it was on), and its agent reports the end."""
    runs, go = tmp_path / "runs", tmp_path / "go"
    command = f"echo run >> {runs}; while [ ! -e {go} ]; do sleep 0.05; done; echo end >> {runs}"
    env = {**SLOW_TIMEOUT, "HPC_AUTOSCALE_SCHEDULE": "* * * * * *", "HPC_LOCAL_BOOT_DELAY_S": "0"}
    cluster = LocalCluster(tmp_path / "hpc", nodes=0, cores=1, env=env, azure_nodes=1)
    with cluster:
        job_id = cluster.submit({"nodeGroups": ["AzureNodes"], "tasks": [{"command": command}]})
        # a timer run just before the submit (a loaded machine) puts the group's next grow
        # check its growIntervalS (60 s) later: wait past it and the VM's boot
        cluster.wait_for(lambda: runs.exists(), timeout_s=120, what="the task to start on a VM")
        tree = _tree(cluster.proc.pid)
        task = next(
            p for p in tree if str(runs).encode() in Path(f"/proc/{p}/cmdline").read_bytes()
        )
        task_group = stat_fields(task)[2]  # type: ignore[index]
        others = [p for p in tree if (f := stat_fields(p)) is not None and f[2] != task_group]
        for sig in (signal.SIGSTOP, signal.SIGKILL):  # all at once: no watchdog sees its agent
            for pid in others:  # die and ends the task first (the control plane, the VM's agent
                with contextlib.suppress(ProcessLookupError):  # and its watchdog)
                    os.kill(pid, sig)
        cluster.proc.wait(10)
        go.touch()  # the task outlived them all, and now ends
        wait_until(lambda: "end" in runs.read_text(), 10, "the task's end, with nothing up")
        cluster._http = None
        cluster.start()  # `hpc up` again, on the same HPC_HOME
        job = cluster.wait_job(job_id, timeout_s=120)
        assert runs.read_text().split() == ["run", "end"]  # ran to its end once
        assert job["state"] == "Finished", job
        task_row = cluster.get(f"/api/jobs/{job_id}/tasks/1")
        assert (task_row["attempt"], task_row["requeueCount"]) == (0, 0), task_row
