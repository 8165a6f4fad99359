"""The lifecycle rules as tables: event + current state -> new state and messages. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain import lifecycle, reconciler
from shared.domain.cluster import Node
from shared.domain.lifecycle.tasks import KEEP_LOST_HOSTS
from shared.domain.messages import (
    AssignmentRefused,
    EndedAttempt,
    Heartbeat,
    NodeStopping,
    RegisterNode,
    TaskEnded,
    TaskStarted,
)
from shared.domain.models import Host, Job, LostAttempt, Task
from shared.domain.states import JobState, NodeState, TaskState

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T15 = timedelta(seconds=15)
Q, D, R = TaskState.QUEUED, TaskState.DISPATCHING, TaskState.RUNNING
F, X, C = TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELED


def task(state=R, attempt=2, node="n1", incarnation=3, lost=()) -> Task:
    return Task(
        job_id=1,
        id=1,
        command="x",
        state=state,
        attempt=attempt,
        node=node if state in (D, R) else None,
        incarnation=incarnation if state in (D, R) else None,
        lost=[LostAttempt(attempt=a, node=n) for a, n in lost],
    )


def ended(attempt=2, node="n1", incarnation=3, exit_code=0, **kw) -> TaskEnded:
    return TaskEnded(
        node=node,
        incarnation=incarnation,
        job_id=1,
        task_id=1,
        attempt=attempt,
        exit_code=exit_code,
        **kw,
    )


LIMIT_END = {"attempt": 1, "node": "n0", "incarnation": 9, "exit_code": -15, "over_limit": True}
"""Attempt 1's end on n0, killed by its agent at its runtime limit."""


def started(attempt=2, node="n1", incarnation=3) -> TaskStarted:
    return TaskStarted(node=node, incarnation=incarnation, job_id=1, task_id=1, attempt=attempt)


# --- task events ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (D, started(), R),
        (R, started(), None),  # duplicate start
        (Q, started(), None),
        (F, started(), None),  # a start that arrives after the end
        (D, started(attempt=1), None),  # an earlier attempt
        (D, started(node="n2"), None),  # another node
        (D, started(incarnation=2), None),  # an ended incarnation of the node
    ],
)
def test_task_started(state, event, expected):
    t = task(state)
    change = lifecycle.task_started(t, event, NOW)
    assert (change.new if change else None) is expected
    assert t.state is (expected or state)


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (R, ended(exit_code=0), F),
        (D, ended(exit_code=0), F),  # the end overtook the start
        (R, ended(exit_code=3), X),
        (R, ended(exit_code=None, error="no such dir"), X),
        (R, ended(exit_code=-15, canceled=True), C),
        (F, ended(exit_code=1), None),  # duplicate: counted once
        (R, ended(attempt=1), None),  # stale attempt, not lost
        (R, ended(node="n2"), None),
        (R, ended(incarnation=2), None),
    ],
)
def test_task_ended_by_its_current_attempt(state, event, expected):
    t = task(state)
    change = lifecycle.task_ended(t, event, NOW)
    assert (change.new if change else None) is expected
    if expected:
        assert t.exit_code == event.exit_code and t.result_attempt == event.attempt


@pytest.mark.parametrize(
    ("state", "event", "expected", "cancels"),
    [
        # attempt 1 was lost on n0; the task is now attempt 2
        (Q, ended(attempt=1, node="n0", incarnation=9, exit_code=0), F, 0),
        (D, ended(attempt=1, node="n0", incarnation=9, exit_code=0), F, 1),
        (R, ended(attempt=1, node="n0", incarnation=9, exit_code=4), X, 1),
        (F, ended(attempt=1, node="n0", incarnation=9, exit_code=0), None, 0),  # ended already
        # a lost attempt that did not run to its end changes nothing
        (Q, ended(attempt=1, node="n0", incarnation=9, exit_code=None, canceled=True), None, 0),
        (Q, ended(attempt=1, node="n0", incarnation=9, exit_code=None, error="x"), None, 0),
        # killed at its runtime limit (an end of its own): the result while no new attempt
        # is sent; a new attempt already sent or running is not killed for it
        (Q, ended(**LIMIT_END, error="limit"), X, 0),
        (D, ended(**LIMIT_END, error="limit"), None, 0),
        (R, ended(**LIMIT_END, error="limit"), None, 0),
        (Q, ended(**LIMIT_END, canceled=True), None, 0),
        # an attempt not lost on that node is just stale
        (Q, ended(attempt=1, node="n5", incarnation=9, exit_code=0), None, 0),
        (Q, ended(attempt=0, node="n0", incarnation=9, exit_code=0), None, 0),
    ],
)
def test_a_lost_attempt_that_ran_to_its_end_keeps_its_result(state, event, expected, cancels):
    t = task(state, lost=[(1, "n0")])
    change = lifecycle.task_ended(t, event, NOW)
    assert (change.new if change else None) is expected
    assert len(change.cancels if change else []) == cancels
    if cancels:
        node, cancel = change.cancels[0]
        assert (node, cancel.attempt, cancel.incarnation) == ("n1", 2, 3)
    if expected:
        # node, hosts and incarnation are the kept attempt's, not the placement given up
        assert t.result_attempt == 1 and t.node == "n0" and t.incarnation == 9
        assert t.hosts == [Host(node="n0", cores=t.cores, incarnation=9)]
        assert t.attempt == 2  # every attempt made is still counted


def test_a_task_given_up_in_its_runtime_limits_grace_fails_with_the_limit() -> None:
    """A probe: ``hpc node offline`` while a task was in its runtime limit's grace requeued
    it, and it ran again. The agent says its end was the limit's (``over_limit``): that end
    is the task's, and the attempt held Queued for it is not run."""
    t = task(R, attempt=1, node="n0", incarnation=9)
    later = NOW + timedelta(seconds=30)
    lifecycle.lose_attempt(
        t, max_retries=0, canceling=False, reason="offline", count=False, now=NOW,
        may_run_until=later,
    )  # fmt: skip
    assert t.state is Q and t.attempt == 2 and lifecycle.held_by_lost(t, NOW) is not None
    end = ended(1, "n0", 9, exit_code=-15, error="runtime limit 1m exceeded", over_limit=True)
    change = lifecycle.task_ended(t, end, NOW)
    assert change is not None and change.new is X and change.ended
    assert t.error is not None and "runtime limit 1m exceeded" in t.error
    assert "attempt 1 on n0" in t.error and t.result_attempt == 1
    assert lifecycle.held_by_lost(t, NOW) is None


def test_a_limit_end_after_a_requeue_by_the_user_only_releases_the_new_run() -> None:
    t = task(Q, attempt=2)
    t.lost = [LostAttempt(attempt=1, node="n0", until=NOW + timedelta(seconds=30), result=False)]
    end = ended(1, "n0", 9, exit_code=-15, error="runtime limit 1m exceeded", over_limit=True)
    change = lifecycle.task_ended(t, end, NOW)
    assert change is not None and change.new is Q and t.state is Q
    assert lifecycle.held_by_lost(t, NOW) is None


def test_a_kept_multi_node_attempt_says_the_hosts_it_held() -> None:
    t = task(R, attempt=1, node="n0", incarnation=9)
    t.hosts = [Host(node="n0", cores=2, incarnation=9), Host(node="n7", cores=2, incarnation=4)]
    held = list(t.hosts)
    lifecycle.lose_attempt(t, max_retries=3, canceling=False, reason="lost", count=True, now=NOW)
    lifecycle.dispatch(t, node="n1", incarnation=3, now=NOW)
    assert t.hosts != held
    lifecycle.task_ended(t, ended(attempt=1, node="n0", incarnation=9, exit_code=0), NOW)
    assert t.state is F and t.hosts == held and t.node == "n0"


def test_a_new_attempt_does_not_show_why_the_previous_one_was_given_up() -> None:
    """Found by the chaos probe: a running task showed its lost attempt's reason ("its VM is
    deallocated...") as its error. Queued, the task says why it was requeued; once a new
    attempt is placed, that was the old attempt's story."""
    t = task(R, attempt=1, node="n0", incarnation=9)
    why = "its VM is deallocated (evicted or stopped outside the cluster)"
    lifecycle.lose_attempt(t, max_retries=3, canceling=False, reason=why, count=False, now=NOW)
    assert (t.state, t.error) == (Q, why)
    lifecycle.dispatch(t, node="n1", incarnation=3, now=NOW)
    assert (t.state, t.error) == (D, None)


def test_a_lost_attempt_past_the_host_limit_remembers_its_first_host_only() -> None:
    t = task(R, attempt=1, node="h0", incarnation=9)
    t.hosts = [Host(node=f"h{i}", cores=1, incarnation=9) for i in range(KEEP_LOST_HOSTS + 1)]
    lifecycle.lose_attempt(t, max_retries=3, canceling=False, reason="lost", count=True, now=NOW)
    assert t.lost[-1].hosts == [Host(node="h0", cores=1, incarnation=9)]


@pytest.mark.parametrize(
    ("state", "count", "requeues", "canceling", "expected", "attempt"),
    [
        (R, True, 0, False, Q, 3),
        (D, False, 0, False, Q, 3),
        (R, True, 3, False, X, 2),  # past max_retries=3
        (R, False, 3, False, Q, 3),  # a clean stop uses no retry
        (R, True, 0, True, C, 2),  # its job is canceling
        (Q, True, 0, False, None, 2),
        (F, True, 0, False, None, 2),
    ],
)
def test_lose_attempt(state, count, requeues, canceling, expected, attempt):
    t = task(state)
    t.requeue_count = requeues
    change = lifecycle.lose_attempt(
        t, max_retries=3, canceling=canceling, reason="node lost", count=count, now=NOW
    )
    assert (change.new if change else None) is expected
    assert t.attempt == attempt
    if expected:
        assert t.lost[-1] == LostAttempt(attempt=2, node="n1")
        assert t.incarnation is None or expected is not Q


@pytest.mark.parametrize(
    ("state", "count", "requeues", "expected"),
    [
        (R, True, 0, C),  # a user canceled it: it does not run again
        (D, False, 0, C),
        (R, True, 3, C),  # past max_retries too: the user's cancel says why it ended
        (Q, True, 0, None),
    ],
)
def test_lose_attempt_of_a_task_a_user_canceled(state, count, requeues, expected):
    t = task(state)
    t.requeue_count, t.cancel_requested = requeues, True
    change = lifecycle.lose_attempt(
        t, max_retries=3, canceling=False, reason="node lost", count=count, now=NOW
    )
    assert (change.new if change else None) is expected
    assert t.attempt == 2  # no new attempt
    if expected:
        assert t.error == "node lost after a cancel was asked for; canceled"


def test_cancel_marks_an_active_task_and_rerun_clears_the_mark():
    running = task(R, incarnation=3)
    change = lifecycle.cancel(running, NOW)
    assert change is not None and change.cancels and running.cancel_requested
    queued = task(Q)
    lifecycle.cancel(queued, NOW)
    assert queued.state is C and not queued.cancel_requested  # ended at once: no mark needed
    ended = task(C)
    ended.cancel_requested = True
    lifecycle.rerun(ended, NOW, priority=2000)
    assert ended.state is Q and not ended.cancel_requested


def test_assignment_refused_requeues_only_a_dispatch_meant_for_an_older_incarnation():
    refused = AssignmentRefused(
        node="n1", incarnation=4, job_id=1, task_id=1, attempt=2, meant_for=3, reason="old"
    )
    t = task(D, incarnation=3)
    change = lifecycle.assignment_refused(t, refused, NOW)
    assert change is not None and t.state is Q and t.requeue_count == 0
    same = task(D, incarnation=4)
    assert lifecycle.assignment_refused(same, refused, NOW) is None


def test_rerun_forgets_lost_attempts_so_a_late_end_cannot_cut_the_new_run_short():
    t = task(X, lost=[(1, "n0")])
    lifecycle.rerun(t, NOW, priority=2000)
    assert t.state is Q and t.attempt == 3 and t.lost == []
    assert lifecycle.task_ended(t, ended(attempt=1, node="n0", incarnation=9), NOW) is None


@pytest.mark.parametrize(
    ("counts", "state", "expected"),
    [
        ({F: 2}, JobState.RUNNING, JobState.FINISHED),
        ({F: 1, X: 1}, JobState.RUNNING, JobState.FAILED),
        ({F: 1, R: 1}, JobState.RUNNING, JobState.RUNNING),
        ({C: 2}, JobState.CANCELING, JobState.CANCELED),
        ({F: 2}, JobState.FINISHED, JobState.FINISHED),
        # tasks canceled one by one (hpc task cancel): all of them -> Canceled, not Failed
        ({C: 2}, JobState.RUNNING, JobState.CANCELED),
        ({C: 2}, JobState.QUEUED, JobState.CANCELED),
        ({C: 1, F: 1}, JobState.RUNNING, JobState.FAILED),  # one ran to its end: Failed
        ({C: 1, X: 1}, JobState.RUNNING, JobState.FAILED),
        ({C: 2}, JobState.FINISHING, JobState.FAILED),  # Finishing cannot be Canceled
        # every task it started requeued (its node lost): Queued again, as Slurm's PENDING
        ({Q: 2}, JobState.RUNNING, JobState.QUEUED),
        ({Q: 1, F: 1}, JobState.RUNNING, JobState.RUNNING),  # one ran to its end
        ({Q: 1, D: 1}, JobState.RUNNING, JobState.RUNNING),
        ({Q: 1, R: 1}, JobState.RUNNING, JobState.RUNNING),
        ({Q: 2}, JobState.QUEUED, JobState.QUEUED),
        ({Q: 2}, JobState.CANCELING, JobState.CANCELING),  # its cancel ends them
    ],
)
def test_settle_job(counts, state, expected):
    start = NOW - timedelta(hours=1)
    job = Job(id=1, task_count=2, task_counts=counts, state=state, start_time=start)
    changed = lifecycle.settle_job(job, NOW)
    assert job.state is expected and changed is (expected is not state)
    if state is JobState.RUNNING and expected is JobState.QUEUED:
        assert job.start_time is None  # its jobRuntimeLimit counts from the next start


@pytest.mark.parametrize(
    ("counts", "state", "reopened"),
    [
        ({Q: 2}, JobState.FAILED, True),
        ({Q: 2}, JobState.CANCELED, True),
        ({Q: 2}, JobState.RUNNING, True),  # its one ended task requeued: a new run
        ({Q: 1, F: 1}, JobState.RUNNING, False),
        ({Q: 2}, JobState.QUEUED, False),
        ({Q: 1, R: 1}, JobState.RUNNING, False),
    ],
)
def test_reopen_job_after_a_requeue(counts, state, reopened):
    job = Job(id=1, task_count=2, task_counts=counts, state=state, start_time=NOW, error="e")
    assert lifecycle.reopen_job(job, NOW) is reopened
    if reopened:
        assert (job.state, job.start_time, job.error) == (JobState.QUEUED, None, None)
    else:
        assert (job.state, job.start_time) == (state, NOW)


# --- registration -------------------------------------------------------------------


def node(
    state=NodeState.ONLINE, incarnation=3, host="host-aaaa", beat_ago=1.0, started=NOW
) -> Node:
    return Node(
        name="n1",
        state=state,
        incarnation=incarnation,
        agent_id="agent-old1",
        host_id=host,
        agent_started_at=started - timedelta(hours=1),
        last_heartbeat=NOW - timedelta(seconds=beat_ago),
    )


def req(agent="agent-new1", host="host-aaaa", started=NOW) -> RegisterNode:
    return RegisterNode(
        node="n1", groups=["G"], cores=4, agent_id=agent, host_id=host, started_at=started
    )


@pytest.mark.parametrize(
    ("stored", "asked", "accepted", "incarnation", "previous", "why"),
    [
        (Node(name="n1"), req(), True, 1, None, None),  # a new name
        (node(), req(agent="agent-old1"), True, 3, None, None),  # the same request again
        (node(), req(), True, 4, 3, None),  # a restart on the same machine: at once
        (node(host="host-bbbb"), req(), False, None, None, "held by a live agent"),  # impostor
        (node(host="host-bbbb", beat_ago=16), req(), True, 4, 3, None),  # holder dead
        (
            node(host="host-bbbb", state=NodeState.UNREACHABLE),
            req(),
            True,
            4,
            3,
            None,
        ),
        (node(host="host-bbbb", state=NodeState.OFFLINE), req(), True, 4, 3, None),
        # a late registration of an agent older than the holder
        (node(), req(started=NOW - timedelta(hours=2)), False, None, None, "older than"),
    ],
)
def test_register(stored, asked, accepted, incarnation, previous, why):
    before = stored.model_copy(deep=True)
    decision = lifecycle.register(stored, asked, now=NOW, timeout=T15)
    assert decision.accepted is accepted
    assert decision.incarnation == incarnation
    assert decision.previous == previous
    if why:
        assert why in decision.reason and "n1" in decision.reason
    if not decision.changed:
        assert stored == before  # a refused or repeated registration touches nothing
    else:
        assert stored.state is NodeState.ONLINE and stored.agent_id == asked.agent_id


@pytest.mark.parametrize(
    ("started", "host", "why", "reason"),
    [
        # a new process on the same machine: a restart
        (NOW, "host-aaaa", "agent on n1 restarted", "agent restarted"),
        # the same process (paused, cut off, fenced or superseded) registers again
        (
            NOW - timedelta(hours=1),
            "host-aaaa",
            "agent on n1 registered again after its incarnation ended",
            "agent registered again (its incarnation had ended: not heard, or told so)",
        ),
        # another machine that started at the same second is not the same process
        (NOW - timedelta(hours=1), "host-bbbb", "agent on n1 restarted", "agent restarted"),
    ],
)
def test_a_registration_says_whether_the_agent_restarted_or_only_registered_again(
    started, host, why, reason
):
    stored = node(state=NodeState.UNREACHABLE, beat_ago=60)
    decision = lifecycle.register(stored, req(started=started, host=host), now=NOW, timeout=T15)
    assert decision.accepted and decision.previous == 3
    assert decision.why == why
    assert stored.state_reason == reason


# --- heartbeats -----------------------------------------------------------------------


def beat(incarnation=3, running=(), ended_=()) -> Heartbeat:
    return Heartbeat(
        node="n1",
        incarnation=incarnation,
        agent_id="agent-old1",
        free_cores=1,
        running=list(running),
        ended=list(ended_),
    )


def test_heartbeat_of_an_ended_incarnation_changes_nothing():
    n = node()
    decision = lifecycle.heartbeat(n, beat(incarnation=2), [], NOW)
    assert not decision.current and "incarnation 3" in decision.reason
    assert n.last_heartbeat == NOW - timedelta(seconds=1)


def test_heartbeat_of_an_unreachable_node_tells_it_its_incarnation_is_over():
    n = node(state=NodeState.UNREACHABLE)
    decision = lifecycle.heartbeat(n, beat(), [], NOW)
    assert not decision.current and "unreachable" in decision.reason
    assert n.state is NodeState.UNREACHABLE


def test_heartbeat_compares_what_the_node_runs_with_what_the_control_plane_believes():
    running, dispatching, lost_end = task(R), task(D), task(R)
    dispatching.id, lost_end.id = 2, 3
    n = node()
    decision = lifecycle.heartbeat(
        n,
        beat(running=["1.1.2", "1.9.0"], ended_=[EndedAttempt(key="1.3.2", exit_code=0)]),
        [running, dispatching, lost_end],
        NOW,
    )
    assert decision.current and n.last_heartbeat == NOW
    assert [(c.job_id, c.task_id, c.attempt) for c in decision.cancels] == [(1, 9, 0)]
    assert [(e.task_id, e.exit_code) for e in decision.recovered] == [(3, 0)]
    assert n.missing_since == {}  # a Dispatching task is not missing yet


def test_a_running_attempt_the_node_stops_listing_is_missing_from_the_first_such_beat():
    t = task(R)
    n = node()
    lifecycle.heartbeat(n, beat(), [t], NOW)
    assert n.missing_since == {"1.1.2": NOW}
    lifecycle.heartbeat(n, beat(), [t], NOW + timedelta(seconds=2))
    assert n.missing_since == {"1.1.2": NOW}  # since the first beat, not the latest
    lifecycle.heartbeat(n, beat(running=["1.1.2"]), [t], NOW + timedelta(seconds=4))
    assert n.missing_since == {}


def test_stopping_of_the_current_incarnation_takes_the_node_offline():
    n = node()
    assert not lifecycle.stopping(n, NodeStopping(node="n1", incarnation=2), NOW)
    assert lifecycle.stopping(n, NodeStopping(node="n1", incarnation=3), NOW)
    assert n.state is NodeState.OFFLINE


@pytest.mark.parametrize(
    ("provider", "state", "reason", "applied", "after"),
    [
        # a VM the control plane stops: the stop's reason stays (a probe: "agent stopped")
        ("azure", NodeState.STOPPING, "stopped by alice: maint", True, "stopped by alice: maint"),
        ("local", NodeState.STOPPING, "idle 300 s (autoscaler)", True, "idle 300 s (autoscaler)"),
        ("azure", NodeState.OFFLINE, "stopped by alice: maint", False, "stopped by alice: maint"),
        # its agent stopped while the VM runs: that is the news
        ("azure", NodeState.ONLINE, "agent registered", True, lifecycle.AGENT_STOPPED),
        ("azure", NodeState.DRAINING, "stopped by alice", True, lifecycle.AGENT_STOPPED),
        # on-prem: the agent's stop is what an admin must know (start it to bring it online)
        ("onprem", NodeState.OFFLINE, "taken offline by bob", True, lifecycle.AGENT_STOPPED),
        ("onprem", NodeState.ONLINE, "agent registered", True, lifecycle.AGENT_STOPPED),
    ],
)
def test_an_agents_stop_and_the_nodes_reason(provider, state, reason, applied, after):
    n = node(state=state)
    n.provider, n.state_reason = provider, reason
    assert lifecycle.stopping(n, NodeStopping(node="n1", incarnation=3), NOW) is applied
    assert (n.state, n.state_reason) == (NodeState.OFFLINE if applied else state, after)


# --- order ------------------------------------------------------------------------------


def test_events_apply_in_the_order_each_node_sent_them_whatever_order_they_arrive_in():
    stop = NodeStopping(node="n1", incarnation=3, seq=9)
    end = ended(exit_code=0).model_copy(update={"seq": 8})
    old = ended(incarnation=2).model_copy(update={"seq": 50})
    other = ended(node="n0", incarnation=1).model_copy(update={"seq": 1})
    register = req()
    ordered = lifecycle.in_order([register, stop, end, old, other])
    assert ordered == [other, old, end, stop, register]


# --- the reconciler ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "last_run_ago", "expected_ago"),
    [
        (None, None, 0),  # first run ever
        (100, 5, 100),  # listening without a gap
        (100, 16, 0),  # the control plane was away longer than the timeout
    ],
)
def test_listening_since(previous, last_run_ago, expected_ago):
    ago = lambda s: None if s is None else NOW - timedelta(seconds=s)  # noqa: E731
    since = reconciler.listening_since(ago(previous), ago(last_run_ago), now=NOW, timeout=T15)
    assert since == ago(expected_ago)


@pytest.mark.parametrize(
    ("beat_ago", "listening_ago", "state", "silent"),
    [
        (16, 100, NodeState.ONLINE, True),
        (14, 100, NodeState.ONLINE, False),
        (60, 10, NodeState.ONLINE, False),  # its heartbeats wait unread: we were away
        (16, 100, NodeState.OFFLINE, False),
        (16, 100, NodeState.UNREACHABLE, False),
    ],
)
def test_silent_nodes_count_only_time_the_control_plane_listened(
    beat_ago, listening_ago, state, silent
):
    n = node(state=state, beat_ago=beat_ago)
    n.state_time = NOW - timedelta(hours=1)
    since = NOW - timedelta(seconds=listening_ago)
    found = reconciler.silent_nodes([n], now=NOW, timeout=T15, since=since)
    assert bool(found) is silent


@pytest.mark.parametrize(
    ("missing_ago", "listening_ago", "state", "lost"),
    [
        (16, 100, R, True),
        (14, 100, R, False),
        (60, 10, R, False),
        (16, 100, D, False),  # not confirmed yet: the dispatch timeout covers it
    ],
)
def test_lost_endings(missing_ago, listening_ago, state, lost):
    t = task(state)
    n = node()
    n.missing_since = {"1.1.2": NOW - timedelta(seconds=missing_ago)}
    since = NOW - timedelta(seconds=listening_ago)
    found = reconciler.lost_endings([n], [t], now=NOW, timeout=T15, since=since)
    assert bool(found) is lost


@pytest.mark.parametrize(
    ("state", "fails"),
    [
        (TaskState.QUEUED, True),  # never sent: Failed at once, with the reason
        (TaskState.DISPATCHING, False),  # already sent: its own lifecycle goes on
        (R, False),
        (TaskState.FINISHED, False),
        (TaskState.CANCELED, False),
    ],
)
def test_a_task_whose_assignment_cannot_be_sent_fails_only_while_queued(state, fails):
    t = task(state=state, attempt=0)
    change = lifecycle.undeliverable(t, "its assignment is 300,000 bytes", NOW)
    if fails:
        assert change == lifecycle.TaskChange(TaskState.QUEUED, TaskState.FAILED)
        assert (t.state, t.error, t.attempt) == (
            TaskState.FAILED,
            "its assignment is 300,000 bytes",
            0,
        )
    else:
        assert change is None and t.state is state


@pytest.mark.parametrize(
    ("valid", "code", "state", "error"),
    [
        (None, 1, X, "exit code 1 is not 0 (validExitCodes)"),  # the usual rule says why too
        ([-1], 0, X, "exit code 0 is not one of validExitCodes [-1]"),
        ([0, 2], 2, F, None),
        ([0, 2], None, X, "exit code None is not one of validExitCodes [0, 2]"),
        (None, -9, X, "exit code -9 (killed by SIGKILL) is not 0 (validExitCodes)"),
        ([0, 137], -9, X, "exit code -9 (killed by SIGKILL) is not one of validExitCodes [0, 137]"),
    ],
)
def test_a_task_failed_by_its_valid_exit_codes_says_why(valid, code, state, error):
    """Found by the second live probe: `--valid-exit-codes -1` made `true` fail, no reason."""
    t = task(R, incarnation=3)
    t.valid_exit_codes = valid
    change = lifecycle.task_ended(t, ended(exit_code=code), NOW)
    assert change is not None and t.state is state and t.error == error


@pytest.mark.parametrize(
    ("max_retries", "said"),
    [
        (0, "node n1 lost; not requeued (maxRetries 0)"),  # a probe: "requeued 0 times already"
        (2, "node n1 lost; requeued 2 times already (maxRetries)"),
    ],
)
def test_a_task_failed_past_its_retries_says_the_setting(max_retries, said):
    t = task(R, incarnation=3)
    t.requeue_count = max_retries
    change = lifecycle.lose_attempt(
        t, max_retries=max_retries, canceling=False, reason="node n1 lost", count=True, now=NOW
    )
    assert change is not None and t.state is X and t.error == said
