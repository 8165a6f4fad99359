"""The node agent runs tasks: registration, commands, their environment and output, cancel.

The agent runs against the real embedded bus and output store (tests/agent_fixtures.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from agent import Agent, AgentConfig, lifeline
from agent.endrecords import EndRecords, Leftover
from agent.runner import Runner, kill_trees
from shared.adapters.local_output import LocalOutputStore
from shared.domain.messages import (
    CancelTask,
    NodeStopping,
    RegisterNode,
    TaskEnded,
    TaskStarted,
)
from tests.agent_fixtures import NODE, run_task
from tests.helpers import group_members, process_alive, stat_fields, wait_until


def test_agent_registers_on_start(start_agent, cp):
    agent, _ = start_agent(groups=["OnPremNodes", "Big"], cores=3)
    registered = cp.wait_for(RegisterNode)
    assert registered.node == NODE
    assert registered.groups == ["OnPremNodes", "Big"]
    assert registered.cores == 3
    wait_until(lambda: agent.incarnation == 1, what="the granted incarnation")
    assert registered.agent_id == agent.agent_id


def test_each_run_is_a_new_incarnation(bus, output, cp):
    incarnations = []
    for _ in range(2):
        agent = Agent(AgentConfig(name=NODE, poll_ms=20), bus=bus, output=output)
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        wait_until(lambda agent=agent: cp.of(RegisterNode) and agent.incarnation)
        agent.stop()
        thread.join(5)
        assert not thread.is_alive()
        incarnations.append(agent.incarnation)
    assert incarnations == [1, 2]


def test_a_command_runs_and_its_exit_code_and_output_tail_are_reported(agent, cp, output):
    cp.send(run_task(1, "echo hello; echo oops >&2"))
    started = cp.started(1)
    ended = cp.ended(1)
    assert started.node == NODE and started.pid
    assert (ended.exit_code, ended.canceled, ended.error) == (0, False, None)
    assert ended.output == "hello\n"
    assert output.read(1, 1, "stdout") == b"hello\n"
    assert output.read(1, 1, "stderr") == b"oops\n"


def test_output_tail_is_the_last_4000_characters(agent, cp):
    cp.send(run_task(1, "head -c 10000 /dev/zero | tr '\\0' a; echo END"))
    ended = cp.ended(1)
    assert len(ended.output) == 4000
    assert ended.output.endswith("aaaEND\n")


def test_non_zero_exit_is_reported(agent, cp):
    cp.send(run_task(2, "echo failing; exit 3"))
    ended = cp.ended(2)
    assert ended.exit_code == 3
    assert ended.error is None and not ended.canceled
    assert ended.output == "failing\n"


def test_task_sees_hpc_environment_variables(agent, cp, monkeypatch):
    monkeypatch.setenv("HPC_TOKEN", "secret-admin-token")
    monkeypatch.setenv("AGENT_SIDE_VARIABLE", "inherited")
    env = {"HPC_JOB_ID": "7", "HPC_TASK_ID": "3", "HPC_SWEEP_INDEX": "12", "MY_VAR": "x y"}
    cp.send(run_task(7, task=3, command="env | sort", env=env))
    seen = dict(
        line.split("=", 1) for line in cp.ended(7, task=3).output.splitlines() if "=" in line
    )
    assert seen["HPC_JOB_ID"] == "7"
    assert seen["HPC_TASK_ID"] == "3"
    assert seen["HPC_SWEEP_INDEX"] == "12"
    assert seen["HPC_NODE_NAME"] == NODE  # filled by the agent when the message lacks it
    assert seen["HPC_NODE_GROUP"] == "OnPremNodes"
    assert seen["MY_VAR"] == "x y"
    assert seen["AGENT_SIDE_VARIABLE"] == "inherited"
    assert "HPC_TOKEN" not in seen


def test_node_variables_from_the_control_plane_win(agent, cp):
    env = {"HPC_NODE_NAME": "as-placed", "HPC_NODE_GROUP": "AzureNodes"}
    cp.send(run_task(8, 'echo "$HPC_NODE_NAME $HPC_NODE_GROUP"', env=env))
    assert cp.ended(8).output == "as-placed AzureNodes\n"


def test_working_directory_is_honoured(agent, cp, tmp_path):
    work = tmp_path / "work dir"
    work.mkdir()
    cp.send(run_task(3, "pwd", work_dir=str(work)))
    ended = cp.ended(3)
    assert ended.output.splitlines()[0] == str(work)


def test_bad_working_directory_is_reported_and_the_agent_keeps_running(agent, cp, output):
    cp.send(run_task(4, "echo never", work_dir="/no/such/dir"))
    ended = cp.ended(4)
    assert ended.exit_code is None
    assert "/no/such/dir" in ended.error and "working directory" in ended.error
    assert not [e for e in cp.of(TaskStarted) if e.job_id == 4]
    assert b"/no/such/dir" in output.read(4, 1, "stderr")

    cp.send(run_task(5, "echo still here"))
    assert cp.ended(5).output == "still here\n"


def test_cancel_kills_the_whole_process_tree(agent, cp):
    """Behaviour, not speed: the task ends Canceled and every process of its tree is gone
    (the agent kills the group after GRACE_S; timeouts here are generous for loaded CI)."""
    cp.send(run_task(6, "sh -c 'sleep 30 & sleep 30; '"))
    leader = cp.started(6).pid
    assert leader is not None
    # the shells and both sleeps: wait until the backgrounded one is there too
    tree = wait_until(
        lambda: (
            (pids := group_members(leader))
            and sum(Path(f"/proc/{p}/comm").read_text().strip() == "sleep" for p in pids) == 2
            and pids
        ),
        what="both sleeps of the task",
    )
    cp.send(CancelTask(incarnation=1, job_id=6, task_id=1, attempt=1))
    ended = cp.wait_for(TaskEnded, lambda e: e.job_id == 6, timeout=20.0)
    assert ended.canceled
    assert ended.exit_code is not None and ended.exit_code != 0
    wait_until(lambda: not any(process_alive(p) for p in tree), timeout=20.0, what="tree gone")
    assert agent.running == []


def test_cancel_of_another_attempt_leaves_the_running_one_alone(agent, cp):
    cp.send(run_task(9, "sleep 30", attempt=2))
    pid = cp.started(9, attempt=2).pid
    cp.send(CancelTask(incarnation=1, job_id=9, task_id=1, attempt=1))
    stale = cp.wait_for(TaskEnded, lambda e: e.job_id == 9 and e.attempt == 1)
    assert stale.canceled and stale.exit_code is None  # never ran here: reported canceled
    assert process_alive(pid)
    assert agent.running == ["9.1.2"]


def test_background_leftovers_of_an_ended_task_are_killed(agent, cp):
    cp.send(run_task(10, "sleep 30 & echo $!"))
    ended = cp.ended(10)
    assert ended.exit_code == 0
    leftover = int(ended.output.strip())
    wait_until(lambda: not process_alive(leftover), timeout=20.0, what="the background sleep gone")


# --- a command that traps SIGTERM: the kill decides its end, not the trap's exit code ----------


def _trapping(code: int) -> str:
    return f'trap "echo got term; exit {code}" TERM; sleep 30 & wait'


def _wait_for_sleep(leader: int | None) -> None:
    """Until the task's sleep runs: its shell has set its trap by then."""
    assert leader is not None
    wait_until(
        lambda: any(
            Path(f"/proc/{p}/comm").read_text().strip() == "sleep" for p in group_members(leader)
        ),
        what="the task's sleep",
    )


@pytest.mark.parametrize("code", [0, 1])
def test_a_canceled_task_that_traps_sigterm_ends_canceled_whatever_its_trap_exits_with(
    start_agent, cp, tmp_path, code
):
    """Its shell writes an end record when its trap exits (after the kill): the agent still
    reports it canceled, as Slurm says CANCELLED, so it is neither Finished nor Failed."""
    state = tmp_path / "state"
    agent, _ = start_agent(state_dir=state)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    cp.send(run_task(11, _trapping(code)))
    _wait_for_sleep(cp.started(11).pid)
    cp.send(CancelTask(incarnation=1, job_id=11, task_id=1, attempt=1))
    ended = cp.wait_for(TaskEnded, lambda e: e.job_id == 11, timeout=20.0)
    assert ended.canceled and ended.error is None
    assert ended.exit_code == code  # what the process tree ended with, said as it is
    assert "got term" in ended.output  # the trap did run
    wait_until(lambda: not any((state / "ends").iterdir()), what="the record forgotten")


def test_a_task_that_traps_sigterm_past_its_runtime_limit_fails_with_that_reason(
    start_agent, cp, tmp_path
):
    agent, _ = start_agent(state_dir=tmp_path / "state")
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    cp.send(run_task(12, _trapping(0), runtime_limit_s=1))
    ended = cp.ended(12, timeout=20.0)
    assert ended.error == "runtime limit 0:00:01 exceeded"
    assert not ended.canceled and ended.exit_code == 0
    assert "got term" in ended.output


def test_a_task_that_ignores_sigterm_past_its_limit_fails_alone_and_the_node_stays(
    start_agent, cp, tmp_path
):
    """Found by a live probe: the SIGKILL after the grace, and the end record's killed mark
    the agent's own kill writes, were taken for the lifeline's fence: the node registered
    again and every other task on it was requeued, the limited one again and again."""
    agent, _ = start_agent(state_dir=tmp_path / "state", kill_grace_s=0.5)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    cp.send(run_task(20, "sleep 30"))
    other = cp.started(20).pid
    cp.send(run_task(21, 'trap "" TERM; sleep 600', runtime_limit_s=1))
    ended = cp.ended(21, timeout=20.0)
    assert ended.error == "runtime limit 0:00:01 exceeded"
    assert ended.exit_code == -9  # it outlived the SIGTERM
    cp.send(run_task(22, "echo after"))  # the same incarnation takes work on
    assert cp.ended(22).exit_code == 0
    assert len(cp.of(RegisterNode)) == 1 and agent.incarnation == 1
    assert not [e for e in cp.of(TaskEnded) if e.job_id == 20]
    assert other is not None and process_alive(other)


def test_a_task_the_stopping_agent_kills_is_requeued_even_if_its_trap_exits_0(
    start_agent, cp, tmp_path
):
    """Exactly once: the trap's end record must not make the stopping agent, nor the next
    one of the node (which reports recorded ends), say it ended."""
    state = tmp_path / "state"
    agent, thread = start_agent(state_dir=state)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    cp.send(run_task(13, _trapping(0)))
    _wait_for_sleep(cp.started(13).pid)
    agent.stop()
    thread.join(timeout=10)
    stopping = cp.wait_for(NodeStopping)
    assert stopping.killed == ["13.1.1"]
    assert not [e for e in cp.of(TaskEnded) if e.job_id == 13]

    again, _ = start_agent(state_dir=state)
    request = cp.wait_for(RegisterNode, lambda r: r.agent_id == again.agent_id)
    assert request.ended == []
    wait_until(lambda: again.incarnation, what="registered again")
    assert not any((state / "ends").iterdir())
    assert not [e for e in cp.of(TaskEnded) if e.job_id == 13]


def test_a_task_that_ended_before_the_kill_keeps_its_own_result(tmp_path):
    """The kill decision is the process's state when the signal goes, not the end record: a
    shell that had exited (not yet reaped) is not "reached" and keeps its exit code."""
    records = EndRecords(tmp_path / "ends")
    task = run_task(14, "exit 3")
    runner = Runner(
        task,
        output=LocalOutputStore(tmp_path / "out"),
        env={"PATH": "/usr/bin:/bin"},
        end_record=(records, records.path(14, 1, 1)),
    )
    assert runner.start() is None
    pid = runner.pid
    assert pid is not None
    wait_until(lambda: (stat_fields(pid) or [""])[0] == "Z", what="the shell exited")
    assert kill_trees([runner], grace_s=0.1) == [3]
    assert not runner.kill_reached
    assert records.read("14.1.1") == 3 and not records.killed("14.1.1")
    runner.finish()


def _recorded(tmp_path: Path, job: int, command: str) -> tuple[int | None, int | None]:
    """Run ``command`` as a task with an end record, to its end: (exit code, record)."""
    records = EndRecords(tmp_path / "ends")
    runner = Runner(
        run_task(job, command),
        output=LocalOutputStore(tmp_path / "out"),
        env={"PATH": "/usr/bin:/bin"},
        end_record=(records, records.path(job, 1, 1)),
    )
    assert runner.start() is None
    wait_until(lambda: runner.poll() is not None, what="the task's end", timeout=20.0)
    code = runner.poll()
    runner.finish()
    return code, records.read(f"{job}.1.1")


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ('exec sh -c "exit 5"', 5),  # exec'd: the wrapper shell itself was replaced
        ("exec true", 0),
        ('trap "echo mine" EXIT; exit 4', 4),  # its own EXIT trap replaced the wrapper's
        ("exit 3", 3),
        ("sh -c 'kill -SEGV $$'", 139),  # its command died by a signal
    ],
)
def test_every_command_that_returns_leaves_its_end_record(tmp_path, command, code):
    """A probe: a command that execs (``exec mpirun ...``) or sets its own EXIT trap left no
    record, so an agent that crashed before reporting its end could not tell it ended: the
    task was requeued and ran to its end twice. The command now runs in a subshell."""
    assert _recorded(tmp_path, 30, command) == (code, code)


def test_a_signaled_task_leaves_no_record_and_ends_as_its_command_did(tmp_path):
    """A TERM held by the wrapper: the command's own trap decides the exit code, but a kill
    (or a machine going down) is never recorded as an end of its own."""
    records = EndRecords(tmp_path / "ends")
    runner = Runner(
        run_task(31, _trapping(0)),
        output=LocalOutputStore(tmp_path / "out"),
        env={"PATH": "/usr/bin:/bin"},
        end_record=(records, records.path(31, 1, 1)),
    )
    assert runner.start() is None
    assert runner.pid is not None
    _wait_for_sleep(runner.pid)
    os.killpg(runner.pid, signal.SIGTERM)  # not the agent's kill: no killed mark
    assert wait_until(lambda: runner.poll() is not None, timeout=20.0)
    assert runner.poll() == 0 and records.read("31.1.1") is None
    runner.finish()


def test_a_fence_after_the_task_ended_keeps_its_recorded_end(tmp_path):
    """A probe: an agent paused with SIGSTOP past its lifeline's fence, then killed and
    restarted. Its task had ended (its record written) before the fence, which still marked
    it killed, as it marks every task the paused agent had not untracked: the next agent
    threw the end away and the task ran to its end twice. A record older than its mark
    stands."""
    code, record = _recorded(tmp_path, 32, "exit 0")
    assert (code, record) == (0, 0)
    records = EndRecords(tmp_path / "ends")
    past = time.time() - 5
    os.utime(records.path(32, 1, 1), (past, past))  # ended 5 s before the fence
    lifeline._kill({999_999_999: "32.1.1"}, records.folder, records=True)  # the fence
    assert records.killed("32.1.1")
    assert records.leftovers(running=set()) == [Leftover(32, 1, 1, 0)]


def test_a_killed_mark_keeps_a_trap_written_record_from_counting_as_an_end(tmp_path):
    records = EndRecords(tmp_path / "ends")
    records.mark_killed("15.1.0")  # the kill: its mark first, then the signal
    (records.folder / "15.1.0").write_text("0\n")  # written by a trap after the kill
    mark = (records.folder / "15.1.0.killed").stat().st_mtime_ns
    os.utime(records.folder / "15.1.0", ns=(mark + 1000, mark + 1000))  # (a later tick)
    (records.folder / "16.1.0").write_text("0\n")  # ran to its end
    records.mark_killed("17.1.0")  # the agent died before the task's shell wrote anything
    assert [(x.job_id, x.exit_code) for x in records.leftovers(running=set())] == [(16, 0)]
    assert sorted(p.name for p in records.folder.iterdir()) == ["16.1.0"]
    records.mark_killed("18.1.0")
    assert records.leftovers(running={"18.1.0"}) == [Leftover(16, 1, 0, 0)]
    assert (records.folder / "18.1.0.killed").exists()  # a running attempt's mark stays
