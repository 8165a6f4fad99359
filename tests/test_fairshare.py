"""Fair share between users (shared/domain/fairshare.py): at one priority, the user whose
tasks hold the fewest cores goes first. Found by a multi-user probe: bob's one-task job
waited 112 s behind alice's 500-task sweep submitted 3 s before it. The rule as tables, then
a control plane's scheduler pass and its pending reasons."""

# ruff: noqa: F811 - the clock fixture imported from tests/test_control.py

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.cluster import Principal
from shared.domain.fairshare import ahead, first_come, in_use, order
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


@pytest.mark.parametrize(
    ("alice", "bob", "first"),
    [
        (8, 0, "bob"),  # alice holds the cores: bob's later job goes first
        (0, 8, "alice"),
        (4, 4, "alice"),  # even: first come, first served
        (0, 0, "alice"),
    ],
)
def test_at_one_priority_the_user_holding_fewer_cores_goes_first(alice, bob, first):
    owners = {1: "alice", 2: "bob"}
    queue = [_task(1, i, at=0) for i in (1, 2, 3)] + [_task(2, 1, at=3)]
    ranked = sorted(queue, key=order(owners, {"alice": alice, "bob": bob}))
    assert owners[ranked[0].job_id] == first
    alices = [t.id for t in ranked if t.job_id == 1]
    assert alices == [1, 2, 3]  # within one user, first come, first served


def test_priority_comes_before_the_share():
    owners = {1: "alice", 2: "bob"}
    queue = [_task(1, priority=3000), _task(2, priority=2000)]
    ranked = sorted(queue, key=order(owners, {"alice": 100, "bob": 0}))
    assert [t.job_id for t in ranked] == [1, 2]


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
