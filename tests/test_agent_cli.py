"""The node agent as a process: ``python -m agent`` arguments, SIGTERM, SIGKILL and the lifeline.

The agent runs against the real embedded bus and output store (tests/agent_fixtures.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.domain.messages import (
    NodeStopping,
    RegisterNode,
)
from shared.wiring import declare_queues
from tests.agent_fixtures import ControlPlane, run_task
from tests.helpers import ROOT, child_env, group_members, process_alive, wait_until

# ---------------------------------------------------------------------- CLI


def test_cli_rejects_bad_arguments_with_one_line_and_exit_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "agent", "--cores", "zero"],
        cwd=ROOT,
        env=child_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--cores" in result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--name", ".."], "node name '..': a letter or digit first"),
        (["--name", "n,x:9"], "node name 'n,x:9'"),  # would break HPC_NODES (name:cores,...)
        (["--name", "n" * 300], "(300 characters)"),  # was an OSError: file name too long
        (["--group", "g/h"], "node group name 'g/h': letters, digits, _ . -"),
        (["--group", "bad group!"], "node group name 'bad group!'"),
        (["--cores", "1000001"], "cores"),  # was "unexpected ValidationError"
    ],
)
def test_cli_refuses_names_the_cluster_could_not_administer_in_one_line(tmp_path, args, said):
    result = subprocess.run(
        [sys.executable, "-m", "agent", "--name", "ok-1", *args],
        cwd=ROOT,
        env=child_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and said in result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr


def test_cli_agent_runs_tasks_and_stops_cleanly_on_sigterm(tmp_path):
    env = child_env(tmp_path / "home")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "--name",
            "cli-node",
            "--group",
            "G1",
            "G2",
            "--cores",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        (tmp_path / "home").mkdir(exist_ok=True)
        bus = SqliteBus(tmp_path / "home" / "bus.db")
        declare_queues(SqliteBusAdmin(bus))
        cp = ControlPlane(bus, node="cli-node")
        registered = cp.wait_for(RegisterNode, timeout=20)
        assert (registered.groups, registered.cores) == (["G1", "G2"], 2)
        cp.send(run_task(1, 'echo "$HPC_NODE_NAME"'))
        assert cp.ended(1).output == "cli-node\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert cp.wait_for(NodeStopping).incarnation == cp.incarnation == 1
        log = proc.stderr.read()
        assert "task 1.1.1 started" in log and "task 1.1.1 ended" in log
        assert "RuntimeWarning" not in log  # the lifeline starts without runpy's warning
        # tasks run as the agent's user: an agent run as root says so at start, once
        assert log.count("this agent runs as root") == (1 if os.geteuid() == 0 else 0)
        bus.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tasks_die_with_an_agent_killed_by_sigkill(tmp_path):
    """The lifeline watchdog kills the task trees of an agent that cannot clean up itself."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "--name", "doomed", "--cores", "2"],
        cwd=ROOT,
        env=child_env(tmp_path / "home"),
        stderr=subprocess.DEVNULL,
    )
    try:
        (tmp_path / "home").mkdir(exist_ok=True)
        bus = SqliteBus(tmp_path / "home" / "bus.db")
        declare_queues(SqliteBusAdmin(bus))
        cp = ControlPlane(bus, node="doomed")
        cp.wait_for(RegisterNode, timeout=20)
        cp.send(run_task(1, "sh -c 'sleep 300 & sleep 300'"))
        leader = cp.started(1).pid
        assert leader is not None
        tree = wait_until(lambda: len(pids := group_members(leader)) >= 3 and pids, what="tree")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        wait_until(
            lambda: not any(process_alive(p) for p in tree), timeout=20.0, what="orphans gone"
        )
        bus.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lifeline_forgets_groups_of_ended_tasks():
    from agent.watch import watch

    assert watch(["+10\n", "+11\n", "-10\n", "junk\n", "+12\n"]) == {11, 12}
