"""The agent's side of exactly-once: incarnations, refused names, and recovered endings.

Same set-up as tests/test_agent_tasks.py (tests/agent_fixtures.py): a real agent in a thread on the real embedded bus;
the test plays the control plane (it answers registrations as they arrive).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent import Agent, AgentConfig
from agent.identity import NameInUse, claim
from agent.registration import RegistrationRefused
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.domain.messages import (
    AssignmentRefused,
    Heartbeat,
    NodeStopping,
    RegisterNode,
    Superseded,
    TaskEnded,
    TaskStarted,
)
from shared.wiring import declare_queues
from tests.agent_fixtures import (  # noqa: F401 - fixtures
    NODE,
    ControlPlane,
    agent,
    bus,
    cp,
    output,
    run_task,
    start_agent,
)
from tests.helpers import ROOT, child_env, process_alive, wait_until


def test_an_assignment_for_another_incarnation_is_dropped_and_reported_never_run(
    agent, cp, tmp_path
):
    marker = tmp_path / "ran"
    cp.send(run_task(1, f"touch {marker}", incarnation=agent.incarnation + 7))
    refused = cp.wait_for(AssignmentRefused)
    assert (refused.job_id, refused.meant_for, refused.incarnation) == (
        1,
        agent.incarnation + 7,
        agent.incarnation,
    )
    cp.send(run_task(2, "true"))  # its own assignments still run
    cp.ended(2)
    assert not marker.exists()
    assert cp.of(TaskStarted) == [cp.started(2)]


def test_a_cancel_for_another_incarnation_leaves_running_tasks_alone(agent, cp):
    from shared.domain.messages import CancelTask

    cp.send(run_task(3, "sleep 30"))
    pid = cp.started(3).pid
    cp.send(CancelTask(incarnation=agent.incarnation + 1, job_id=3, task_id=1, attempt=1))
    cp.send(run_task(4, "true"))
    cp.ended(4)
    assert process_alive(pid) and agent.running == ["3.1.1"]


def test_a_refused_registration_ends_the_agent_with_the_reason(bus, output, cp):
    cp.refuse = "node 'node-1' is held by a live agent on another machine"
    agent = Agent(AgentConfig(name=NODE, poll_ms=20), bus=bus, output=output)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            agent.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    cp.wait_for(RegisterNode)
    thread.join(5)
    assert not thread.is_alive()
    [error] = errors
    assert isinstance(error, RegistrationRefused) and "held by a live agent" in str(error)
    assert agent.incarnation is None


def test_a_second_agent_of_a_name_cannot_claim_its_state_folder(tmp_path):
    first = claim("n1", tmp_path / "agents" / "n1")
    with pytest.raises(NameInUse, match=r"node 'n1' already has an agent running .*--name"):
        claim("n1", tmp_path / "agents" / "n1")
    host_id = first.host_id
    first.release()
    again = claim("n1", tmp_path / "agents" / "n1")  # free once the holder is gone
    assert again.host_id == host_id  # the same machine and folder: the same host id
    again.release()


def test_an_agent_told_to_wait_for_the_name_takes_it_once_its_holder_is_gone(tmp_path):
    """--wait-for-name: a local VM booted again while its last agent still stops."""
    folder = tmp_path / "agents" / "n1"
    first = claim("n1", folder)
    threading.Timer(0.3, first.release).start()
    again = claim("n1", folder, wait_s=30)  # waits for the release, not the 30 s
    assert again.host_id == first.host_id
    with pytest.raises(NameInUse):
        claim("n1", folder, wait_s=0.2)  # still held past the wait: refused
    again.release()


def test_told_its_incarnation_is_over_the_agent_kills_its_tasks_and_registers_again(agent, cp):
    cp.send(run_task(5, "sleep 30"))
    pid = cp.started(5).pid
    first = agent.incarnation
    cp.reply(
        agent.agent_id,
        Superseded(node=NODE, incarnation=first, current=first + 1, reason="unreachable (test)"),
    )
    agent._next_beat = 0  # look at replies now rather than at the next heartbeat
    wait_until(
        lambda: len(cp.of(RegisterNode)) == 2 and agent.incarnation == first + 1,
        timeout=5,
        what="registered again",
    )
    wait_until(lambda: not process_alive(pid), timeout=2, what="its task killed")
    assert agent.running == []
    cp.send(run_task(6, "true", incarnation=first + 1))
    assert cp.ended(6).incarnation == first + 1


def test_heartbeats_repeat_recent_endings(start_agent, cp):
    agent, _ = start_agent(heartbeat_interval_s=0.2)
    cp.wait_for(RegisterNode)
    cp.send(run_task(7, "exit 3"))
    cp.ended(7)
    beat = cp.wait_for(Heartbeat, lambda h: any(e.key == "7.1.1" for e in h.ended))
    [ended] = [e for e in beat.ended if e.key == "7.1.1"]
    assert (ended.exit_code, ended.canceled) == (3, False)
    assert beat.agent_id == agent.agent_id


def test_events_are_numbered_in_the_order_they_were_sent(agent, cp):
    cp.send(run_task(8, "true"), run_task(9, "true"))
    cp.ended(8)
    cp.ended(9)
    seqs = [e.seq for e in cp.events if hasattr(e, "seq") and e.incarnation == agent.incarnation]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_cli_second_agent_with_a_running_nodes_name_exits_with_one_line(tmp_path: Path):
    home = tmp_path / "home"
    env = child_env(home)
    first = subprocess.Popen(
        [sys.executable, "-m", "agent", "--name", "twin", "--cores", "1"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        home.mkdir(exist_ok=True)
        bus = SqliteBus(home / "bus.db")
        declare_queues(SqliteBusAdmin(bus))
        cp = ControlPlane(bus, node="twin")
        cp.wait_for(RegisterNode, timeout=20)
        second = subprocess.run(
            [sys.executable, "-m", "agent", "--name", "twin", "--cores", "1"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 3
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "'twin'" in lines[0] and "--name" in lines[0], lines
        assert first.poll() is None  # the running agent is untouched
        assert len(cp.of(RegisterNode)) == 1  # the second never even asked
        bus.close()
    finally:
        first.terminate()
        first.wait(timeout=10)


# --- end records: an end outlives the agent that saw it ---------------------------------


def test_a_tasks_shell_records_its_exit_code_as_its_last_act(tmp_path):
    from agent.endrecords import EndRecords
    from agent.runner import Runner
    from shared.adapters.local_output import LocalOutputStore

    records = EndRecords(tmp_path / "ends")
    task = run_task(1, "echo hi; exit 7")
    runner = Runner(
        task,
        output=LocalOutputStore(tmp_path / "out"),
        env={"PATH": "/usr/bin:/bin"},
        end_record=(records, records.path(1, 1, 1)),
    )
    assert runner.start() is None
    wait_until(lambda: runner.poll() is not None, what="the task to end")
    assert runner.poll() == 7
    assert records.read("1.1.1") == 7
    assert runner.finish() == "hi\n"


def test_an_end_recorded_before_the_agent_died_is_reported_by_the_next_agent(
    start_agent, cp, tmp_path
):
    state = tmp_path / "state"
    (state / "ends").mkdir(parents=True)
    (state / "ends" / "41.2.0").write_text("0\n")  # ran to its end, never reported
    (state / "ends" / "41.3.0").write_text("")  # its shell died while writing: no end
    agent, _ = start_agent(state_dir=state)
    request = cp.wait_for(RegisterNode)  # the registration carries it, for a restart to apply
    assert [(e.key, e.exit_code) for e in request.ended] == [("41.2.0", 0)]
    ended = cp.wait_for(TaskEnded, lambda e: (e.job_id, e.task_id) == (41, 2))
    assert (ended.attempt, ended.exit_code, ended.canceled) == (0, 0, False)
    wait_until(lambda: not any((state / "ends").iterdir()), what="records forgotten once sent")
    assert not [e for e in cp.of(TaskEnded) if e.task_id == 3]


def test_an_agent_with_a_state_folder_reports_and_then_forgets_each_end(start_agent, cp, tmp_path):
    state = tmp_path / "state"
    agent, _ = start_agent(state_dir=state)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    cp.send(run_task(42, "exit 3"))
    assert cp.ended(42).exit_code == 3
    wait_until(lambda: not any((state / "ends").iterdir()), what="the record forgotten")


def test_a_task_that_ended_by_itself_before_the_fence_is_reported_not_run_again(
    start_agent, cp, tmp_path, monkeypatch
):
    """Found by the chaos probe: an agent paused 12 s (or cut off from the bus) while its task
    ran to its end; the lifeline's fence then marked the task killed, the agent believed the
    mark over the exit it had not yet collected, registered again, and the task ran to its end
    twice. A shell killed by the fence's SIGKILL has a negative status; one that exited by
    itself does not: the agent reports that end."""

    agent, _ = start_agent(
        heartbeat_interval_s=0.2, fence_s=1.0, state_dir=tmp_path / "agent", kill_grace_s=0.1
    )
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    records = agent.tasks._records
    assert records is not None

    first = agent.incarnation
    real_reap, resume = agent.tasks.reap, threading.Event()

    def paused() -> None:  # the loop stops here, as a kill -STOP stops it: not heard either
        resume.wait(30)
        real_reap()

    cp.send(run_task(9, "sleep 0.3", incarnation=first))
    pid = cp.wait_for(TaskStarted).pid
    assert pid is not None
    monkeypatch.setattr(agent.tasks, "reap", paused)
    key = "9.1.1"  # job.task.attempt
    wait_until(lambda: records.killed(key), timeout=8, what="the fence marked the task")
    assert not process_alive(pid) and records.read(key) == 0  # it had exited 0 by itself
    resume.set()  # kill -CONT
    end = cp.wait_for(TaskEnded, lambda e: e.job_id == 9)
    assert end.exit_code == 0 and not end.canceled and end.incarnation == first
    # past the fence it registers again (its work may have gone elsewhere), its end sent first
    wait_until(lambda: len(cp.of(RegisterNode)) == 2, timeout=10, what="registered again")
    assert cp.events.index(end) < cp.events.index(cp.of(RegisterNode)[1])
    # said once: not again as a leftover of the new incarnation (a probe read it twice)
    cp.wait_for(Heartbeat, lambda h: h.incarnation == agent.incarnation != first)
    assert [e for e in cp.of(TaskEnded) if e.job_id == 9] == [end]
    assert cp.of(RegisterNode)[1].ended == []


def test_an_agent_not_heard_past_its_fence_registers_again_before_running_what_waited(
    start_agent, cp, tmp_path, monkeypatch
):
    """With no task running there is nothing for the lifeline to fence; yet after a silence
    past the fence the control plane may have given the node's work to others (it gives up
    on a node after its timeout): an assignment that waited in the queue meanwhile must not
    run beside its new attempt. The agent registers again first, so it is refused."""
    from shared.ports.bus import BusError

    agent, _ = start_agent(heartbeat_interval_s=0.2, fence_s=1.0, state_dir=tmp_path / "agent")
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    first = agent.incarnation
    marker = tmp_path / "ran"

    def cut_off() -> None:
        raise BusError("the bus is out of reach")

    real_flush = agent.reporter.flush
    monkeypatch.setattr(agent.reporter, "flush", cut_off)  # its loop fails before receiving
    wait_until(lambda: agent.tasks.unheard() is not None, timeout=5, what="past the fence")
    cp.send(run_task(4, f"touch {marker}", incarnation=first))  # waits while it is not heard
    monkeypatch.setattr(agent.reporter, "flush", real_flush)  # heard again
    wait_until(lambda: len(cp.of(RegisterNode)) == 2, timeout=10, what="registered again")
    refused = cp.wait_for(AssignmentRefused)
    assert (refused.job_id, refused.meant_for) == (4, first)
    assert not marker.exists() and cp.of(TaskStarted) == []


def test_a_task_the_fence_killed_is_not_reported_ended_when_the_agent_stops_first(
    start_agent, cp, tmp_path, monkeypatch
):
    """Found in review: the fence killed a task while the agent's loop was away (a bus
    outage's backoff), and the agent was then stopped before it reaped: the stop's kill found
    it dead already and reported exit -9, so the task Failed instead of being requeued."""
    import os
    import signal as signals

    agent, thread = start_agent(state_dir=tmp_path / "agent", kill_grace_s=0.1)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    monkeypatch.setattr(agent.tasks, "reap", lambda: None)  # the loop does not see it die
    cp.send(run_task(3, "sleep 60", incarnation=agent.incarnation))
    pid = cp.wait_for(TaskStarted).pid
    assert pid is not None
    records = agent.tasks._records
    assert records is not None
    records.mark_killed("3.1.1")  # what the lifeline's fence does: mark, then SIGKILL
    os.killpg(pid, signals.SIGKILL)
    wait_until(lambda: not process_alive(pid), what="the fenced task dead")
    agent.stop()
    thread.join(timeout=10)
    stopping = cp.wait_for(NodeStopping)
    assert stopping.killed == ["3.1.1"]  # requeued by the control plane, no retry used
    assert [e for e in cp.of(TaskEnded) if e.job_id == 3] == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_agent_refused_when_it_registers_again_stops_instead_of_trying_forever(
    start_agent, cp, tmp_path, monkeypatch
):
    """Found in review: past its fence the agent registers again; refused (another machine
    took the name meanwhile), it retried every few seconds for ever instead of exiting."""
    from shared.ports.bus import BusError

    agent, thread = start_agent(heartbeat_interval_s=0.2, fence_s=1.0, state_dir=tmp_path / "a")
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")

    def cut_off() -> None:
        raise BusError("the bus is out of reach")

    real_flush = agent.reporter.flush
    monkeypatch.setattr(agent.reporter, "flush", cut_off)
    wait_until(lambda: agent.tasks.unheard() is not None, timeout=5, what="past the fence")
    cp.refuse = "node node-1 is held by another agent (host other-machine)"
    monkeypatch.setattr(agent.reporter, "flush", real_flush)
    wait_until(lambda: len(cp.of(RegisterNode)) == 2, timeout=10, what="registered again")
    thread.join(timeout=10)
    assert not thread.is_alive()  # run() raised the refusal: `hpc agent run` exits 3 with it
    assert len(cp.of(RegisterNode)) == 2  # once: no retrying for ever


def test_a_kill_that_comes_while_the_shell_writes_its_end_record_leaves_it_its_own_end(
    start_agent, cp, tmp_path, monkeypatch
):
    """Found by the second chaos probe: a node was taken offline as a task's command had just
    returned; its shell, still in its EXIT trap, was counted as reached by the kill, the end
    was reported canceled (exit 0), and the task ran again elsewhere. A record written before
    the kill is an end of its own: the shell is left to finish, and its end is reported."""
    from agent.runner import Runner
    from shared.domain.messages import CancelTask

    go = tmp_path / "go"
    real_terminate = Runner.terminate_tree

    def terminate_then_go(self: Runner) -> None:  # the kill is decided with the trap still on
        real_terminate(self)
        go.touch()

    monkeypatch.setattr(Runner, "terminate_tree", terminate_then_go)
    agent, _ = start_agent(state_dir=tmp_path / "agent", kill_grace_s=1.0)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    records = agent.tasks._records
    assert records is not None
    trap = f"printf '%s\\n' 0 > \"$__hpc_end_record\"; until [ -e {go} ]; do sleep 0.01; done"
    slow_trap = f'trap "{trap}" EXIT; true'
    cp.send(run_task(11, slow_trap, incarnation=agent.incarnation))
    cp.wait_for(TaskStarted)
    wait_until(lambda: records.read("11.1.1") == 0, what="the record written, the shell on")
    cp.send(CancelTask(incarnation=agent.incarnation, job_id=11, task_id=1, attempt=1))
    end = cp.ended(11, timeout=8)
    assert (end.exit_code, end.canceled) == (0, False)
