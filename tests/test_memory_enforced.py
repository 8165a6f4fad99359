"""Memory enforcement, opt-in (`hpc agent run --enforce-memory`; Slurm's ConstrainRAMSpace): a
task whose processes use more than its minMemoryMb is killed and fails saying so; one within
its ask, one that asked for none, and every task of an agent without the option run on. The
rule as a table, the /proc measure on a real process group, the agent end to end (a real
process that holds 150 MB), and the ask's way from the job spec into the task's environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from agent import memorylimit
from shared.domain.messages import TASK_MEMORY_ENV, RegisterNode
from shared.errors import InvalidRequest
from tests.agent_fixtures import run_task
from tests.helpers import wait_until
from tests.test_control import Clock, make_cp
from tests.test_memory_edges import MemoryAgent

# holds N MB resident (written to, so the pages are real), then sleeps S s (30 unless said)
HOG = (
    f"{sys.executable} -c 'import sys, time; b = bytearray(int(sys.argv[1]) << 20); "
    'b[::4096] = b"x" * len(b[::4096]); time.sleep(float(sys.argv[2]) if sys.argv[2:] else 30)\''
)


@pytest.mark.parametrize(
    ("env", "limit"),
    [
        ({TASK_MEMORY_ENV: "512"}, 512),
        ({}, None),  # it asked for none: no limit
        ({TASK_MEMORY_ENV: "0"}, None),
        ({TASK_MEMORY_ENV: "-5"}, None),
        ({TASK_MEMORY_ENV: "1e3"}, None),
        ({TASK_MEMORY_ENV: "٣"}, None),  # a digit, not ASCII
    ],
)
def test_the_limit_from_the_environment(env: dict[str, str], limit: int | None) -> None:
    assert memorylimit.limit_of(env) == limit


@pytest.mark.parametrize(
    ("used", "limit", "over"),
    [(100, 512, False), (512, 512, False), (513, 512, True), (10**6, None, False)],
)
def test_over(used: int, limit: int | None, over: bool) -> None:
    assert memorylimit.over(used, limit) is over


def test_a_process_groups_resident_memory_is_summed() -> None:
    hog = subprocess.Popen(  # a group of its own, as the agent starts a task
        ["/bin/sh", "-c", f"{HOG} 60 & {HOG} 40 & wait"], start_new_session=True
    )
    try:
        wait_until(
            lambda: memorylimit.group_rss_mb([hog.pid]).get(hog.pid, 0) >= 100,
            timeout=20,
            what="two processes of the group holding 60 and 40 MB",
        )
        assert memorylimit.group_rss_mb([os.getpgrp()]).get(hog.pid) is None  # not ours
    finally:
        os.killpg(hog.pid, 9)
        hog.wait()
    wait_until(lambda: hog.pid not in memorylimit.group_rss_mb([hog.pid]), what="gone")


def test_an_enforcing_agent_kills_a_task_past_its_ask_and_it_fails_saying_so(start_agent, cp):
    agent, _ = start_agent(enforce_memory=True)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="the registration answered")
    began = time.monotonic()
    cp.send(run_task(1, f"{HOG} 150", env={TASK_MEMORY_ENV: "64"}))
    cp.send(run_task(2, f"{HOG} 20 2; echo within", env={TASK_MEMORY_ENV: "256"}))
    cp.send(run_task(3, f"{HOG} 150 & sleep 3; kill %1; echo none asked"))
    hog = cp.ended(1, timeout=20)
    assert hog.exit_code != 0 and hog.over_limit and not hog.canceled
    assert hog.error is not None and "memory limit exceeded" in hog.error
    assert "above the 64 MB it asked for" in hog.error
    assert time.monotonic() - began < 15  # not left to run its 30 s
    within = cp.ended(2, timeout=20)
    assert (within.exit_code, within.error, within.output) == (0, None, "within\n")
    assert cp.ended(3, timeout=20).exit_code == 0  # asked for none: not limited


def test_an_agent_without_the_option_lets_it_run(start_agent, cp):
    agent, _ = start_agent()
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="the registration answered")
    cp.send(run_task(1, f"{HOG} 150 & sleep 3; kill %1; echo ran", env={TASK_MEMORY_ENV: "64"}))
    ended = cp.ended(1, timeout=20)
    assert (ended.exit_code, ended.error, ended.over_limit) == (0, None, False)


def test_the_ask_reaches_the_tasks_environment_and_a_user_cannot_set_it(cp_plane):
    agent = MemoryAgent(cp_plane, "n1", cores=2, memory_mb=4096)
    assert agent.register().accepted
    asked = cp_plane.submit({"command": "x", "nodeGroups": ["OnPremNodes"], "minMemoryMb": 300})
    plain = cp_plane.submit({"command": "y", "nodeGroups": ["OnPremNodes"]})
    assert cp_plane.schedule_pass() == 2
    env = {run.job_id: run.env for run in agent.runs()}
    assert env[asked.id][TASK_MEMORY_ENV] == "300"
    assert TASK_MEMORY_ENV not in env[plain.id]
    with pytest.raises(InvalidRequest, match=r"HPC_\* variables are set by the cluster"):
        cp_plane.submit({"command": "z", "env": {TASK_MEMORY_ENV: "999999"}})


@pytest.fixture
def cp_plane(tmp_path):
    """The real control plane of tests/test_control.py (embedded store and bus, a hand
    clock); ``cp`` here is the agent tests' stand-in."""
    return make_cp(tmp_path, Clock())


# forks 3 children of a 90 MB process: RSS summed over the 4 is about 360 MB, PSS about 100
FORKS = (
    f'{sys.executable} -c \'import os, time; b = bytearray(90 << 20); b[::4096] = b"x" * '
    "len(b[::4096]); [os.fork() == 0 and (time.sleep(3), os._exit(0)) for _ in range(3)]; "
    'time.sleep(3); print("forks done")\''
)


def test_forked_workers_sharing_pages_are_counted_once(start_agent, cp):
    """A probe: 3 forks of a 90 MB process were "404 MB" (RSS summed) against a 150 MB ask,
    and the task was killed; their PSS is about 100 MB."""
    agent, _ = start_agent(enforce_memory=True)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="the registration answered")
    cp.send(run_task(1, FORKS, env={TASK_MEMORY_ENV: "150"}))
    ended = cp.ended(1, timeout=20)
    assert (ended.exit_code, ended.error) == (0, None), ended.error
    assert "forks done" in ended.output
