"""Jumps (shared/domain/jumps.py): a request that fits on free nodes starts ahead of
requests that wait for booting nodes when that lowers the estimated total wait; table
tests of the estimate and the rule, then the scheduler with and without boots."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.capacity import Space
from shared.domain.cluster import Node
from shared.domain.jumps import Boots, Coming, _Slot, boots_of, jumpers, projected
from shared.domain.models import Task
from shared.domain.requests import Busy, Request
from shared.domain.scheduler import plan, schedule
from shared.domain.states import NodeState

NOW = 1000.0
B = 180.0


def req(key: str, nodes: int = 1, limit: float = 3600.0, queued_at: float | None = None):
    return Request(key, 1, nodes, limit_s=limit, queued_at=queued_at)


def free(n: int) -> list[Space]:
    return [Space(f"f{i}", (), 1, 1) for i in range(n)]


def booting(*ready: float) -> list[Coming]:
    return [Coming(f"b{i}", (), 1, at) for i, at in enumerate(ready)]


@pytest.mark.parametrize(
    ("widths", "n_free", "ready", "starts"),
    [
        ([1], 1, [], [NOW]),  # fits on a free node
        ([2], 1, [NOW + 60], [NOW + 60]),  # one free, one booting: when it comes up
        ([3], 1, [NOW + 60], [NOW + B]),  # too few: a fresh boot
        ([2, 1], 1, [NOW + 60, NOW + 90], [NOW + 60, NOW + 90]),  # in order
        ([3, 1], 1, [NOW + 60], [NOW + B, NOW + B]),  # the head holds what there is
    ],
)
def test_projected_starts(widths, n_free, ready, starts):
    slots = [_Slot(f"f{i}", (), 1, NOW) for i in range(n_free)]
    slots += [_Slot(f"b{i}", (), 1, at) for i, at in enumerate(ready)]
    order = [req(str(i), w) for i, w in enumerate(widths)]
    assert projected(order, slots, NOW, B) == starts


def test_a_request_that_starts_now_frees_its_nodes_by_its_limit():
    slots = [_Slot("f0", (), 1, NOW), _Slot("b0", (), 1, NOW + 100)]
    # the first ends within 60 s: its node serves the second before a fresh boot would
    assert projected([req("a", limit=60), req("b", 2)], slots, NOW, B) == [NOW, NOW + 100]
    assert projected([req("a", limit=60), req("b")], slots[:1], NOW, B) == [NOW, NOW + 60]
    # a limit no shorter than a boot delay: a fresh boot comes first
    assert projected([req("a", limit=B), req("b")], slots[:1], NOW, B) == [NOW, NOW + B]
    # a request that waits frees nothing in the estimate
    assert projected([req("a", 2, limit=1), req("b")], slots, NOW, B) == [NOW + 100, NOW + B]


@pytest.mark.parametrize(
    ("queue", "n_free", "ready", "jump"),
    [
        # the head waits for 2 boots due in 100 s; a surplus boot due then too: the 1-node
        # request behind it would wait 100 s, taking the free node delays the head by 0
        ([req("h", 3), req("j")], 1, [NOW + 100] * 3, ["j"]),
        # no surplus boot: the head loses a fresh boot (180 s) - its 100 s: 80 < the 180 s
        # the jumper would wait for its own fresh boot
        ([req("h", 3), req("j")], 1, [NOW + 100] * 2, ["j"]),
        # the boots are due in 10 s: the jumper spares 10 s and costs the head nothing
        ([req("h", 3), req("j")], 1, [NOW + 10] * 3, ["j"]),
        # none spare: the head loses 170 s (a fresh boot) for the jumper's 180 s
        ([req("h", 3), req("j")], 1, [NOW + 10] * 2, ["j"]),
        # nothing booting: plain EASY
        ([req("h", 3), req("j")], 1, [], []),
        # it fits after the head anyway: no jump needed
        ([req("h", 2), req("j")], 3, [NOW + 100], []),
        # the head, queued a boot delay and a second ago, would wait past two boot delays
        # (its fresh boot, 180 s from now): no jump
        ([req("h", 3, queued_at=NOW - B - 1), req("j")], 1, [NOW + 100] * 2, []),
        # queued a boot delay ago: it waits exactly two, and may be passed over
        ([req("h", 3, queued_at=NOW - B), req("j")], 1, [NOW + 100] * 2, ["j"]),
        # a surplus boot: the head loses nothing, however long it has waited
        ([req("h", 3, queued_at=NOW - 10 * B), req("j")], 1, [NOW + 100] * 3, ["j"]),
        # two jumpers for two free nodes, in queue order; the third finds none
        ([req("h", 4), req("a"), req("b"), req("c")], 2, [NOW + 100] * 6, ["a", "b"]),
        # too wide for the free nodes
        ([req("h", 3), req("j", 2)], 1, [NOW + 100] * 4, []),
        # the head would wait past two boot delays, but the jumper's limit ends before the
        # head's boots are up: it gives the node back in time and delays nobody
        ([req("h", 3, queued_at=NOW - B - 1), req("j", limit=60)], 1, [NOW + 100] * 2, ["j"]),
    ],
)
def test_who_jumps(queue, n_free, ready, jump):
    chosen = jumpers(queue, free(n_free), Boots(booting(*ready), B), NOW)
    assert [r.key for r in chosen] == jump


def test_the_scheduler_starts_the_jumper_on_the_free_node():
    queue = [req("h", 3), req("j", limit=7200)]
    # EASY alone reserves the free node for the head, whose nodes free up in an hour
    spaces = [*free(1), Space("x1", (), 0, 1), Space("x2", (), 0, 1)]
    busy = [Busy("x1", 1, NOW + 3600), Busy("x2", 1, NOW + 3600)]
    plain = schedule(queue, spaces, busy, now=NOW)
    assert plain.starts == []
    assert plain.reservation is not None and plain.reservation.key == "h"
    boots = Boots(booting(NOW + 100, NOW + 100, NOW + 100), B)
    jumped = schedule(queue, spaces, busy, now=NOW, boots=boots)
    assert [(s.key, s.nodes) for s in jumped.starts] == [("j", ("f0",))]


def test_fcfs_never_jumps():
    queue = [req("h", 3), req("j")]
    boots = Boots(booting(NOW + 100, NOW + 100, NOW + 100), B)
    assert schedule(queue, free(1), [], now=NOW, policy="fcfs", boots=boots).starts == []


@pytest.mark.parametrize("seed", range(30))
def test_without_boots_the_decision_is_easys(seed):
    """No node booting: the same starts and reservation as without the argument."""
    rng = random.Random(seed)
    queue = [req(str(i), rng.randint(1, 4), rng.choice([60.0, 600.0, 3600.0])) for i in range(8)]
    spaces = free(rng.randint(0, 6))
    busy = [Busy(f"r{i}", 1, NOW + rng.randint(1, 4000)) for i in range(rng.randint(0, 4))]
    a = schedule(queue, spaces, busy, now=NOW)
    b = schedule(queue, free(len(spaces)), busy, now=NOW, boots=Boots([], B))
    assert [(s.key, s.nodes) for s in a.starts] == [(s.key, s.nodes) for s in b.starts]
    assert a.reservation == b.reservation


@pytest.mark.parametrize("seed", range(30))
def test_a_jump_never_raises_the_estimated_total_wait(seed):
    rng = random.Random(seed)
    queue = [req(str(i), rng.randint(1, 4)) for i in range(6)]
    n_free = rng.randint(1, 4)
    ready = [NOW + rng.randint(1, int(B)) for _ in range(rng.randint(1, 8))]
    chosen = jumpers(queue, free(n_free), Boots(booting(*ready), B), NOW)
    slots = [_Slot(f"f{i}", (), 1, NOW) for i in range(n_free)]
    slots += [_Slot(f"b{i}", (), 1, at) for i, at in enumerate(ready)]
    keys = {r.key for r in chosen}
    moved = chosen + [r for r in queue if r.key not in keys]
    before = sum(projected(queue, slots, NOW, B))
    after = sum(projected(moved, slots, NOW, B))
    assert after <= before
    assert all(t == NOW for t in projected(moved, slots, NOW, B)[: len(chosen)])


def test_the_clusters_plan_jumps_onto_a_free_vm_while_its_group_boots():
    """The cluster's path (scheduler.plan, as dispatch calls it): Starting VMs of a group
    with a boot delay become the boots, each up that delay after it began Starting."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def vm(name: str, state: NodeState) -> Node:
        return Node(name=name, cores=1, groups=["AzureNodes"], provider="local",
                    state=state, state_time=t0 - timedelta(seconds=60))  # fmt: skip

    up = [vm("a", NodeState.ONLINE), vm("x1", NodeState.ONLINE), vm("x2", NodeState.ONLINE)]
    coming = [vm(n, NodeState.STARTING) for n in ("b", "c", "d")]
    queued = [
        Task(job_id=1, id=1, command="true", nodes=3, submit_time=t0),
        Task(job_id=2, id=1, command="true", submit_time=t0),
    ]
    used = {"x1": 1, "x2": 1}
    assert plan(queued, up, used, now=t0) == []  # EASY keeps a for the head
    boots = boots_of([*up, *coming], {"AzureNodes": 180.0}, t0)
    assert boots is not None
    assert [c.ready_at for c in boots.coming] == [t0.timestamp() + 120] * 3
    placed = plan(queued, up, used, now=t0, boots=boots)
    assert [(p.job_id, p.node) for p in placed] == [(2, "a")]
    assert boots_of(up, {"AzureNodes": 180.0}, t0) is None  # nothing Starting


def test_only_the_window_at_the_head_is_weighed():
    queue = [req("h", 3), *(req(f"q{i}", 2) for i in range(4)), req("j")]
    boots = Boots(booting(NOW + 100, NOW + 100, NOW + 100), B, window=5)
    assert jumpers(queue, free(1), boots, NOW) == []  # j is the 6th
    wide = Boots(booting(NOW + 100, NOW + 100, NOW + 100), B, window=6)
    assert [r.key for r in jumpers(queue, free(1), wide, NOW)] == ["j"]


def mem_req(key: str, mb: int | None, nodes: int = 1) -> Request:
    return Request(key, 1, nodes, limit_s=7200.0, memory_mb=mb)


@pytest.mark.parametrize(
    ("memory_mb", "held_mb", "ask_mb", "jumps"),
    [
        (16_000, 0, 8_000, True),  # the free node has the memory: it jumps
        (16_000, 12_000, 8_000, False),  # its running tasks hold too much of it
        (None, 0, 8_000, False),  # a node of unknown memory takes no request asking any
        (None, 0, None, True),  # a request asking none, as before
        (8_000, 0, 8_000, True),  # exactly enough
    ],
)
def test_a_request_asking_for_memory_jumps_where_the_memory_is_free(
    memory_mb, held_mb, ask_mb, jumps
):
    """Before, a request asking for memory never jumped: with a template's memory per core
    (Slurm's DefMemPerCPU) no request of the cluster did."""
    spaces = [Space("f0", (), 1, 2, memory_mb=memory_mb, held_mb=held_mb)]
    queue = [req("h", 3), mem_req("j", ask_mb)]
    boots = Boots(booting(NOW + 100, NOW + 100, NOW + 100), B)
    assert [r.key for r in jumpers(queue, spaces, boots, NOW)] == (["j"] if jumps else [])
    started = schedule(queue, spaces, [], now=NOW, boots=boots).starts
    assert [(s.key, s.nodes) for s in started] == ([("j", ("f0",))] if jumps else [])


def test_the_estimate_places_requests_ahead_by_their_memory_too():
    """The head asks for more memory than the free node has: the booting nodes (memory not
    known yet, taken as enough) are its, and the request behind it starts now in order (by
    cores alone the head took the free node and the other waited for a fresh boot)."""
    queue = [mem_req("h", 8_000, nodes=2), mem_req("j", 2_000)]
    slots = [_Slot("f0", (), 1, NOW, 4_000), _Slot("b0", (), 1, NOW + 100)]
    slots.append(_Slot("b1", (), 1, NOW + 100))
    assert projected(queue, slots, NOW, B) == [NOW + 100, NOW]


def test_a_starting_node_tells_its_memory_to_the_estimate():
    node = Node(
        name="az-1",
        groups=["G"],
        cores=2,
        state=NodeState.STARTING,
        state_time=datetime.fromtimestamp(NOW, UTC),
        memory_mb=16_000,
    )
    boots = boots_of([node], {"G": B}, datetime.fromtimestamp(NOW, UTC))
    assert boots is not None and boots.coming[0].memory_mb == 16_000
