"""GrowInterval paces growth for new work, not the replacement of lost capacity: a task
requeued after its node was evicted (or lost) is grown for at the next run, whatever the
interval (shared/domain/growcheck.py). Tables on a fake clock, then the probe's eviction
through the control plane with the local provider and a real autoscaler run."""

from __future__ import annotations

import pytest

from shared.domain.growcheck import grow_check, lost_its_node
from shared.domain.growshrink import GroupMemory
from shared.domain.models import LostAttempt, Task
from shared.domain.pending_scaling import GroupScaling, scaling_reason
from shared.domain.states import NodeState, TaskState
from tests.agent_double import AgentDouble
from tests.test_autoscaler import AZ, MIN, OFF, ON, STARTING, T0, S, node, policy, run, started
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_nodes_admin import managed, provider  # noqa: F401 - fixtures


def requeued(task_id: int, *, lost: bool = True, result: bool = True) -> Task:
    """A task queued again as attempt 1: after its node was lost (``lost``), or not."""
    gone = [LostAttempt(attempt=0, node="az-1", result=result)] if lost else []
    return Task(job_id=1, id=task_id, command="x", attempt=1, lost=gone, node_groups=[AZ])


def fresh(task_id: int) -> Task:
    return Task(job_id=2, id=task_id, command="x", node_groups=[AZ])


@pytest.mark.parametrize(
    ("task", "lost"),
    [
        (fresh(1), False),
        (requeued(1), True),
        (requeued(1, lost=False), False),  # requeued by its own failure: no node lost
        (requeued(1, result=False), False),  # a user's requeue since: new work
        (requeued(1).model_copy(update={"attempt": 3}), False),  # an older loss
    ],
)
def test_a_task_lost_its_node_only_if_its_last_attempt_went_with_it(task, lost):
    assert lost_its_node(task) is lost


CHECKED = GroupMemory(last_grow_check=T0)


@pytest.mark.parametrize(
    ("memory", "after_s", "mine", "looked_at", "paced"),
    [
        (GroupMemory(), 0, [fresh(1)], [1], True),  # never checked: due
        (CHECKED, 30, [fresh(1)], [], False),  # within the interval: new work waits
        (CHECKED, 60, [fresh(1)], [1], True),
        (CHECKED, 30, [fresh(1), requeued(2)], [2], False),  # the lost node's task alone
        (CHECKED, 60, [fresh(1), requeued(2)], [1, 2], True),
        (GroupMemory(last_grow_check=T0, quiet=True), 5, [fresh(1)], [1], True),
    ],
)
def test_a_grow_check_is_due_by_grow_interval_or_for_work_that_lost_its_node(
    memory, after_s, mine, looked_at, paced
):
    pol = policy(grow_interval=MIN).groups[AZ]
    check = grow_check(memory, pol, mine, T0 + after_s * S)
    assert [t.id for t in check.tasks] == looked_at and check.paced is paced
    # only a regular check starts the interval again
    assert check.memory.last_grow_check == (T0 + after_s * S if paced else memory.last_grow_check)


def test_an_evicted_nodes_tasks_start_a_vm_within_the_grow_interval():
    """The probe: a grow at T0 started az-1; az-1 was evicted 20 s later and its 2 tasks were
    requeued; another VM starts at the next run, not at T0 + GrowInterval. New work waits."""
    pol = policy(grow_interval=MIN, max_nodes=7)
    first = run([node(f"az-{i}") for i in range(1, 6)], [fresh(1)], pol=pol)
    assert started(first) == ["az-1"]
    nodes = [node("az-1", OFF), node("az-2", OFF), *[node(f"az-{i}") for i in range(3, 6)]]
    later = T0 + 20 * S
    d = run(nodes, [fresh(1)], pol=pol, state=first.state, now=later)
    assert started(d) == []  # new work: within the interval
    d = run(nodes, [requeued(3), requeued(4), fresh(1)], pol=pol, state=first.state, now=later)
    assert started(d) == ["az-1"]  # one 4-core node for the two requeued tasks only
    assert d.state.groups[AZ].last_grow_check == T0  # the interval runs from T0 still
    # GrowThreshold counts new work, not replaced capacity
    high = policy(grow_interval=MIN, max_nodes=7, grow_threshold=5)
    d = run(nodes, [requeued(3)], pol=high, state=first.state, now=later)
    assert started(d) == ["az-1"]
    d = run([node("az-1", STARTING), *nodes[1:]], [requeued(3), fresh(1)], pol=pol,
            state=d.state, now=later + 5 * S)  # fmt: skip
    assert started(d) == []  # the requeued task is on the VM starting


def test_a_task_that_lost_its_node_is_told_no_next_grow_check():
    group = GroupScaling(AZ, managed=True, memory=CHECKED)
    assert "next in 30 s" in (scaling_reason(group, T0 + 30 * S, [AZ]) or "")
    assert scaling_reason(group, T0 + 30 * S, [AZ], lost=True) is None


def test_after_an_eviction_another_vm_starts_in_the_same_run_whatever_grow_interval(
    cp, provider, clock
):
    """The probe through the control plane: GrowInterval 60 s, azure-1 started for a
    2-task sweep and evicted 20 s later. The run that finds it evicted requeues its tasks
    and decides again, so azure-2 starts in that run (before: "GrowInterval: next in 33 s",
    no start; then the next run, a minute later on Azure's timer)."""
    managed(cp, grow_interval_s=60)
    cp.add_nodes(AZ, 3)
    provider.faults.never_joins.update({"azure-1", "azure-2"})  # their agents: doubles
    job = cp.submit({"command": "x", "nodeGroups": [AZ], "sweep": "1-2"})
    cp.autoscale()
    assert cp.store.get_node("azure-1").state is NodeState.STARTING
    agent = AgentDouble(cp, "azure-1", cores=2, groups=(AZ,))
    assert agent.register().accepted
    assert cp.schedule_pass() == 2
    cp.apply_events([agent.started((t.job_id, t.id, t.attempt)) for t in cp.list_tasks(job.id)])
    clock.advance(20)
    provider.evict("azure-1")
    cp.autoscale()  # finds it evicted: Offline, its tasks requeued, another VM started
    tasks = cp.list_tasks(job.id)
    assert {t.state for t in tasks} == {TaskState.QUEUED}
    assert cp.store.get_node("azure-1").state is NodeState.OFFLINE
    assert cp.store.get_node("azure-2").state is NodeState.STARTING
    assert cp.pending_reasons(tasks)[(job.id, 1)] == "waiting for azure-2 to start in AzureNodes"
    log = [(e["node"], e["action"]) for e in cp.autoscale_log() if e.get("node")]
    assert ("azure-1", "offline") in log and ("azure-2", "start") in log


# --- a task the VMs starting are for names no next grow check --------------------------


def test_a_run_remembers_the_tasks_it_found_nodes_for_while_vms_start():
    pol = policy(grow_interval=MIN)
    nodes = [node("az-1", ON), node("az-2", STARTING), node("az-3")]
    queue = [fresh(i) for i in range(1, 7)]  # 6 one-core tasks; az-1's 4 cores are busy
    d = run(nodes, queue, pol=pol, state=first_checked(), now=T0 + 10 * S, used={"az-1": 4})
    assert started(d) == []  # within the interval
    assert d.state.groups[AZ].covered == "2:1-4"  # on az-2, starting; 5 and 6 wait
    d = run(nodes, queue, pol=pol, state=first_checked(), now=T0 + MIN, used={"az-1": 4})
    assert started(d) == ["az-3"] and d.state.groups[AZ].covered == "2:1-6"
    idle = [node("az-1", ON), node("az-2"), node("az-3")]
    d = run(idle, [fresh(1)], pol=pol, state=d.state, now=T0 + 2 * MIN)
    assert d.state.groups[AZ].covered is None  # no VM starting: nothing kept


def first_checked():
    from shared.domain.growshrink import AutoscalerState

    return AutoscalerState(groups={AZ: CHECKED})


def test_only_a_task_the_vms_starting_are_not_for_hears_the_next_grow_check():
    from shared.domain.pending import pending_reason
    from tests.test_pending import node as pnode

    memory = GroupMemory(last_grow_check=T0, covered="2:1-4")
    scaling = {AZ: GroupScaling(AZ, managed=True, memory=memory)}
    nodes = [pnode("az-1", cores=4, groups=(AZ,)),
             pnode("az-2", cores=4, groups=(AZ,), state=NodeState.STARTING),
             pnode("az-3", cores=4, groups=(AZ,), state=NodeState.OFFLINE)]  # fmt: skip
    covered = pending_reason(fresh(3), nodes, {"az-1": 4}, (), scaling, T0 + 15 * S)
    assert covered.endswith("; az-2 starting"), covered  # no word of a grow check
    beyond = pending_reason(fresh(5), nodes, {"az-1": 4}, (), scaling, T0 + 15 * S)
    assert beyond.endswith("at its next grow check, in 45 s (GrowInterval 60 s)"), beyond
    # no VM starting any more: nothing covers it
    gone = [nodes[0], pnode("az-2", cores=4, groups=(AZ,), state=NodeState.OFFLINE)]
    assert "in 45 s (GrowInterval" in pending_reason(
        fresh(3), gone, {"az-1": 4}, (), scaling, T0 + 15 * S
    )


def test_a_sweeps_task_on_the_vm_starting_names_no_next_grow_check(cp, provider, clock):
    """The probe: a 4-task sweep started azure-1 and azure-2; azure-1 ran two tasks, and
    tasks 3 and 4 read "considers growing AzureNodes every 60 s: next in 45 s" beside
    "azure-2 starting", as if more growth were coming for them. A job submitted after does
    wait for that check."""
    managed(cp, grow_interval_s=60)
    cp.add_nodes(AZ, 3)
    provider.faults.never_joins.update({"azure-1", "azure-2"})  # azure-2 stays Starting
    job = cp.submit({"command": "x", "nodeGroups": [AZ], "sweep": "1-4"})
    cp.autoscale()
    assert cp.store.get_node("azure-2").state is NodeState.STARTING
    agent = AgentDouble(cp, "azure-1", cores=2, groups=(AZ,))
    assert agent.register().accepted
    assert cp.schedule_pass() == 2
    clock.advance(15)
    [third] = [t for t in cp.list_tasks(job.id) if t.id == 3]
    reason = cp.pending_reasons([third])[(job.id, 3)]
    assert "azure-2 starting" in reason and "autoscaler" not in reason, reason
    later = cp.submit({"command": "x", "nodeGroups": [AZ]})
    [task] = cp.list_tasks(later.id)
    assert (
        "next grow check, in 45 s (GrowInterval 60 s)" in cp.pending_reasons([task])[(later.id, 1)]
    )


# --- Offline VMs the autoscaler will start: the reason says so, and when -----------------


def test_a_task_for_stopped_vms_hears_the_autoscaler_starts_them_and_when(cp, provider, clock):
    """The probe: after `hpc node stop` of every AzureNodes VM (Offline), a job for them read
    only "no Online node in AzureNodes (3 Offline)"; the autoscaler started them 20 s later."""
    managed(cp, grow_interval_s=60)
    cp.add_nodes(AZ, 3)
    cp.autoscale()  # a quiet check: nothing queued
    job = cp.submit({"command": "x", "nodeGroups": [AZ]})
    [task] = cp.list_tasks(job.id)
    assert cp.pending_reasons([task])[(job.id, 1)] == (
        "no Online node in AzureNodes (3 Offline); the autoscaler starts nodes of AzureNodes "
        "for it at its next run (a grow check is due)"
    )
    cp.autoscale()
    assert cp.store.get_node("azure-1").state is NodeState.STARTING


def test_vms_an_admin_holds_are_not_promised_but_how_to_bring_them_back():
    from shared.domain.pending import pending_reason
    from tests.test_pending import node as pnode

    scaling = {AZ: GroupScaling(AZ, managed=True)}
    vms = [pnode(f"az-{i}", groups=(AZ,), state=NodeState.OFFLINE) for i in (1, 2)]
    for vm in vms:
        vm.held = "offline"
    assert pending_reason(fresh(1), vms, {}, (), scaling, T0) == (
        "no Online node in AzureNodes (2 Offline); held by an admin: az-1, az-2 "
        "(hpc node online az-1 brings it back)"
    )
    vms[1].held = None  # one the autoscaler may start
    assert "the autoscaler starts nodes of AzureNodes for it at its next run" in pending_reason(
        fresh(1), vms, {}, (), scaling, T0
    )
