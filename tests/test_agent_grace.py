"""A canceled task, or one past its runtime limit, gets its grace period between SIGTERM and
SIGKILL (``HPC_TASK_GRACE_S``, HPC Pack's TaskCancelGracePeriod) to save a checkpoint, while
the agent works on: heartbeats, other tasks' ends, new work (agent/stopping.py).

Found by a live probe: the grace was a fixed 0.5 s, waited in the agent's loop, so a task
that trapped SIGTERM to write its checkpoint in 2 s never wrote it."""

from __future__ import annotations

import time
from pathlib import Path

from shared.domain.messages import CancelTask, RegisterNode, TaskEnded
from tests.agent_fixtures import run_task
from tests.helpers import process_alive, wait_until
from tests.test_agent_tasks import _wait_for_sleep


def _checkpointing(path: Path, code: int) -> str:
    """Traps SIGTERM: works until the test lets it (a ``.go`` file beside ``path``; a wait
    on a condition, not on a second that a loaded machine may not give), then saves the
    checkpoint and exits ``code``."""
    gate = path.with_suffix(".go")
    work = f"until [ -e {gate} ]; do sleep 0.05; done"
    return f'trap "{work}; echo saved > {path}; exit {code}" TERM; sleep 600 & wait'


def _started(start_agent, cp, tmp_path, grace_s):
    agent, _ = start_agent(state_dir=tmp_path / "state", kill_grace_s=grace_s)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    return agent


def _ends(cp) -> list[int]:
    return [e.job_id for e in cp.of(TaskEnded)]


def test_a_canceled_task_saves_its_checkpoint_in_its_grace_and_the_agent_works_on(
    start_agent, cp, tmp_path
):
    agent = _started(start_agent, cp, tmp_path, grace_s=30.0)
    checkpoint = tmp_path / "checkpoint"
    cp.send(run_task(1, _checkpointing(checkpoint, 3), cores=2))
    _wait_for_sleep(cp.started(1).pid)
    cp.send(CancelTask(incarnation=1, job_id=1, task_id=1, attempt=1))
    wait_until(lambda: "1.1.1" in agent.tasks.stopping.kills, what="the cancel's SIGTERM")
    assert agent.tasks.listed == ["1.1.1"]  # still running here: heartbeats say so
    assert agent.free_cores == 2  # and it holds its cores until it is gone
    cp.send(run_task(2, "echo meanwhile"))  # the loop is not waiting on the grace
    assert cp.ended(2).exit_code == 0
    checkpoint.with_suffix(".go").touch()  # its work done: it saves and exits
    ended = cp.ended(1, timeout=20.0)
    assert _ends(cp) == [2, 1]
    assert ended.canceled and ended.exit_code == 3  # its trap's own exit, after the save
    assert not ended.over_limit
    assert checkpoint.read_text() == "saved\n"
    assert agent.free_cores == 4


def test_a_task_past_its_limit_saves_its_checkpoint_and_fails_with_the_limit(
    start_agent, cp, tmp_path
):
    _started(start_agent, cp, tmp_path, grace_s=30.0)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.with_suffix(".go").touch()  # its work after SIGTERM is done at once
    cp.send(run_task(3, _checkpointing(checkpoint, 0), runtime_limit_s=1))
    ended = cp.ended(3, timeout=20.0)
    assert ended.error == "runtime limit 0:00:01 exceeded" and ended.exit_code == 0
    assert ended.over_limit  # the limit's end: kept if its node is given up meanwhile
    assert checkpoint.read_text() == "saved\n"


def test_a_task_still_running_when_its_grace_runs_out_is_killed(start_agent, cp, tmp_path):
    _started(start_agent, cp, tmp_path, grace_s=0.5)
    checkpoint = tmp_path / "checkpoint"
    cp.send(run_task(4, _checkpointing(checkpoint, 3)))
    _wait_for_sleep(cp.started(4).pid)
    cp.send(CancelTask(incarnation=1, job_id=4, task_id=1, attempt=1))
    ended = cp.ended(4, timeout=20.0)  # its work never done: the grace runs out
    assert ended.canceled and ended.exit_code == -9  # SIGKILL, before its save
    assert not checkpoint.exists()


def test_a_stopping_agent_cuts_the_grace_short_and_says_the_task_canceled(
    start_agent, cp, tmp_path
):
    agent = _started(start_agent, cp, tmp_path, grace_s=600.0)
    cp.send(run_task(5, 'trap "" TERM; sleep 600'))
    _wait_for_sleep(cp.started(5).pid)
    cp.send(CancelTask(incarnation=1, job_id=5, task_id=1, attempt=1))
    wait_until(lambda: "5.1.1" in agent.tasks.stopping.kills, what="the cancel's SIGTERM")
    agent.stop()
    ended = cp.ended(5, timeout=20.0)
    assert ended.canceled and ended.exit_code == -9


def test_a_newer_attempt_cuts_the_older_ones_grace_short_before_it_starts(
    start_agent, cp, tmp_path
):
    """Two attempts of one task never run at once here: the older one, in its grace, is
    killed and its end reported before the newer one starts."""
    agent = _started(start_agent, cp, tmp_path, grace_s=600.0)
    cp.send(run_task(6, 'trap "" TERM; sleep 600'))
    old = cp.started(6).pid
    _wait_for_sleep(old)
    cp.send(CancelTask(incarnation=1, job_id=6, task_id=1, attempt=1))
    wait_until(lambda: "6.1.1" in agent.tasks.stopping.kills, what="the cancel's SIGTERM")
    cp.send(run_task(6, "echo second", attempt=2))
    assert cp.ended(6, attempt=2).exit_code == 0
    first = cp.ended(6, attempt=1)
    assert first.canceled and first.exit_code == -9
    kinds = [(type(e).__name__, e.attempt) for e in cp.events if getattr(e, "job_id", 0) == 6]
    assert kinds.index(("TaskEnded", 1)) < kinds.index(("TaskStarted", 2))
    assert old is not None and not process_alive(old)


def test_a_cancel_and_a_newer_attempt_in_one_batch_never_run_at_once(start_agent, cp, tmp_path):
    agent = _started(start_agent, cp, tmp_path, grace_s=600.0)
    cp.send(run_task(7, 'trap "" TERM; sleep 600'))
    old = cp.started(7).pid
    _wait_for_sleep(old)
    cp.send(  # one receive: the cancel of attempt 1, then attempt 2
        CancelTask(incarnation=1, job_id=7, task_id=1, attempt=1),
        run_task(7, "sleep 600", attempt=2),
    )
    cp.started(7, attempt=2)
    assert old is not None and not process_alive(old)  # killed before attempt 2 started
    assert cp.ended(7, attempt=1).canceled
    assert agent.tasks.listed == ["7.1.2"]


def test_the_clusters_grace_said_at_registration_is_used_instead_of_the_machines(
    start_agent, cp, tmp_path
):
    """Protocol 6: the grace is the cluster's (the control plane's HPC_TASK_GRACE_S, HPC Pack's
    cluster-wide TaskCancelGracePeriod), not each agent machine's."""
    cp.task_grace_s = 30.0
    agent = _started(start_agent, cp, tmp_path, grace_s=0.1)  # this machine's: 0.1 s
    assert agent.config.kill_grace_s == agent.tasks.config.kill_grace_s == 30.0
    checkpoint = tmp_path / "checkpoint"
    cp.send(run_task(1, _checkpointing(checkpoint, 0), cores=1))
    _wait_for_sleep(cp.started(1).pid)
    cp.send(CancelTask(incarnation=1, job_id=1, task_id=1, attempt=1))
    wait_until(lambda: "1.1.1" in agent.tasks.stopping.kills, what="the cancel's SIGTERM")
    kill = agent.tasks.stopping.kills["1.1.1"]
    assert kill.deadline - time.monotonic() > 20  # 30 s of grace, not 0.1
    checkpoint.with_suffix(".go").touch()
    assert cp.ended(1, timeout=20.0).canceled
    assert checkpoint.read_text() == "saved\n"
