"""Resource requests, the pure rules as tables: cores as a number or a {min, max} range
(HPC_TASK_CORES), exclusive nodes, and multi-node tasks (all nodes or none; HPC_NODES); and
the reconciler's rule for a lost node of a multi-node task.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain import hosts, pending, scheduler
from shared.domain.capacity import Space
from shared.domain.cluster import Node
from shared.domain.models import Host, Task
from shared.domain.scheduler import Busy, Request, schedule
from shared.domain.states import NodeState, TaskState

# --- the pure rules -------------------------------------------------------------------


def starts(decision: scheduler.Decision) -> dict[object, tuple[tuple[str, ...], tuple[int, ...]]]:
    return {s.key: (s.nodes, s.cores) for s in decision.starts}


@pytest.mark.parametrize(
    ("spaces", "queue", "expected"),
    [
        pytest.param(
            [Space("a", (), 2, 4), Space("b", (), 4, 4)],
            [Request("x", 1, exclusive=True)],
            {"x": (("b",), (4,))},
            id="exclusive-takes-the-idle-node-and-all-its-cores",
        ),
        pytest.param(
            [Space("a", (), 3, 4), Space("b", (), 1, 2)],
            [Request("x", 1, exclusive=True), Request("y", 1)],
            {"y": (("b",), (1,))},  # (a, the most free, drains for x)
            id="exclusive-waits-when-no-node-is-idle",
        ),
        pytest.param(
            [Space("a", (), 4, 4), Space("b", (), 4, 4)],
            [Request("x", 1, exclusive=True), Request("y", 4), Request("z", 1)],
            {"x": (("a",), (4,)), "y": (("b",), (4,))},
            id="an-exclusive-node-gets-nothing-else",
        ),
        pytest.param(
            [Space("a", (), 2, 8)],
            [Request("x", 2, exclusive=True)],
            {},
            id="exclusive-never-shares-a-busy-node-even-if-cores-fit",
        ),
        pytest.param(
            [Space("a", (), 4, 4), Space("b", (), 2, 4), Space("c", (), 4, 4)],
            [Request("mpi", 4, nodes=3), Request("one", 2)],
            {},  # (and its three nodes are reserved for it: "one" may not take a's cores)
            id="multi-node-is-all-or-nothing",
        ),
        pytest.param(
            [Space("a", (), 2, 2), Space("b", (), 2, 2), Space("c", (), 2, 2)],
            [Request("A", 2, nodes=2), Request("B", 2, nodes=2)],
            {"A": (("a", "b"), (2, 2))},
            id="two-multi-node-requests-never-hold-part-of-the-nodes",
        ),
        pytest.param(
            [Space("a", (), 8, 8)],
            [Request("x", 2, max_cores=8)],
            {"x": (("a",), (8,))},
            id="a-range-grows-to-max-when-free",
        ),
        pytest.param(
            [Space("a", (), 8, 8)],
            [Request("x", 2, max_cores=8), Request("y", 4)],
            {"x": (("a",), (4,)), "y": (("a",), (4,))},
            id="a-range-grows-only-into-what-the-pass-leaves",
        ),
        pytest.param(
            [Space("a", (), 3, 8), Space("b", (), 5, 8)],
            [Request("x", 2, nodes=2, max_cores=4)],
            {"x": (("b", "a"), (4, 3))},
            id="a-range-grows-on-each-node",
        ),
        pytest.param(
            [Space("a", (), 1, 8)],
            [Request("x", 2, max_cores=8)],
            {},
            id="a-range-needs-its-min",
        ),
    ],
)
def test_scheduler_resource_rules(spaces, queue, expected):
    assert starts(schedule(queue, spaces, [], now=0.0)) == expected


def test_growth_leaves_the_reserved_request_its_cores():
    # a: 8 cores, 4 busy until t=100. "big" needs 6: reserved at t=100, 2 spare then.
    spaces = [Space("a", (), 4, 8)]
    busy = [Busy("a", 4, 100.0)]
    queue = [Request("big", 6, limit_s=50), Request("x", 1, max_cores=8)]
    decision = schedule(queue, spaces, busy, now=0.0)
    assert decision.reservation is not None and decision.reservation.at == 100.0
    assert starts(decision) == {"x": (("a",), (2,))}  # 1 + the one spare core left
    # One that ends before the reservation may take every free core.
    queue = [Request("big", 6, limit_s=50), Request("x", 1, limit_s=60, max_cores=8)]
    assert starts(schedule(queue, spaces, busy, now=0.0)) == {"x": (("a",), (4,))}


def test_an_exclusive_request_is_reserved_a_whole_node():
    spaces = [Space("a", (), 3, 4), Space("b", (), 1, 4)]
    busy = [Busy("a", 1, 100.0), Busy("b", 3, 200.0)]
    queue = [
        Request("x", 1, exclusive=True),
        Request("long", 1),
        Request("short", 1, limit_s=50),
        Request("another", 1),
    ]
    decision = schedule(queue, spaces, busy, now=0.0)
    assert decision.reservation is not None
    assert (decision.reservation.at, decision.reservation.nodes) == (100.0, ("a",))
    assert decision.reservation.spare == {"a": 0}
    # "long" (no limit) fits on b, outside the reservation; "short" ends before the
    # reservation; "another" would hold a core of a past it, so it waits.
    assert starts(decision) == {"long": (("b",), (1,)), "short": (("a",), (1,))}


def node(name: str, cores: int = 4, groups=("G",), state=NodeState.ONLINE) -> Node:
    return Node(name=name, groups=list(groups), cores=cores, state=state, incarnation=1)


def task(tid: int = 1, **kw) -> Task:
    return Task(job_id=1, id=tid, command="x", node_groups=["G"], **kw)


def running(tid: int, *held: tuple[str, int], limit: int | None = None) -> Task:
    t = task(tid, state=TaskState.RUNNING, runtime_limit_s=limit, nodes=len(held))
    t.node, t.incarnation = held[0][0], 1
    t.hosts = [Host(node=n, cores=c, incarnation=1) for n, c in held]
    t.dispatch_time = datetime(2026, 1, 1, tzinfo=UTC)
    return t


def test_a_multi_node_task_holds_cores_on_every_node():
    mpi = running(1, ("a", 4), ("b", 2))
    old = task(2, state=TaskState.RUNNING, node="c", cores=3)  # dispatched before hosts
    assert hosts.used_cores([mpi, old]) == {"a": 4, "b": 2, "c": 3}
    assert hosts.granted_cores(mpi) == 6
    assert hosts.host_list(mpi.hosts) == "a:4,b:2"


def test_plan_places_nothing_on_cores_a_second_node_of_a_task_holds():
    nodes = [node("a", 2), node("b", 2)]
    active = [running(1, ("a", 2), ("b", 2))]
    used = hosts.used_cores(active)
    assert scheduler.plan([task(2)], nodes, used, running=active) == []


def test_plan_gives_every_host_its_granted_cores_and_incarnation():
    nodes = [node("a", 8), node("b", 8)]
    nodes[1].incarnation = 5
    queued = [task(1, cores=2, max_cores=6, nodes=2)]
    [p] = scheduler.plan(queued, nodes, {"a": 4})
    assert p.node == p.hosts[0].node == "b"
    assert [(h.node, h.cores, h.incarnation) for h in p.hosts] == [("b", 6, 5), ("a", 4, 1)]


@pytest.mark.parametrize(
    ("held", "states", "expected"),
    [
        ([("a", 1), ("b", 1)], {}, None),
        ([("a", 1), ("b", 1)], {"b": NodeState.UNREACHABLE}, "node b became unreachable"),
        ([("a", 1), ("b", 1)], {"b": NodeState.OFFLINE}, "node b went offline"),
        ([("a", 1), ("b", 1)], {"b": "restarted"}, "agent on b restarted"),
        ([("a", 1), ("b", 1)], {"b": "removed"}, "node b was removed"),
        ([("a", 1), ("b", 1)], {"a": NodeState.UNREACHABLE}, "node a became unreachable"),
        ([("a", 1)], {"b": NodeState.UNREACHABLE}, None),
    ],
)
def test_losing_any_node_of_a_task_loses_its_attempt(held, states, expected):
    by_name = {n: node(n) for n in ("a", "b")}
    for name, what in states.items():
        if what == "removed":
            del by_name[name]
        elif what == "restarted":
            by_name[name].incarnation = 2
        else:
            by_name[name].state = what
    why = hosts.lost_host(running(1, *held), by_name)
    assert (why is None) == (expected is None), why
    if expected is not None:
        assert why is not None and why.startswith(expected)


@pytest.mark.parametrize(
    ("queued", "used", "expected"),
    [
        (task(nodes=3), {}, "needs 3 nodes with 1 core(s) each; G has 2 Online node(s)"),
        (task(nodes=2, cores=2), {}, "next in line: 2 nodes with 2 free core(s) each in G"),
        (
            task(nodes=2, cores=2),
            {"a": 3},
            "waiting for 2 nodes with 2 free core(s) each in G (all at once; 1 of 2 ",
        ),
        (task(exclusive=True), {"a": 1}, "next in line: an idle node in G"),
        (
            task(exclusive=True),
            {"a": 1, "b": 1},
            "waiting for an idle node in G (exclusive: nothing else may run there; 0 of 2",
        ),
        (task(exclusive=True, cores=8), {}, "needs a node with 8 core(s); G has 0 Online"),
    ],
)
def test_pending_reasons_of_wide_and_exclusive_tasks(queued, used, expected):
    reason = pending.pending_reason(queued, [node("a"), node("b")], used)
    assert reason is not None and reason.startswith(expected), reason
