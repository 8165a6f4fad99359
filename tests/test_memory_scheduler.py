"""Memory as a node filter in the scheduler (HPC Pack's MinMemory, Slurm's ``--mem`` without
memory as a consumable resource): a request asking for memory goes only on nodes known to
have that much, EASY reserves only such nodes, and nothing changes for requests asking none.
Pure tables on a fake clock (``now`` is a number)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.capacity import FreeCores, Space, eligible
from shared.domain.cluster import Node
from shared.domain.models import Task
from shared.domain.scheduler import Busy, Request, decide, plan, request, schedule
from shared.domain.states import NodeState

G = 1024  # MB in a GB
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def starts(queue, spaces, busy=(), now=0.0):
    decision = schedule(queue, spaces, list(busy), now=now)
    return {s.key: s.nodes for s in decision.starts}, decision.reservation


@pytest.mark.parametrize(
    ("asked", "has", "ok"),
    [
        (None, None, True),  # no request: any node, even of unknown memory
        (None, 16 * G, True),
        (64 * G, None, False),  # unknown memory fits no request
        (64 * G, 16 * G, False),
        (64 * G, 64 * G, True),
        (64 * G, 128 * G, True),
    ],
)
def test_a_node_is_eligible_only_with_the_memory_asked(asked, has, ok):
    assert eligible(frozenset(), Space("n", (), 4, 4, memory_mb=has), 1, asked) is ok


SPACES = [
    Space("a", (), 4, 4, memory_mb=16 * G),
    Space("b", (), 2, 4, memory_mb=64 * G),
    Space("c", (), 4, 4),  # an agent older than memory reporting: unknown
]


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        # a node with enough memory, though it is not the most free
        ([Request("m", 1, memory_mb=32 * G)], {"m": ("b",)}),
        ([Request("m", 1, memory_mb=64 * G)], {"m": ("b",)}),
        ([Request("m", 1, memory_mb=128 * G)], {}),  # no node has it
        ([Request("m", 1, memory_mb=8 * G)], {"m": ("a",)}),  # a has 8 GB; c's is unknown
        # none asked: the most free first, by name, as before (c of unknown memory too)
        ([Request("x", 4), Request("y", 4)], {"x": ("a",), "y": ("c",)}),
        # multi-node: each node must have it; only b has 64 GB
        ([Request("w", 1, nodes=2, memory_mb=64 * G)], {}),
        ([Request("w", 1, nodes=2, memory_mb=16 * G)], {"w": ("a", "b")}),
        # exclusive: an idle node with the memory; b is not idle
        ([Request("e", 1, exclusive=True, memory_mb=64 * G)], {}),
        ([Request("e", 1, exclusive=True, memory_mb=16 * G)], {"e": ("a",)}),
    ],
)
def test_a_memory_request_starts_only_on_nodes_that_have_it(queue, expected):
    busy = [Busy("b", 2, None)]
    assert starts(queue, SPACES, busy)[0] == expected


def test_a_request_no_node_can_ever_hold_gets_no_reservation_and_blocks_nothing():
    """128 GB on no node: no reservation (it never fits), so the 1-core task behind it runs
    although every runtime limit is unknown."""
    got, reservation = starts(
        [Request("big", 1, memory_mb=128 * G), Request("s", 1)], SPACES, [Busy("b", 2, None)]
    )
    assert reservation is None and got == {"s": ("a",)}


@pytest.mark.parametrize("until", [(100.0, 50.0), (None, None)], ids=["known", "unknown"])
def test_easys_reservation_takes_only_nodes_with_the_memory(until):
    """Head H (4 cores, 32 GB) fits nowhere now (spare has 2 cores free, and 8 GB). Node small
    (16 GB) frees up first, node big (64 GB) later: H is reserved big, at its time (or at an
    unknown time), never small; a 1-core task asking no memory backfills spare."""
    spaces = [
        Space("big", (), 0, 4, memory_mb=64 * G),
        Space("small", (), 0, 4, memory_mb=16 * G),
        Space("spare", (), 2, 4, memory_mb=8 * G),
    ]
    busy = [Busy("big", 4, until[0]), Busy("small", 4, until[1]), Busy("spare", 2, None)]
    got, reservation = starts([Request("H", 4, memory_mb=32 * G), Request("s", 1)], spaces, busy)
    assert reservation is not None and reservation.nodes == ("big",)
    assert reservation.at == until[0] and got == {"s": ("spare",)}


def test_free_cores_fit_filters_on_memory():
    free = FreeCores(SPACES)
    assert [s.name for s in free.fit(1, 1, frozenset(), memory_mb=64 * G) or []] == ["b"]
    assert free.fit(1, 1, frozenset(), memory_mb=256 * G) is None
    assert [s.name for s in free.fit(1, 1, frozenset()) or []] == ["a"]


# ------------------------------------------------------------ the cluster's records


def node(name: str, memory_mb: int | None, cores: int = 4) -> Node:
    return Node(name=name, cores=cores, state=NodeState.ONLINE, incarnation=1, memory_mb=memory_mb)


def task(task_id: int, memory_mb: int | None = None, cores: int = 1) -> Task:
    return Task(job_id=1, id=task_id, command="x", cores=cores, min_memory_mb=memory_mb)


def test_a_tasks_memory_is_what_it_asks_the_scheduler():
    assert request(task(1, 4 * G)).memory_mb == 4 * G
    assert request(task(1)).memory_mb is None


@pytest.mark.parametrize(
    ("queued", "expected"),
    [
        ([task(1, 64 * G)], {1: "big"}),  # not the most free, nor of unknown memory
        ([task(1, 8 * G)], {1: "small"}),  # small has 16 GB and the most free cores
        ([task(1, 65 * G)], {}),
        ([task(1)], {1: "a-unknown"}),  # none asked: most free, then by name
    ],
)
def test_plan_places_a_memory_task_only_on_a_node_with_the_memory(queued, expected):
    nodes = [node("a-unknown", None), node("big", 64 * G), node("small", 16 * G)]
    used = {"big": 2}
    got = {p.task_id: p.node for p in plan(queued, nodes, used, now=T0)}
    assert got == expected


def test_the_pass_reserves_only_a_node_with_the_memory():
    nodes = [node("big", 64 * G), node("small", 16 * G), node("spare", 8 * G)]
    running = [
        Task(
            job_id=9,
            id=n,
            command="x",
            cores=4,
            state="Running",
            node=name,
            dispatch_time=T0,
            runtime_limit_s=limit,
            hosts=[{"node": name, "cores": 4, "incarnation": 1}],
        )  # fmt: skip
        for n, (name, limit) in enumerate([("big", 600), ("small", 60)], start=1)
    ]
    used = {"big": 4, "small": 4, "spare": 2}
    reservation = decide(
        [task(1, 32 * G, cores=4)], nodes, used, running=running, now=T0
    ).reservation
    assert reservation is not None and reservation.nodes == ("big",)
