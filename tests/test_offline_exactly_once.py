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


def _offline_while_running(cp, clock):  # noqa: F811 - fixtures
    n1, n2 = register(cp, "n1"), register(cp, "n2")
    job = cp.submit({"command": "work", "nodeGroups": ["OnPremNodes"]})
    assert cp.schedule_pass() == 1
    agent, other = (n1, n2) if cp.list_tasks(job.id)[0].node == "n1" else (n2, n1)
    [run] = agent.runs()
    agent.send(agent.started(run))
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
