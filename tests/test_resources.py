"""Resource requests: cores as a number or a {min, max} range (HPC_TASK_CORES), exclusive
nodes, and multi-node tasks (all nodes or none; HPC_NODES) — the pure scheduler rules as
tables, then the use cases on the embedded store, the CLI, and the reconciler's rule for a
lost node of a multi-node task."""

# ruff: noqa: F811 - pytest fixtures imported from other test modules

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hpc.spec import build_spec, parse_cores
from shared.domain import hosts, pending, scheduler
from shared.domain.capacity import Space
from shared.domain.messages import CancelTask
from shared.domain.models import Host, Node, Task
from shared.domain.scheduler import Busy, Request, schedule
from shared.domain.states import NodeState, TaskState
from shared.errors import InvalidRequest
from tests.test_cli import api, hpc, server  # noqa: F401 - fixtures
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures

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
            {"y": (("a",), (1,))},
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
            {"one": (("a",), (2,))},
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


# --- use cases on the embedded store ---------------------------------------------------


def test_a_two_node_task_runs_on_its_first_node_with_hpc_nodes(cp):
    n1 = register(cp, "n1", cores=2)
    n2 = register(cp, "n2", cores=2)
    job = cp.submit({"command": "mpirun", "nodes": 2, "cores": 2})
    other = cp.submit({"command": "x"})
    assert cp.schedule_pass() == 1
    [run] = n1.runs() + n2.runs()
    assert run.job_id == job.id and run.cores == 2
    first, second = (n1, n2) if run.env["HPC_NODE_NAME"] == "n1" else (n2, n1)
    assert run.env["HPC_NODES"] == f"{first.name}:2,{second.name}:2"
    assert run.env["HPC_TASK_CORES"] == "4"
    assert {n["name"]: n["freeCores"] for n in cp.list_nodes()} == {"n1": 0, "n2": 0}
    reason = cp.job_pending_reasons([cp.get_job(other.id)])[other.id]
    assert reason.startswith("waiting for 1 free core(s) on one node")
    stored = cp.get_task(job.id, 1)
    assert [(h.node, h.cores) for h in stored.hosts] == [(first.name, 2), (second.name, 2)]
    first.send(first.started(run), first.ended(run))
    assert cp.get_task(job.id, 1).state is TaskState.FINISHED
    assert {n["name"]: n["freeCores"] for n in cp.list_nodes()} == {"n1": 2, "n2": 2}
    assert cp.schedule_pass() == 1


def test_every_task_sees_its_granted_cores(cp):
    n1 = register(cp, "n1", cores=8)
    cp.submit({"command": "x", "cores": 3})
    cp.submit({"command": "y", "cores": {"min": 2, "max": 4}})
    cp.submit({"command": "z", "cores": {"min": 1, "max": 8}})
    assert cp.schedule_pass() == 3
    runs = {r.command: r for r in n1.runs()}
    # z is placed on its min (1), then grows into what the pass left: 8 - 3 - 4 - 1 = 0.
    assert {c: (r.cores, r.env["HPC_TASK_CORES"]) for c, r in runs.items()} == {
        "x": (3, "3"),
        "y": (4, "4"),
        "z": (1, "1"),
    }
    assert runs["x"].env["HPC_NODES"] == "n1:3"


def test_an_exclusive_task_gets_an_idle_node_and_holds_all_of_it(cp):
    n1 = register(cp, "n1", cores=4)
    n2 = register(cp, "n2", cores=4)
    cp.submit({"command": "busy"})
    assert cp.schedule_pass() == 1
    busy = (n1.runs() + n2.runs())[0]
    job = cp.submit({"command": "alone", "exclusive": True})
    cp.submit({"command": "later"})
    assert cp.schedule_pass() == 2
    runs = {r.command: r for r in n1.runs() + n2.runs()}
    alone, later = runs["alone"], runs["later"]
    assert alone.env["HPC_NODE_NAME"] != busy.env["HPC_NODE_NAME"]
    assert later.env["HPC_NODE_NAME"] == busy.env["HPC_NODE_NAME"]
    assert alone.env["HPC_TASK_CORES"] == "4" and alone.cores == 4
    free = {n["name"]: n["freeCores"] for n in cp.list_nodes()}
    assert free[alone.env["HPC_NODE_NAME"]] == 0
    assert cp.get_task(job.id, 1).exclusive


def test_submit_refuses_what_no_nodes_could_hold(cp):
    register(cp, "n1", cores=4)
    register(cp, "n2", cores=2)
    with pytest.raises(InvalidRequest, match="asks for 3 nodes with 1 cores each .* has 2"):
        cp.submit({"command": "x", "nodes": 3})
    with pytest.raises(InvalidRequest, match="asks for 2 nodes with 4 cores each .* has 1"):
        cp.submit({"command": "x", "nodes": 2, "cores": 4})
    with pytest.raises(InvalidRequest, match="asks for 8 cores but the largest node"):
        cp.submit({"command": "x", "cores": {"min": 8, "max": 16}})
    with pytest.raises(InvalidRequest, match="cores max 2 is below its min 4"):
        cp.submit({"command": "x", "cores": {"min": 4, "max": 2}})
    with pytest.raises(InvalidRequest, match="nodes: Input should be greater than or equal to 1"):
        cp.submit({"tasks": [{"command": "x", "nodes": 0}]})
    assert cp.list_jobs() == []
    job = cp.submit({"command": "x", "cores": {"min": 2, "max": 16}, "nodes": 2})
    [stored] = cp.list_tasks(job.id)
    assert (stored.cores, stored.max_cores, stored.nodes) == (2, 16, 2)


def test_losing_the_second_node_requeues_a_multi_node_task(cp, clock):
    n1 = register(cp, "n1", cores=2)
    n2 = register(cp, "n2", cores=2)
    cp.reconcile()
    job = cp.submit({"command": "mpirun", "nodes": 2, "cores": 2})
    cp.schedule_pass()
    [run] = n1.runs() + n2.runs()
    first, second = (n1, n2) if run.env["HPC_NODE_NAME"] == "n1" else (n2, n1)
    first.send(first.started(run))
    key = f"{run.job_id}.{run.task_id}.{run.attempt}"
    for _ in range(3):  # the first node goes on heartbeating; the second falls silent
        clock.advance(4)
        first.send(first.heartbeat(running=[key]))
        cp.reconcile()
    assert cp.store.get_node(second.name).state is NodeState.UNREACHABLE
    task = cp.get_task(job.id, 1)
    assert task.state is TaskState.QUEUED and task.attempt == 1 and task.hosts == []
    assert task.error == f"node {second.name} became unreachable (no heartbeat for 10 s)"
    # The first node's agent is told to kill the old attempt at its next heartbeat.
    first.send(first.heartbeat(running=[key]))
    assert [type(a) for a in first.assignments()] == [CancelTask]
    free = {n["name"]: n["freeCores"] for n in cp.list_nodes()}
    assert free[first.name] == 2


def test_a_second_node_going_offline_requeues_a_multi_node_task(cp):
    n1 = register(cp, "n1", cores=2)
    n2 = register(cp, "n2", cores=2)
    job = cp.submit({"command": "mpirun", "nodes": 2, "cores": 2})
    cp.schedule_pass()
    [run] = n1.runs() + n2.runs()
    second = n2 if run.env["HPC_NODE_NAME"] == "n1" else n1
    second.send(second.stopping())
    assert cp.get_task(job.id, 1).state is TaskState.DISPATCHING  # its agent never had it
    cp.reconcile()
    task = cp.get_task(job.id, 1)
    assert task.state is TaskState.QUEUED
    assert task.error is not None and task.error.startswith(f"node {second.name} went offline")


# --- the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4", 4), ("2-8", {"min": 2, "max": 8}), (" 3 - 3 ", {"min": 3, "max": 3})],
)
def test_cli_cores_is_n_or_min_max(text, expected):
    assert parse_cores(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("0", "at least 1 core"), ("8-2", "MAX 2 is below MIN 8"), ("two", "not N or MIN-MAX")],
)
def test_cli_cores_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_cores(text)


def test_build_spec_carries_exclusive_and_nodes():
    spec = build_spec(command="x", cores={"min": 1, "max": 4}, exclusive=True, nodes=2)
    assert spec["tasks"] == [
        {"command": "x", "cores": {"min": 1, "max": 4}, "exclusive": True, "nodes": 2}
    ]
    assert "exclusive" not in build_spec(command="x")["tasks"][0]


def test_cli_submit_sends_resource_options(api):
    result = hpc(
        "job", "submit", "--cores", "2-8", "--exclusive", "--nodes", "2", "--workdir", "/tmp",
        "--", "mpirun", "-np", "4", "app",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [body] = api.posted("/api/jobs")
    assert body["tasks"][0] == {
        "command": "mpirun -np 4 app",
        "cores": {"min": 2, "max": 8},
        "exclusive": True,
        "nodes": 2,
        "workDir": "/tmp",
    }
    bad = hpc("job", "submit", "--cores", "8-2", "--", "x")
    assert bad.exit_code != 0 and "MAX 2 is below MIN 8" in bad.stderr


# --- end to end: real agents ------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from hpc.localcluster import LocalCluster

    c = LocalCluster(tmp_path_factory.mktemp("res") / "hpc", nodes=2, cores=2)
    c.start()
    yield c
    assert c.stop() == 0


@pytest.mark.e2e
def test_a_two_node_task_sees_hpc_nodes_and_hpc_task_cores(cluster):
    echo = "echo nodes=$HPC_NODES cores=$HPC_TASK_CORES node=$HPC_NODE_NAME"
    job_id = cluster.submit(
        {
            "tasks": [
                {"command": echo, "nodes": 2, "cores": 2},
                {"command": echo, "cores": {"min": 1, "max": 2}},
            ]
        }
    )
    job = cluster.wait_job(job_id)
    assert job["state"] == "Finished", job
    wide, grown = cluster.tasks(job_id)
    first = wide["node"]
    [second] = {"onprem-1", "onprem-2"} - {first}
    assert wide["output"].strip() == f"nodes={first}:2,{second}:2 cores=4 node={first}"
    assert [(h["node"], h["cores"]) for h in wide["hosts"]] == [(first, 2), (second, 2)]
    # The second task waited for the first (it held all four cores), then grew to 2.
    node = grown["node"]
    assert grown["output"].strip() == f"nodes={node}:2 cores=2 node={node}"
