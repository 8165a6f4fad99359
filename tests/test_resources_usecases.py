"""Resource requests, the use cases on the embedded store: cores as a number or a {min, max}
range (HPC_TASK_CORES), exclusive nodes, and multi-node tasks (all nodes or none; HPC_NODES).
"""

# ruff: noqa: F811 - pytest fixtures imported from other test modules

from __future__ import annotations

import pytest

from shared.domain.messages import CancelTask
from shared.domain.states import NodeState, TaskState
from shared.errors import InvalidRequest
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures

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
    cp.node_action("drain", ["n1"])  # its task runs on: its cores stay counted as used
    assert {n["name"]: n["usedCores"] for n in cp.list_nodes()} == {"n1": 2, "n2": 2}
    cp.node_action("start", ["n1"])
    reason = cp.job_pending_reasons([cp.get_job(other.id)])[other.id]
    assert reason.startswith("waiting for 1 free core(s) on one node")
    stored = cp.get_task(job.id, 1)
    assert [(h.node, h.cores) for h in stored.hosts] == [(first.name, 2), (second.name, 2)]
    first.send(first.started(run), first.ended(run))
    assert cp.get_task(job.id, 1).state is TaskState.FINISHED
    assert {n["name"]: n["freeCores"] for n in cp.list_nodes()} == {"n1": 2, "n2": 2}
    assert cp.schedule_pass() == 1
    cp.node_action(
        "drain", ["n2"]
    )  # a node that takes no work has no free cores (a probe: Offline VMs)
    assert {n["name"]: n["freeCores"] for n in cp.list_nodes()}["n2"] == 0


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
    with pytest.raises(InvalidRequest, match="asks for 3 nodes with 1 core each .* has 2"):
        cp.submit({"command": "x", "nodes": 3})
    with pytest.raises(InvalidRequest, match="asks for 2 nodes with 4 cores each .* has 1"):
        cp.submit({"command": "x", "nodes": 2, "cores": 4})
    with pytest.raises(InvalidRequest, match="asks for 8 cores but the largest node"):
        cp.submit({"command": "x", "cores": {"min": 8, "max": 16}})
    with pytest.raises(InvalidRequest, match="cores max 2 is below its min 4"):
        cp.submit({"command": "x", "cores": {"min": 4, "max": 2}})
    with pytest.raises(InvalidRequest, match="nodes: must be at least 1, got 0"):
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


def test_taking_an_offline_node_offline_says_who_held_it(cp):
    """A probe's held VM still read "added: VM created, deallocated"."""
    register(cp, "n9", cores=1)
    node = cp.store.get_node("n9")
    node.move_to(NodeState.OFFLINE, reason="added: VM created, deallocated")
    cp.store.put_node(node)
    [held] = cp.node_action("offline", ["n9"], reason="taken offline by ann: disk swap")
    assert (held.held, held.state_reason) == ("offline", "taken offline by ann: disk swap")
