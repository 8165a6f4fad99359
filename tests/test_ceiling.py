"""Queued work that cannot fit under its group's maxNodes beside running work waits for
that work, not for nodes: no VM is started or kept for it (:mod:`shared.domain.ceiling`),
and once the work ends it fits and its nodes start. The fault: maxNodes 4, a 3-node job
running for hours, a queued 2-node job: one VM started for it idled, billing, meanwhile."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py and tests/test_nodes_admin.py

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.autoscaler_io import Reserved
from shared.domain.ceiling import Room, beyond_ceiling, rooms
from shared.domain.growshrink import AutoscalerPolicy, GroupPolicy
from shared.domain.models import Task
from shared.domain.reservedhold import unless_hidden
from shared.domain.states import NodeState
from shared.usecases.control_plane import ControlPlane
from tests.agent_double import AgentDouble
from tests.test_autoscaler import AZ, OFF, ON, ONPREM, STARTING, node
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixture

OTHER = "OtherNodes"


def ask(job: int, nodes: int = 1, cores: int = 1, groups=(AZ,), exclusive=False) -> Task:
    return Task(
        job_id=job, id=1, command="x", nodes=nodes, cores=cores, node_groups=list(groups),
        exclusive=exclusive,
    )  # fmt: skip


def hidden(queue, nodes, used, max_nodes=4, cores=1, other_max=None) -> list[int]:
    groups = {AZ: GroupPolicy(node_cores=cores, max_nodes=max_nodes)}
    if other_max is not None:
        groups[OTHER] = GroupPolicy(node_cores=cores, max_nodes=other_max)
    got = beyond_ceiling(queue, *rooms(nodes, used, AutoscalerPolicy(groups=groups)))
    return sorted(job for job, _ in got)


def az(count: int, state=OFF, cores: int = 1, group: str = AZ, first: int = 1):
    return [node(f"{group}-{i}", state, group, cores) for i in range(first, first + count)]


BUSY3 = {f"{AZ}-{i}": 1 for i in (1, 2, 3)}


FAULT = [*az(3, ON), *az(1, first=4)]  # 3 Online nodes, 1 Offline


@pytest.mark.parametrize(
    ("queue", "nodes", "used", "max_nodes", "expected"),
    [
        # the fault: 3 of maxNodes 4 busy, a 2-node task cannot fit until they end
        ([ask(1, 2)], FAULT, BUSY3, 4, [1]),
        # the running work ended: it fits again (it is not starved)
        ([ask(1, 2)], FAULT, {}, 4, []),
        # one node fits beside them; cumulative in queue order: the second 1-node task not
        ([ask(1), ask(2)], FAULT, BUSY3, 4, [2]),
        # a task that does not fit is skipped: a later one that fits is still shown
        ([ask(1, 2), ask(2)], FAULT, BUSY3, 4, [1]),
        # a Starting or idle Online node is no running work
        ([ask(1, 2)], [*az(2, ON), *az(1, STARTING, first=3), *az(1, first=4)],
         {f"{AZ}-1": 1}, 4, []),
        # under a higher maxNodes it fits (the group's notes say to add the nodes it lacks)
        ([ask(1, 2)], FAULT, BUSY3, 5, []),
        # an on-prem node may run it: never hidden (nor work allowed anywhere)
        ([ask(1, 2, groups=(AZ, ONPREM))], [*FAULT, node("P", ON, ONPREM)], BUSY3, 4, []),
        ([ask(1, 2, groups=())], [*FAULT, node("P", OFF, ONPREM)], BUSY3, 4, []),
        ([ask(1, 2, groups=())], FAULT, BUSY3, 4, [1]),  # no node but the group's
        # a maxNodes lowered below the busy nodes: nothing new fits beside them
        ([ask(1)], FAULT, BUSY3, 2, [1]),
    ],
)  # fmt: skip
def test_which_tasks_cannot_fit_beside_running_work(queue, nodes, used, max_nodes, expected):
    assert hidden(queue, nodes, used, max_nodes=max_nodes) == expected


def test_a_task_allowed_in_two_groups_spans_them_and_is_hidden_only_if_both_are_full():
    nodes = [*az(3, ON), *az(1, first=4), *az(2, ON, group=OTHER)]
    used = BUSY3 | {f"{OTHER}-1": 1}
    two = ask(1, 2, groups=(AZ, OTHER))
    assert hidden([two], nodes, used, other_max=2) == []  # AZ-4 and OTHER-2
    assert hidden([two], nodes, used | {f"{OTHER}-2": 1}, other_max=2) == [1]
    assert hidden([ask(1, 2)], nodes, used, other_max=2) == [1]  # AZ alone is full


@pytest.mark.parametrize(
    ("queue", "used", "expected"),
    [
        # 4-core nodes, maxNodes 2: one busy with 1 core, one whole node left
        ([ask(1, 2, cores=3)], {f"{AZ}-1": 1}, []),  # 3 cores free beside the running task
        ([ask(1, 2, cores=4)], {f"{AZ}-1": 1}, [1]),  # needs two whole nodes
        ([ask(1, 2, cores=1, exclusive=True)], {f"{AZ}-1": 1}, [1]),  # whole nodes only
        # the parts of one task take distinct nodes; tasks ahead take their cores first
        ([ask(1, 1, cores=3), ask(2, 2, cores=2)], {f"{AZ}-1": 1}, [2]),
        ([ask(1, 1, cores=2), ask(2, 2, cores=2)], {f"{AZ}-1": 1}, [2]),  # as the scheduler
        ([ask(1, 1, cores=1), ask(2, 2, cores=2)], {f"{AZ}-1": 1}, []),
        # wider than a node: not this rule's (no node of the group could ever hold it)
        ([ask(1, 1, cores=8)], {f"{AZ}-1": 1}, []),
    ],
)
def test_free_cores_beside_running_work_count_a_busy_node_is_not_held_whole(queue, used, expected):
    nodes = [*az(1, ON, cores=4), *az(1, cores=4, first=2)]
    assert hidden(queue, nodes, used, max_nodes=2, cores=4) == expected


def test_a_room_is_the_max_less_the_busy_nodes_and_their_free_cores():
    nodes = [*az(3, ON, cores=4), *az(1, cores=4, first=4), node("P", ON, ONPREM)]
    nodes[2].held = "drain"  # an admin's drain: it takes no new task
    used = {f"{AZ}-1": 4, f"{AZ}-2": 1, f"{AZ}-3": 1}
    policy = AutoscalerPolicy(groups={AZ: GroupPolicy(node_cores=4, max_nodes=8)})
    assert rooms(nodes, used, policy) == ({AZ: Room(4, 5, [3], 3, 8)}, {ONPREM})


def test_no_hold_is_kept_for_a_hidden_reserved_task():
    hold = Reserved((1, 1), {"AzureNodes-4": 1})
    assert unless_hidden(hold, {(1, 1)}) is None
    assert unless_hidden(hold, {(2, 1)}) is hold


# ------------------------------------------------------- through the control plane


def _three_of_four_busy(
    cp: ControlPlane, provider: Any, up: int
) -> tuple[list[str], dict[str, AgentDouble], dict[str, Any]]:
    """The group's 4 nodes added, ``up`` of them started with their agents, and a 3-node job
    running on them for 10 h: the names, the agents, and each agent's runs."""
    names = [n.name for n in cp.add_nodes(AZ, 4)]
    provider.faults.never_joins.update(names)
    cp.autoscale()  # the creates are done: Offline nodes
    cp.node_action("start", names[:up])
    agents = {n: AgentDouble(cp, n, cores=1, groups=(AZ,)) for n in names[:up]}
    assert all(a.register().accepted for a in agents.values())
    cp.submit({"command": "x", "nodeGroups": [AZ], "nodes": 3, "runtimeLimit": 36000})
    assert cp.schedule_pass() == 1
    runs = {n: a.runs() for n, a in agents.items()}
    for n, agent in agents.items():
        agent.send(*[agent.started(r) for r in runs[n]])
    return names, agents, runs


def test_no_vm_starts_for_a_job_that_waits_for_running_work_and_it_starts_once_that_ends(
    cp: ControlPlane,
    provider,
    clock,
):
    cp.set_group(AZ, provider="local", max_nodes=4, node_cores=1, grow_interval_s=0)
    names, agents, runs = _three_of_four_busy(cp, provider, up=3)
    cp.submit({"command": "x", "nodeGroups": [AZ], "nodes": 2})
    assert cp.schedule_pass() == 0
    for _ in range(3):
        clock.advance(60)
        cp.autoscale()
        # before: started for the 2-node job, which could not start for hours
        assert cp.store.get_node(names[3]).state is NodeState.OFFLINE
    for n, agent in agents.items():
        agent.send(*[agent.ended(r) for r in runs[n]])
    assert cp.schedule_pass() == 1  # the 3-node job ended: the 2-node one starts


@pytest.mark.parametrize("idle_policy", ["fixed", "keep:0", "adaptive:0"])
def test_an_idle_vm_is_not_kept_for_a_job_that_waits_for_running_work(
    cp: ControlPlane, provider, clock, idle_policy
):
    # an idle policy does not count it as waiting work either (its floor kept the VM)
    cp.set_group(AZ, provider="local", max_nodes=4, node_cores=1, grow_interval_s=0,
                 shrink_interval_s=1, shrink_idle_times=1, idle_policy=idle_policy)  # fmt: skip
    names, _, _ = _three_of_four_busy(cp, provider, up=4)
    [task] = cp.store.active_tasks()
    [idle] = set(names) - {h.node for h in task.hosts}
    cp.submit({"command": "x", "nodeGroups": [AZ], "nodes": 2})
    assert cp.schedule_pass() == 0
    for _ in range(40):  # 6 h 40 min: a pool for the jobs seen fades out
        clock.advance(600)
        cp.autoscale()
    # before: kept ("queued tasks will run on it") for as long as the 3-node job runs
    assert cp.store.get_node(idle).state is not NodeState.ONLINE


def test_a_task_no_node_has_the_memory_for_takes_no_slot_from_a_later_one():
    """A third probe: a 100 GB task (the group's VMs have 23.5 GB) ahead of a task that fit
    took the last free slot, and the fitting job waited ("wait for running work")."""
    big = Task(job_id=1, id=1, command="x", node_groups=[AZ], min_memory_mb=100 * 1024)
    fits = ask(2)
    pol = AutoscalerPolicy(
        groups={AZ: GroupPolicy(node_cores=1, max_nodes=4, node_memory_mb=23_500)}
    )
    got = beyond_ceiling([big, fits], *rooms(FAULT, BUSY3, pol))
    assert got == set()  # neither hidden here: the big one is the memory rule's to say
    unknown = AutoscalerPolicy(groups={AZ: GroupPolicy(node_cores=1, max_nodes=4)})
    got = beyond_ceiling([big, fits], *rooms(FAULT, BUSY3, unknown))
    assert got == {(2, 1)}  # memory unknown: the big one may fit, and takes the slot
