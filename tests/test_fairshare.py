"""Fair share between users (shared/domain/fairshare.py): at one priority, the user whose
tasks hold the fewest cores goes first. Found by a multi-user probe: bob's one-task job
waited 112 s behind alice's 500-task sweep submitted 3 s before it. The rule as tables, then
a control plane's scheduler pass and its pending reasons."""

# ruff: noqa: F811 - the clock fixture imported from tests/test_control.py

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.cluster import Principal
from shared.domain.fairshare import FairMerge, ahead, first_come, in_use
from shared.domain.hosts import Holding, Seat
from shared.domain.models import Host, Job, Task
from shared.domain.states import JobState, TaskState
from shared.settings import Settings
from tests.test_control import clock, make_cp, register  # noqa: F401 - a fixture

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _task(job_id: int, task_id: int = 1, *, priority: int = 2000, at: int = 0) -> Task:
    return Task(
        job_id=job_id,
        id=task_id,
        command="x",
        priority=priority,
        submit_time=T0 + timedelta(seconds=at),
    )


def test_a_users_cores_are_counted_on_every_node_their_tasks_hold():
    active = [
        Task(job_id=1, id=1, command="x", hosts=[Host(node="a", cores=4), Host(node="b", cores=4)]),
        Holding(job_id=1, task_id=2, hosts=(Seat("c", 2),)),
        Holding(job_id=2, task_id=1, hosts=(Seat("a", 1),)),
        Holding(job_id=3, task_id=1, hosts=(Seat("a", 1),)),  # a job not known: nobody's
    ]
    assert in_use(active, {1: "alice", 2: "bob"}) == {"alice": 10, "bob": 1}


def _merged(queues: dict[str, list[Task]], use: dict[str, int], take=lambda t: True) -> str:
    """The users of the tasks in the merge's order, one letter each; ``take``: which tasks
    the caller takes into its window (the others are passed over)."""
    merge = FairMerge(queues, use)
    order = []
    for task, user in merge:
        order.append(user[0])
        if take(task):
            merge.took(task, user)
    return "".join(order)


@pytest.mark.parametrize(
    ("alice", "bob", "order"),
    [
        (8, 0, "bbbaaa"),  # alice holds 8: bob's 3 first (up to 3 < 8), then alice's
        (0, 8, "aaabbb"),
        (4, 4, "ababab"),  # even: they take turns, the earlier first
        (0, 0, "ababab"),
        (2, 0, "bbabaa"),  # bob catches up to 2, then turns (bob has 3 tasks)
    ],
)
def test_the_user_holding_the_fewest_cores_is_next_and_even_users_take_turns(alice, bob, order):
    queues = {
        "alice": [_task(1, i, at=0) for i in (1, 2, 3)],
        "bob": [_task(2, i, at=3) for i in (1, 2, 3)],
    }
    assert _merged(queues, {"alice": alice, "bob": bob}) == order


def test_a_user_of_wide_tasks_holding_none_is_not_passed_by_users_of_narrow_ones():
    """The probe's case: alice and bob run 1-core sweeps, carol's tasks need 2 cores; all
    three at 0 as a pass begins (each of alice's and bob's last task on a node just ended,
    which left them at 0 and first by submit time every time: carol waited 38 s, and after
    30 ends in a replay): at a tie, the wider task goes first."""
    queues = {
        "alice": [_task(1, i, at=0) for i in (1, 2, 3)],
        "bob": [_task(2, i, at=1) for i in (1, 2, 3)],
        "carol": [_task(3, i, at=2).model_copy(update={"cores": 2}) for i in (1, 2)],
    }
    assert _merged(queues, {})[:3] == "cab"  # at a tie the wider first, then the turns
    assert _merged(queues, {"carol": 1})[:3] == "abc"  # carol holds 1: the two at 0 first


def test_a_task_passed_over_counts_for_nobody():
    queues = {"alice": [_task(1, i) for i in (1, 2)], "bob": [_task(2, i, at=1) for i in (1, 2)]}
    assert _merged(queues, {}, take=lambda t: t.job_id != 1) == "aabb"  # alice's all blocked


def test_within_one_user_it_is_first_come_first_served_and_priority_goes_first():
    queues = {
        "alice": [_task(1, 1, priority=3000), _task(1, 2)],
        "bob": [_task(2, 1, priority=3000, at=5), _task(2, 2, at=1)],
    }
    merge = FairMerge(queues, {"alice": 100, "bob": 0})
    assert [(t.job_id, t.id) for t, _ in merge] == [(2, 1), (1, 1), (2, 2), (1, 2)]


def test_without_fair_share_it_is_first_come_first_served():
    queue = [_task(2, at=3), _task(1, at=0)]
    assert [t.job_id for t in sorted(queue, key=first_come)] == [1, 2]


def _job(job_id: int, owner: str, *, priority: int = 2000, at: int = 0) -> Job:
    return Job(id=job_id, owner=owner, priority=priority, submit_time=T0 + timedelta(seconds=at))


@pytest.mark.parametrize(
    ("other", "use", "why"),
    [
        (_job(1, "alice", priority=3000, at=9), {"alice": 9}, "priority"),
        (_job(1, "alice", priority=1000, at=0), {}, None),
        (_job(1, "alice", at=0), {"alice": 0, "bob": 2}, "share"),
        (_job(1, "alice", at=0), {"alice": 4, "bob": 2}, None),  # earlier, but holds more
        (_job(1, "alice", at=0), {"alice": 2, "bob": 2}, "earlier"),
        (_job(1, "alice", at=0), None, "earlier"),  # fair share off
        (_job(1, "alice", at=9), {"alice": 0, "bob": 2}, "share"),  # later, holds fewer
        (_job(1, "bob", at=0), {"bob": 2}, "earlier"),  # the same user: first come
    ],
)
def test_which_jobs_are_ahead(other, use, why):
    assert ahead(other, _job(2, "bob", at=5), use) == why


# ------------------------------------------------------------ the control plane


def _cp(tmp_path, clock, *, fair: bool):
    cp = make_cp(tmp_path, clock)
    cp.deps.settings = Settings(home=tmp_path, heartbeat_timeout_s=10, fair_share=fair)
    return cp


def _sweep(n: int) -> dict:
    return {"name": "sweep", "tasks": [{"command": "x", "sweep": f"1-{n}"}]}


@pytest.mark.parametrize("fair", [True, False])
def test_a_freed_core_goes_to_the_user_holding_none_not_to_the_earlier_sweep(tmp_path, clock, fair):
    cp = _cp(tmp_path, clock, fair=fair)
    node = register(cp, "n1", cores=2)
    alice, bob = Principal(name="alice", role="user"), Principal(name="bob", role="user")
    big = cp.submit(_sweep(500), alice)
    cp.schedule_pass()
    first = node.runs()
    assert len(first) == 2 and {r.job_id for r in first} == {big.id}
    node.send(*[node.started(r) for r in first])
    clock.advance(3)
    small = cp.submit({"name": "one", "command": "x"}, bob)
    reasons = cp.job_pending_reasons([cp.get_job(small.id)])
    if fair:
        assert "ahead" not in reasons[small.id]  # alice's sweep is not ahead of it
    else:
        assert reasons[small.id].startswith("1 earlier job of the same priority ahead")
    node.send(node.ended(first[0], exit_code=0))  # a core frees
    cp.schedule_pass()
    [nxt] = node.runs()
    assert nxt.job_id == (small.id if fair else big.id)
    state = cp.get_job(small.id).state
    assert state is (JobState.RUNNING if fair else JobState.QUEUED)


def test_a_job_behind_a_user_holding_fewer_cores_says_so(tmp_path, clock):
    cp = _cp(tmp_path, clock, fair=True)
    node = register(cp, "n1", cores=2)
    alice, bob = Principal(name="alice", role="user"), Principal(name="bob", role="user")
    mine = cp.submit(_sweep(3), alice)
    cp.schedule_pass()
    node.send(*[node.started(r) for r in node.runs()])  # alice holds both cores
    clock.advance(1)
    theirs = cp.submit({"name": "one", "command": "x"}, bob)  # later, but bob holds none
    left = next(t for t in cp.list_tasks(mine.id) if t.state is TaskState.QUEUED)
    reason = cp.pending_reasons([left])[(mine.id, left.id)]
    assert reason.startswith(
        "1 job of a user holding fewer cores than alice's 2 ahead (fair share); waiting for"
    ), reason
    assert cp.get_job(theirs.id).state is JobState.QUEUED


def test_a_user_of_2_core_tasks_starts_among_two_users_of_1_core_sweeps(tmp_path, clock):
    """The probe's run, replayed: two 2-core nodes, alice's and bob's 1-core sweeps, carol's
    2-core tasks. Before, carol's job was still Queued after 30 task ends."""
    cp = _cp(tmp_path, clock, fair=True)
    nodes = {n: register(cp, n, cores=2) for n in ("n1", "n2")}
    alice, bob, carol = (Principal(name=n, role="user") for n in ("alice", "bob", "carol"))
    cp.submit(_sweep(40), alice)
    running = []

    def pass_() -> None:
        cp.schedule_pass()
        for agent in nodes.values():
            for run in agent.runs():
                agent.send(agent.started(run))
                running.append((agent, run))

    pass_()
    clock.advance(1)
    cp.submit(_sweep(40), bob)
    wide = cp.submit(
        {"name": "wide", "tasks": [{"command": "x", "sweep": "1-3", "cores": 2}]}, carol
    )
    pass_()
    ends = 0
    while cp.get_job(wide.id).state is not JobState.RUNNING and ends < 6:
        agent, run = running.pop(0)  # the oldest ends
        agent.send(agent.ended(run, exit_code=0))
        ends += 1
        clock.advance(1)
        pass_()
    assert cp.get_job(wide.id).state is JobState.RUNNING, "carol's job still waits"
    assert ends <= 2  # within a node's worth of ends
