"""A node taken offline while its agent lives on (`hpc node offline`): its attempts are
requeued at once, but a new attempt does not start elsewhere while the old one may still run
(found by the chaos probe: an agent paused with kill -STOP, taken offline, resumed 7 s later;
its tasks ran to their end beside their new attempts). The next attempt waits until the old
one's end is reported (the agent killed it, or it ran to its end: then its result is kept
and nothing runs again), or until a silent agent's lifeline has fenced it (the heartbeat
timeout). The rule as a table, then through the control plane."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import lifecycle
from shared.domain.models import LostAttempt, Task
from shared.domain.states import TaskState
from tests.agent_double import AgentDouble
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lost", "now", "held"),
    [
        ([], T0, False),
        ([LostAttempt(attempt=0, node="n1")], T0, False),  # lost by silence: fenced already
        ([LostAttempt(attempt=0, node="n1", until=T0 + timedelta(seconds=15))], T0, True),
        ([LostAttempt(attempt=0, node="n1", until=T0)], T0, False),  # its time is up
        (
            [
                LostAttempt(attempt=0, node="n1"),
                LostAttempt(attempt=1, node="n2", until=T0 + timedelta(seconds=1)),
            ],
            T0,
            True,
        ),
    ],
)
def test_a_task_is_held_while_a_lost_attempt_may_still_run(lost, now, held):
    task = Task(job_id=1, id=1, command="x", lost=lost)
    assert (lifecycle.held_by_lost(task, now) is not None) is held


@pytest.mark.parametrize(
    ("lost", "longer"),
    [
        (LostAttempt(attempt=0, node="n1", until=T0 + timedelta(seconds=5)), True),
        (LostAttempt(attempt=0, node="n1", until=T0), False),  # its hold is over already
        (LostAttempt(attempt=0, node="n1"), False),  # its end came: nothing holds
        (LostAttempt(attempt=0, node="n1", until=T0 + timedelta(seconds=60)), False),  # later
        (LostAttempt(attempt=0, node="n2", until=T0 + timedelta(seconds=5)), False),
        (LostAttempt(attempt=1, node="n1", until=T0 + timedelta(seconds=5)), False),
    ],
)
def test_a_listed_given_up_attempt_holds_its_task_longer(lost, longer):
    """The rule behind the heartbeat's longer hold (shared/usecases/events.py), as a table."""
    until = T0 + timedelta(seconds=30)
    task = Task(job_id=1, id=1, command="x", lost=[lost.model_copy()])
    assert lifecycle.hold_longer(task, 0, "n1", T0, until) is longer
    assert (task.lost[0].until == until) is longer


def _running(cp):  # noqa: F811 - fixtures
    """Two nodes, one task running on one of them: (job, its run, that agent, the other)."""
    n1, n2 = register(cp, "n1"), register(cp, "n2")
    job = cp.submit({"command": "work", "nodeGroups": ["OnPremNodes"]})
    assert cp.schedule_pass() == 1
    agent, other = (n1, n2) if cp.list_tasks(job.id)[0].node == "n1" else (n2, n1)
    [run] = agent.runs()
    agent.send(agent.started(run))
    return job, run, agent, other


def _offline_while_running(cp, clock):  # noqa: F811 - fixtures
    job, run, agent, other = _running(cp)
    cp.node_action("offline", [agent.name])
    [task] = cp.list_tasks(job.id)
    assert (task.state, task.attempt) == (TaskState.QUEUED, 1)
    return job, run, agent, other


def test_the_next_attempt_waits_for_the_kill_to_be_reported(cp, clock):  # noqa: F811
    job, run, agent, other = _offline_while_running(cp, clock)
    assert cp.schedule_pass() == 0  # the old attempt may still run: nothing starts
    [task] = cp.list_tasks(job.id)
    reason = cp.pending_reasons([task])[(job.id, 1)]
    assert f"its attempt 0 on {agent.name} may still be running" in reason
    assert f"(given up: {task.error})" in reason and "taken offline" in (task.error or "")
    kicks = []
    cp.deps.kick = lambda: kicks.append(1)  # type: ignore[method-assign]
    agent.send(agent.ended(run, exit_code=None, canceled=True))  # the agent killed it
    assert kicks  # the scheduler is told at once, not at the reconciler's next run
    assert cp.schedule_pass() == 1
    [again] = other.runs()
    assert (again.job_id, again.attempt) == (job.id, 1)


def test_an_old_attempt_that_ran_to_its_end_meanwhile_is_the_result_and_nothing_runs_again(
    cp,  # noqa: F811
    clock,  # noqa: F811
):
    job, run, agent, other = _offline_while_running(cp, clock)
    assert cp.schedule_pass() == 0
    agent.send(agent.ended(run, exit_code=0))  # it ended before the kill reached it
    [task] = cp.list_tasks(job.id)
    assert task.state is TaskState.FINISHED and task.result_attempt == 0
    assert cp.schedule_pass() == 0 and other.runs() == []  # ran once, to its end
    assert cp.get_job(job.id).state.value == "Finished"


def test_a_silent_agents_attempt_is_given_up_after_the_heartbeat_timeout(cp, clock):  # noqa: F811
    job, _run, _agent, other = _offline_while_running(cp, clock)
    timeout = cp.settings.heartbeat_timeout_s
    clock.advance(timeout - 1)
    assert cp.schedule_pass() == 0
    clock.advance(1)  # by now its lifeline fenced it (at 2/3 of the timeout)
    assert cp.schedule_pass() == 1
    assert [r.attempt for r in other.runs()] == [1]


def test_a_cancel_and_requeue_of_the_held_task_keeps_it_held(cp, clock):  # noqa: F811
    """Found in review: a user requeue cleared the task's lost attempts, and with them the
    hold: the new attempt started at once beside the old one, still running on the paused
    agent. The hold stays; the old attempt's end, even one that ran to its end, is no longer
    the result (the user asked for a new run): it only lets the new attempt start."""
    job, run, agent, other = _offline_while_running(cp, clock)
    cp.cancel_task(job.id, 1)
    cp.requeue_task(job.id, 1)
    assert cp.schedule_pass() == 0
    agent.send(agent.ended(run, exit_code=0))  # the old attempt had run on to its end
    [task] = cp.list_tasks(job.id)
    assert task.state is TaskState.QUEUED  # not its result: the user's new run goes ahead
    assert cp.schedule_pass() == 1
    assert [r.attempt for r in other.runs()] == [task.attempt]


def test_an_offline_nodes_agent_that_still_lists_an_attempt_is_told_again_to_kill_it(
    cp,  # noqa: F811
    clock,  # noqa: F811
):
    """Found in review: the hold counted on the one cancel sent at the offline; a live
    agent that never got it would heartbeat on, listing the attempt, until the hold ran out
    and both attempts ran to their end. Each heartbeat that lists it is answered again."""
    job, run, agent, _other = _offline_while_running(cp, clock)
    agent.assignments()  # the cancel sent at the offline: say it was lost
    clock.advance(1)
    agent.send(agent.heartbeat(running=[f"{job.id}.1.0"]))
    [again] = agent.assignments()
    assert (type(again).__name__, again.job_id, again.attempt) == ("CancelTask", job.id, 0)


def test_held_tasks_do_not_fill_the_schedulers_window(cp, clock):  # noqa: F811
    """Found in review: 120 held tasks of a big node taken offline filled the window a pass
    reads (100 when few cores are free), so a job behind them waited out the whole hold."""
    big = register(cp, "big", cores=128)
    sweep = cp.submit({"command": "w", "sweep": "1-120", "nodeGroups": ["OnPremNodes"]})
    assert cp.schedule_pass() == 120
    big.send(*[big.started(r) for r in big.runs()])
    small = register(cp, "small", cores=2)
    cp.node_action("offline", ["big"])
    later = cp.submit({"command": "x", "nodeGroups": ["OnPremNodes"]})
    assert cp.schedule_pass() == 1
    [run] = small.runs()
    assert run.job_id == later.id
    assert all(t.state is TaskState.QUEUED for t in cp.list_tasks(sweep.id, limit=200))


def test_an_offline_cut_short_is_finished_by_the_agents_next_heartbeat(cp, clock):  # noqa: F811
    """Found by the second chaos probe: the control plane was killed between writing the node
    Offline and giving up its tasks; the agent's next heartbeat was answered with cancels of
    the still-current attempts, so the tasks ended Canceled though nobody canceled them. The
    heartbeat now finishes the offline instead: requeued (held until killed), then killed."""
    from shared.domain.states import NodeState

    job, run, agent, other = _running(cp)
    node = cp.store.get_node(agent.name)  # what the offline wrote before the crash
    node.held = "offline"
    node.move_to(NodeState.OFFLINE, reason="taken offline by an admin", now=clock())
    cp.store.put_node(node)
    clock.advance(1)
    agent.send(agent.heartbeat(running=[f"{job.id}.1.0"]))
    [task] = cp.list_tasks(job.id)
    assert (task.state, task.attempt) == (TaskState.QUEUED, 1)  # given up, not canceled
    assert [(type(a).__name__, a.attempt) for a in agent.assignments()] == [("CancelTask", 0)]
    assert cp.schedule_pass() == 0  # held until its kill is reported
    agent.send(agent.ended(run, exit_code=None, canceled=True))
    assert cp.schedule_pass() == 1
    assert [r.attempt for r in other.runs()] == [1]
    assert cp.get_job(job.id).state.value == "Running"


def test_an_attempt_its_heard_agent_still_lists_holds_the_next_one_past_the_timeout(
    cp,  # noqa: F811
    clock,  # noqa: F811
):
    """A task in its grace (HPC_TASK_GRACE_S between SIGTERM and SIGKILL) may outlive the
    first hold of a heartbeat timeout: while its agent's heartbeats list it, the next
    attempt waits on (a review: a task that trapped SIGTERM ran beside its new attempt)."""
    job, run, agent, other = _offline_while_running(cp, clock)
    agent.assignments()  # the cancel: the agent sends SIGTERM; the task traps it
    key = f"{job.id}.1.0"
    for _ in range(int(cp.settings.heartbeat_timeout_s) * 2):
        clock.advance(1)
        agent.send(agent.heartbeat(running=[key]))  # still dying, in its grace
        assert cp.schedule_pass() == 0, "the next attempt started beside the old one"
    clock.advance(cp.settings.heartbeat_timeout_s + 1)  # no agent says it runs any more
    assert cp.schedule_pass() == 1
    [again] = other.runs()
    assert (again.job_id, again.attempt) == (job.id, 1)


def test_a_task_given_up_in_its_runtime_limits_grace_fails_with_the_limit(cp, clock):  # noqa: F811
    """A probe: `hpc node offline` while a task was in its runtime limit's grace requeued
    it (no retry used, even with --max-retries 0) and it ran again. Its agent reports the
    end as the limit's (``overLimit``): that end is the task's, and nothing runs again."""
    job, run, agent, other = _offline_while_running(cp, clock)
    assert cp.schedule_pass() == 0
    agent.send(agent.ended(run, exit_code=-15, error="runtime limit 1s exceeded", over_limit=True))
    [task] = cp.list_tasks(job.id)
    assert task.state is TaskState.FAILED and task.result_attempt == 0
    assert task.error is not None and "runtime limit 1s exceeded" in task.error
    assert cp.schedule_pass() == 0 and other.runs() == []
    assert cp.get_job(job.id).state.value == "Failed"


def test_taking_a_multi_node_tasks_second_node_offline_gives_its_attempt_up_at_once(
    cp,  # noqa: F811
    clock,  # noqa: F811
):
    """A probe: `hpc node offline` of an MPI task's second node left the task holding it
    until the reconciler's next run; brought back Online before that, the node took new
    work while the task ran on to its end as if nothing had happened. Now the attempt is
    given up with the node, its first node's agent told to kill it, and the next attempt
    waits for that kill to be reported."""
    first = register(cp, "n1", cores=2)
    second = register(cp, "n2", cores=2)
    job = cp.submit({"command": "mpirun x", "nodeGroups": ["OnPremNodes"], "nodes": 2, "cores": 2})
    assert cp.schedule_pass() == 1
    [run] = first.runs()
    first.send(first.started(run))
    [task] = cp.list_tasks(job.id)
    assert task.node == "n1" and [h.node for h in task.hosts] == ["n1", "n2"]
    cp.node_action("offline", ["n2"])  # the second node: its agent does not run the task
    [task] = cp.list_tasks(job.id)
    assert task.state is TaskState.QUEUED and task.attempt == 1
    assert "node n2 taken offline" in (task.error or "")
    kills = [m for m in first.assignments() if type(m).__name__ == "CancelTask"]
    assert [(k.task_id, k.attempt) for k in kills] == [(1, 0)]  # where its command runs
    cp.node_action("start", ["n2"])  # back before any reconciler run: nothing runs on
    again = AgentDouble(cp, "n2", cores=2, host_id=second.host_id)  # its agent joins again
    assert again.register().accepted and cp.get_node("n2")["state"] == "Online"
    assert cp.schedule_pass() == 0  # the old attempt may run until its kill is reported
    first.send(first.ended(run, exit_code=None, canceled=True))
    assert cp.schedule_pass() == 1


def test_a_given_up_attempt_says_why_it_was_given_up_not_always_an_offline():
    """A probe's killed agent read "(the node was taken offline)": no one had."""
    from shared.domain.models import LostAttempt
    from shared.domain.pending import still_running

    lost = LostAttempt(attempt=0, node="n1", until=datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC))
    said = still_running(lost, "node n1 restarted (its agent is a new incarnation)")
    assert "(given up: node n1 restarted (its agent is a new incarnation))" in said
    assert "taken offline" not in said and "at 12:00:05 UTC" in said
    assert "(given up with its node)" in still_running(lost)
