"""Consumable memory in the pure scheduler (Slurm's ``CR_Core_Memory``): a running task holds
its ``minMemoryMb`` on each of its nodes until it ends, and a task goes only where the rest
covers its ask, in placement, multi-node tasks, growth and EASY's reservation and backfill
(shared.domain.scheduler, capacity, reservation, memoryfit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.cluster import Node
from shared.domain.hosts import Holding, Seat
from shared.domain.hosts import used_cores as used_of
from shared.domain.models import Task
from shared.domain.protocol import AGENT_PROTOCOL
from shared.domain.scheduler import decide, plan
from shared.domain.states import NodeState

G = 1024
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def node(name: str, memory_gb: int | None, cores: int = 4) -> Node:
    memory = None if memory_gb is None else memory_gb * G
    return Node(
        name=name,
        cores=cores,
        groups=["G"],
        state=NodeState.ONLINE,
        memory_mb=memory,
        agent_protocol=AGENT_PROTOCOL,  # reads a runtime limit's assignment
    )


def task(tid: int, memory_gb: int | None, *, job: int = 1, **kw) -> Task:
    memory = None if memory_gb is None else memory_gb * G
    when = T0 + timedelta(seconds=tid)
    return Task(job_id=job, id=tid, command="x", min_memory_mb=memory, submit_time=when, **kw)


def holding(tid: int, memory_gb: int | None, *nodes: str, cores: int = 1, limit=None) -> Holding:
    seats = tuple(Seat(n, cores) for n in nodes)
    memory = None if memory_gb is None else memory_gb * G
    return Holding(9, tid, seats, limit, T0 if limit else None, memory_mb=memory)


def placed(queued, nodes, running=()) -> dict[int, tuple[str, ...]]:
    out = plan(queued, nodes, used_of(running), running=list(running), now=T0)
    return {p.task_id: tuple(h.node for h in p.hosts) for p in out}


def test_two_8_gb_tasks_on_a_12_gb_node_one_runs_the_other_waits():
    assert placed([task(1, 8), task(2, 8)], [node("a", 12)]) == {1: ("a",)}


def test_two_8_gb_tasks_run_at_once_on_a_16_gb_node():
    assert placed([task(1, 8), task(2, 8)], [node("a", 16)]) == {1: ("a",), 2: ("a",)}


def test_tasks_asking_no_memory_still_share_a_node_whose_memory_is_held():
    running = [holding(1, 12, "a")]
    got = placed([task(2, None), task(3, None), task(4, 1)], [node("a", 12)], running)
    assert got == {2: ("a",), 3: ("a",)}


def test_a_running_task_holds_its_memory_until_it_ends_then_the_next_pass_places_the_next():
    nodes = [node("a", 12)]
    assert placed([task(2, 8)], nodes, [holding(1, 8, "a")]) == {}
    assert placed([task(2, 8)], nodes, []) == {2: ("a",)}  # it ended: nothing holds it


def test_the_most_free_cores_node_is_passed_over_when_its_memory_is_held():
    nodes = [node("a", 16, cores=8), node("b", 16, cores=4)]
    assert placed([task(2, 8)], nodes, [holding(1, 12, "a")]) == {2: ("b",)}


def test_a_multi_node_task_needs_its_memory_free_on_each_node():
    nodes = [node("a", 12), node("b", 12), node("c", 12)]
    wide = task(2, 8, nodes=2)
    assert placed([wide], nodes, [holding(1, 8, "a", cores=0)]) == {2: ("b", "c")}
    assert placed([wide], nodes, [holding(1, 8, "a"), holding(3, 6, "b")]) == {}


def test_a_multi_node_task_holds_memory_on_each_of_its_nodes_in_the_same_pass():
    nodes = [node("a", 12), node("b", 12)]
    got = placed([task(1, 8, nodes=2), task(2, 8), task(3, 4)], nodes)
    assert got.keys() == {1, 3} and got[1] == ("a", "b")  # 4 GB left on each: not 8


def test_max_cores_growth_adds_cores_not_memory():
    nodes = [node("a", 16, cores=8)]
    out = plan([task(1, 8, max_cores=6), task(2, 8)], nodes, {}, now=T0)
    assert {p.task_id: p.hosts[0].cores for p in out} == {1: 6, 2: 1}


def test_an_exclusive_task_on_an_idle_node_and_memory_held_elsewhere():
    nodes = [node("a", 16), node("b", 16)]
    assert placed([task(2, 8, exclusive=True)], nodes, [holding(1, 12, "a")]) == {2: ("b",)}


def test_backfill_never_takes_memory_the_reservation_counts_on():
    """The head (2 cores, 12 GB) waits for cores until a 3-core task ends at +100 s; by then
    the node's 16 GB are free, of which the head leaves 4 GB: a backfill without a limit may
    take 4 GB, not 8 (old rule: cores alone, the 8 GB one started and the head would then
    lack memory), and one that ends before +100 s may take the 8 GB."""
    nodes = [node("a", 16)]
    running = [holding(1, 2, "a", cores=3, limit=100)]
    head = task(2, 12, cores=2)
    assert placed([head, task(3, 8)], nodes, running) == {}
    assert placed([head, task(3, 4)], nodes, running) == {3: ("a",)}
    assert placed([head, task(3, 8, runtime_limit_s=50)], nodes, running) == {3: ("a",)}
    decision = decide([head], nodes, {"a": 3}, running=running, now=T0)
    assert decision.reservation is not None and decision.reservation.at == T0.timestamp() + 100


def test_a_reservation_waits_for_the_memory_ends_free():
    """The head asks 8 GB of a 16 GB node where two tasks hold 6 GB each, ending at +100 s
    and +200 s: cores are free now, its memory from +100 s (10 GB free then, 2 spare)."""
    nodes = [node("a", 16, cores=8)]
    running = [holding(1, 6, "a", limit=100), holding(3, 6, "a", limit=200)]
    decision = decide([task(2, 8)], nodes, {"a": 2}, running=running, now=T0)
    assert decision.starts == []
    assert decision.reservation is not None
    assert decision.reservation.at == T0.timestamp() + 100
    assert decision.reservation.spare_mb == {"a": 2 * G}
    decision = decide([task(2, 12)], nodes, {"a": 2}, running=running, now=T0)
    assert decision.reservation is not None  # 12 GB: only once both have ended
    assert decision.reservation.at == T0.timestamp() + 200


def test_an_unknown_time_reservation_leaves_only_the_memory_beyond_its_ask():
    """The head waits for memory a task without a runtime limit holds: the node drains of
    memory for it; its free cores and memory beyond its ask stay usable."""
    nodes = [node("a", 16, cores=8)]
    running = [holding(1, 10, "a")]  # no limit: unknown time; 6 GB free
    head = task(2, 12, cores=2)
    assert placed([head, task(3, 2)], nodes, running) == {}  # the 6 GB are the head's
    assert placed([head, task(3, None)], nodes, running) == {3: ("a",)}
