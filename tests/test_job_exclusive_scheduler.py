"""Job-level exclusive in the pure scheduler: a job-exclusive job's tasks never share a node
with another job's, whatever arrives first, in placement, multi-node tasks, growth and
EASY's backfill (shared.domain.scheduler, capacity, reservation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.capacity import Space
from shared.domain.cluster import Node
from shared.domain.hosts import Holding, Seat
from shared.domain.models import Task
from shared.domain.scheduler import Busy, Request, decide, plan, schedule
from shared.domain.states import NodeState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
E, N = 1, 2
"""The job-exclusive job and a normal one."""


def node(name: str, cores: int = 4) -> Node:
    return Node(name=name, cores=cores, groups=["G"], state=NodeState.ONLINE)


def task(job: int, tid: int, *, minutes: int = 0, **kw) -> Task:
    return Task(
        job_id=job,
        id=tid,
        command="true",
        job_exclusive=job == E,
        submit_time=T0 + timedelta(minutes=minutes),
        **kw,
    )


def nodes_of(placements) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for p in placements:
        out.setdefault(p.job_id, set()).update(h.node for h in p.hosts)
    return out


def assert_apart(placements, running=()) -> None:
    seen = nodes_of(placements)
    for h in running:
        seen.setdefault(h.job_id, set()).update(s.node for s in h.hosts)
    assert not seen.get(E, set()) & set().union(*(v for j, v in seen.items() if j != E))


@pytest.mark.parametrize("exclusive_first", [True, False], ids=["exclusive-first", "normal-first"])
def test_two_jobs_one_exclusive_never_share_a_node_in_a_pass(exclusive_first):
    ex = [task(E, i, minutes=0 if exclusive_first else 1) for i in (1, 2)]
    normal = [task(N, i, minutes=1 if exclusive_first else 0) for i in (1, 2)]
    queue = ex + normal if exclusive_first else normal + ex
    placements = plan(queue, [node("a"), node("b"), node("c")], {})
    assert len(placements) == 4  # normal tasks spread (most free first): E gets the node left
    assert_apart(placements)
    assert len(nodes_of(placements)[E]) == 1


@pytest.mark.parametrize("exclusive_running", [True, False], ids=["exclusive-runs", "normal-runs"])
def test_a_job_that_runs_keeps_the_other_off_its_node(exclusive_running):
    running = Holding(
        E if exclusive_running else N, 1, (Seat("a", 1),), job_exclusive=exclusive_running
    )
    queued = [task(N if exclusive_running else E, 2)]
    assert plan(queued, [node("a")], {"a": 1}, running=[running]) == []
    placements = plan(queued, [node("a"), node("b")], {"a": 1}, running=[running])
    assert [p.node for p in placements] == ["b"]


def test_an_exclusive_jobs_own_tasks_share_its_node():
    running = Holding(E, 1, (Seat("a", 1),), job_exclusive=True)
    placements = plan([task(E, 2)], [node("a", 8), node("b", 8)], {"a": 1}, running=[running])
    assert [p.node for p in placements] == ["a"]


def test_an_exclusive_sweep_packs_its_steps_onto_one_node():
    steps = [task(E, i) for i in range(1, 9)]
    later = [task(N, i, minutes=1) for i in range(1, 3)]
    placements = plan(steps + later, [node("a", 8), node("b", 8)], {})
    assert nodes_of(placements) == {E: {"a"}, N: {"b"}}


def test_a_multi_node_task_of_an_exclusive_job_takes_only_nodes_no_other_job_uses():
    running = Holding(N, 1, (Seat("c", 1),))
    wide = task(E, 1, nodes=2, cores=2)
    queued = [wide, task(N, 2, minutes=1), task(N, 3, minutes=1)]
    nodes = [node("a"), node("b"), node("c", 8)]
    placements = plan(queued, nodes, {"c": 1}, running=[running])
    assert nodes_of(placements) == {E: {"a", "b"}, N: {"c"}}


def test_a_normal_multi_node_task_never_spans_a_node_an_exclusive_job_holds():
    running = Holding(E, 1, (Seat("a", 1),), job_exclusive=True)
    placements = plan([task(N, 1, nodes=2)], [node("a"), node("b")], {"a": 1}, running=[running])
    assert placements == []


def test_a_task_exclusive_task_in_an_exclusive_job_still_takes_a_whole_node():
    queued = [task(E, 1), task(E, 2, exclusive=True)]
    placements = plan(queued, [node("a"), node("b")], {})
    assert [(p.node, p.hosts[0].cores) for p in placements] == [("a", 1), ("b", 4)]


def test_growth_of_max_cores_stays_on_its_own_node():
    queued = [task(N, 1), task(E, 1, cores=1, max_cores=4, minutes=1)]
    placements = plan(queued, [node("a"), node("b")], {})
    grants = {(p.job_id, h.node): h.cores for p in placements for h in p.hosts}
    assert grants == {(N, "a"): 1, (E, "b"): 4}


def test_an_exclusive_reservation_never_counts_on_a_node_another_job_keeps():
    running = [
        Holding(3, 1, (Seat("a", 3),), 50, T0),  # ends at +50 s
        Holding(6, 1, (Seat("a", 1),)),  # no limit: a is never free of other jobs
        Holding(N, 1, (Seat("b", 3),), 100, T0),  # ends at +100 s; b has a core free now
    ]
    decision = decide(
        [task(E, 1)], [node("a"), node("b")], {"a": 4, "b": 3}, running=running, now=T0
    )
    assert decision.reservation is not None
    assert decision.reservation.nodes == ("b",)
    assert decision.reservation.at == T0.timestamp() + 100


def test_backfill_never_takes_the_node_an_exclusive_jobs_reservation_counts_on():
    spaces = [Space("a", (), 0, 4, jobs=frozenset({3})), Space("b", (), 3, 4, jobs=frozenset({N}))]
    busy = [Busy("a", 4, None, 3), Busy("b", 1, 100.0, N)]
    queue = [Request("E1", 1, job=E, job_exclusive=True), Request("n4", 1, job=4)]
    decision = schedule(queue, spaces, busy, now=0.0)
    assert decision.starts == []
    assert decision.reservation is not None and decision.reservation.nodes == ("b",)


def test_an_exclusive_jobs_backfill_never_takes_a_node_another_jobs_reservation_counts_on():
    spaces = [Space("a", (), 4, 4), Space("b", (), 0, 4, jobs=frozenset({5}))]
    busy = [Busy("b", 4, 100.0, 5)]
    queue = [Request("wide", 2, nodes=2, job=N), Request("E1", 1, job=E, job_exclusive=True)]
    decision = schedule(queue, spaces, busy, now=0.0)
    assert decision.starts == []
    assert decision.reservation is not None and set(decision.reservation.nodes) == {"a", "b"}


def test_a_backfill_that_ends_before_the_reservation_may_still_use_its_node():
    spaces = [Space("a", (), 0, 4, jobs=frozenset({3})), Space("b", (), 3, 4, jobs=frozenset({N}))]
    busy = [Busy("a", 4, None, 3), Busy("b", 1, 100.0, N)]
    queue = [Request("E1", 1, job=E, job_exclusive=True), Request("n4", 1, limit_s=50, job=4)]
    decision = schedule(queue, spaces, busy, now=0.0)
    assert [s.key for s in decision.starts] == ["n4"]
