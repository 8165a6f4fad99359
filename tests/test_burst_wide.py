"""A wide (multi-node) task that may burst starts managed VMs only for the nodes the eligible
on-prem and already-up managed nodes cannot give it now, as the scheduler then spans both:
the probe's 4-node task with 3 idle on-prem nodes starts 1 VM, not 4. An idle node is
counted for one queued task only; a task that could never get all its nodes takes none."""

from __future__ import annotations

import pytest

from shared.domain.autoscaler_notes import nodes
from shared.domain.demand import Reach
from shared.domain.growshrink import GroupPolicy, NodeMemory
from shared.domain.idleplan import overflow
from shared.domain.models import Task
from shared.domain.states import NodeState
from shared.usecases.autoscale_log import read_log
from tests.agent_double import AgentDouble
from tests.test_autoscale_policies import provider  # noqa: F401 - fixture
from tests.test_autoscaler import (
    AZ,
    MIN,
    ON,
    ONPREM,
    STARTING,
    T0,
    AutoscalerState,
    azure_vms,
    node,
    policy,
    run,
    started,
)
from tests.test_control import clock, make_cp  # noqa: F401 - fixture

ANY: tuple[str, ...] = ()
BOTH = (ONPREM, AZ)


def wide(
    nodes: int = 4,
    cores: int = 4,
    groups: tuple[str, ...] = ANY,
    *,
    exclusive: bool = False,
    job: int = 1,
) -> Task:
    return Task(
        job_id=job, id=1, command="x", cores=cores, nodes=nodes, exclusive=exclusive,
        node_groups=list(groups),
    )  # fmt: skip


def onprem(n: int = 3, cores: int = 4) -> list:
    return [node(f"op-{i}", ON, ONPREM, cores=cores) for i in range(1, n + 1)]


@pytest.mark.parametrize(
    ("queued", "used", "expected"),
    [
        # the probe: 3 idle on-prem nodes, a 4-node task allowed anywhere: 1 VM, not 4
        ([wide()], {}, 1),
        ([wide(groups=BOTH)], {}, 1),  # the issue's [OnPremNodes, AzureNodes]
        ([wide()], {"op-1": 1}, 2),  # op-1 has 3 cores free, not 4: it cannot hold a part
        ([wide(cores=1)], {"op-1": 1}, 1),  # 1 core per node: op-1 still holds a part
        ([wide(nodes=3)], {}, 0),  # fits on-prem whole: no VM
        ([wide(nodes=6)], {}, 3),
        ([wide(groups=(AZ,))], {}, 4),  # Azure only: the on-prem nodes cannot hold it
        ([wide(groups=(ONPREM,))], {}, 0),  # on-prem only: never a VM
        ([wide(exclusive=True, cores=1)], {}, 1),  # exclusive: the idle nodes whole
        ([wide(exclusive=True, cores=1)], {"op-1": 1}, 2),  # op-1 is not idle
        # two wide tasks, queue order: the first takes the 3 idle nodes, the second none
        ([wide(job=1), wide(job=2)], {}, 5),
        # 1-core parts: both share the on-prem nodes (3 free cores each); the two parts
        # left over go on one VM (parts of different tasks may share a node)
        ([wide(cores=1, job=1), wide(cores=1, job=2)], {}, 1),
        # a single-node queue ahead takes an on-prem node first
        ([Task(job_id=1, id=1, command="x", cores=4), wide(job=2)], {}, 2),
    ],
)
def test_a_wide_task_starts_vms_only_for_the_nodes_on_prem_cannot_give_it(queued, used, expected):
    decision = run([*onprem(), *azure_vms(8)], queued, used=used)
    assert len(started(decision)) == expected
    for order in decision.orders:
        assert f"AzureNodes needs {nodes(expected)} of" in order.reason


@pytest.mark.parametrize("state", [ON, STARTING])
def test_managed_nodes_up_or_starting_count_before_new_ones(state):
    nodes = [*onprem(2), node("az-1", state), *azure_vms(4)[1:]]
    assert started(run(nodes, [wide()])) == ["az-2"]  # 2 on-prem + az-1 + one more


def test_an_idle_vm_a_wide_task_will_use_is_not_stopped_while_the_rest_starts():
    """Idle far past its idle time, az-1 is one of the task's 4 nodes: stopping it while
    starting another for the same task would bill a boot for nothing."""
    az1 = node("az-1", ON)
    nodes = [*onprem(2), az1, *azure_vms(4)[1:]]
    state = AutoscalerState(nodes={"az-1": NodeMemory(idle_since=T0 - 60 * MIN)})
    pol = policy(scale_down_delay=0 * MIN)  # no delay hides it: the queue alone keeps az-1
    decision = run(nodes, [wide()], pol=pol, state=state, now=T0)
    assert [(o.action, o.node) for o in decision.orders] == [("start", "az-2")]
    assert any("queued tasks will run on it" in n.text for n in decision.notes)


def test_a_task_wider_than_it_could_ever_get_holds_no_node():
    """Azure-only, 4 nodes, but AzureNodes may have 3: the 3 idle VMs are not kept up for it
    (the group cannot grow to hold it; its pending reason says so)."""
    nodes = [node(f"az-{i}", ON) for i in (1, 2, 3)]
    memory = AutoscalerState(
        nodes={f"az-{i}": NodeMemory(idle_since=T0 - 60 * MIN) for i in (1, 2, 3)}
    )
    decision = run(nodes, [wide(groups=(AZ,))], pol=policy(max_nodes=3), state=memory)
    assert sorted(o.node for o in decision.orders if o.action == "stop") == [
        "az-1",
        "az-2",
        "az-3",
    ]


@pytest.mark.parametrize(
    ("task", "holds"),
    [
        (wide(), True),  # 3 on-prem + 5 Azure >= 4
        (wide(nodes=9), False),  # 8 < 9
        (wide(groups=(ONPREM,)), False),  # no managed group may grow for it
        (wide(cores=8), False),  # wider than an Azure node: it cannot burst
        (wide(groups=(AZ,), nodes=5), True),
        (wide(groups=(AZ,), nodes=6), False),
    ],
)
def test_reach_counts_eligible_onprem_nodes_and_what_each_group_may_have_up(task, holds):
    reach = Reach([((ONPREM,), 4, None)] * 3, {AZ: (GroupPolicy(node_cores=4), 5)})
    assert reach.holds(task) is holds


def test_the_idle_policies_floor_counts_only_the_nodes_on_prem_cannot_give():
    """idleplan.overflow (what a warm-pool group's floor counts as waiting): the probe's task
    waits for 1 node, not 4; a task that fits whole on Online nodes waits for none."""
    nodes = [*onprem(), *azure_vms(5)]
    managed = {n.name for n in nodes if n.groups == [AZ]}
    [left] = overflow([wide()], nodes, {}, managed)
    assert (left.job_id, left.id, left.nodes) == (1, 1, 1)
    assert overflow([wide(nodes=3)], nodes, {}, managed) == []
    assert (
        overflow([wide(exclusive=True, cores=1, nodes=3)], nodes, {"op-1": 1}, managed)[0].nodes
        == 1
    )


# ------------------------------------------------------------- through the control plane


def test_the_timer_run_starts_one_vm_for_the_probes_wide_task(tmp_path, clock, provider):  # noqa: F811
    """The probe: AzureNodes --max 5 with 3 Offline 4-core VMs, 3 idle 4-core on-prem agents,
    and `hpc job submit --nodes 4 --cores 4` (any group): one VM starts, and the log says
    the group needs 1 node."""
    cp = make_cp(tmp_path, clock)
    cp.deps.compute = provider
    cp.set_group(AZ, provider="local", max_nodes=5, node_cores=4, grow_interval_s=0)
    names = [n.name for n in cp.add_nodes(AZ, 3)]
    provider.faults.never_joins.update(names)
    cp.autoscale()  # the creates are done: the VMs are deallocated, the nodes Offline
    assert {cp.store.get_node(n).state for n in names} == {NodeState.OFFLINE}
    for i in (1, 2, 3):
        assert AgentDouble(cp, f"onprem-{i}", cores=4).register().accepted
    cp.submit({"command": "echo $HPC_NODES", "nodes": 4, "cores": 4})
    assert cp.schedule_pass() == 0  # 3 nodes cannot hold it: it waits
    clock.advance(1)
    cp.autoscale()
    starting = [n["name"] for n in cp.list_nodes() if n["state"] == "Starting"]
    assert len(starting) == 1, starting
    [entry] = [e for e in read_log(cp.deps) if e["action"] == "start"]
    assert "AzureNodes needs 1 node of 4 cores" in entry["reason"]
