"""The pure scheduler: order, node groups, core accounting, backfill."""

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.cluster import Node
from shared.domain.models import Task
from shared.domain.scheduler import plan
from shared.domain.states import NodeState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def node(name, cores=4, groups=("OnPremNodes",), state=NodeState.ONLINE):
    return Node(name=name, cores=cores, groups=list(groups), state=state)


def task(job, tid, cores=1, groups=(), priority=2000, minutes=0):
    return Task(
        job_id=job,
        id=tid,
        command="true",
        cores=cores,
        node_groups=list(groups),
        priority=priority,
        submit_time=T0 + timedelta(minutes=minutes),
    )


def test_a_node_never_gets_more_cores_than_it_has():
    placements = plan([task(1, i, cores=2) for i in range(1, 10)], [node("a", cores=5)], {})
    assert len(placements) == 2


def test_cores_already_in_use_are_not_free():
    placements = plan([task(1, i) for i in range(1, 10)], [node("a", cores=4)], {"a": 3})
    assert [p.task_id for p in placements] == [1]


def test_tasks_go_only_to_nodes_of_their_groups():
    nodes = [node("onprem", groups=["OnPremNodes"]), node("azure", groups=["AzureNodes"])]
    placements = plan([task(1, i, groups=["AzureNodes"]) for i in range(1, 4)], nodes, {})
    assert {p.node for p in placements} == {"azure"}
    assert {p.group for p in placements} == {"AzureNodes"}


def test_tasks_without_groups_may_use_any_node():
    nodes = [
        node("onprem", cores=1, groups=["OnPremNodes"]),
        node("azure", cores=1, groups=["AzureNodes"]),
    ]
    placements = plan([task(1, 1), task(1, 2)], nodes, {})
    assert {p.node for p in placements} == {"onprem", "azure"}


def vm(name, cores=4, groups=("AzureNodes",)):
    return Node(
        name=name, cores=cores, groups=list(groups), provider="local", state=NodeState.ONLINE
    )


@pytest.mark.parametrize(
    ("tasks", "groups", "expected"),
    [
        # the VMs have more free cores and sort first by name: on-prem still fills first
        (2, ["OnPremNodes", "AzureNodes"], ["onprem-1", "onprem-2"]),
        (2, [], ["onprem-1", "onprem-2"]),  # no group: any node, on-prem first too
        (4, [], ["onprem-1", "onprem-2", "onprem-1", "onprem-2"]),
        # the overflow only goes to the VMs
        (5, ["OnPremNodes", "AzureNodes"], ["onprem-1", "onprem-2"] * 2 + ["azure-1"]),
        # a cloud-only job: the VMs, packed (best fit: the other VM stays idle and stops)
        (2, ["AzureNodes"], ["azure-1", "azure-1"]),
    ],
)
def test_on_prem_nodes_fill_before_managed_vms_even_when_the_vms_are_up(tasks, groups, expected):
    """Hybrid burst (found by the third probe: Online, idle Azure nodes took a job allowed on
    both groups while on-prem cores were free, and billed while on-prem idled)."""
    nodes = [
        vm("azure-1", cores=8),
        vm("azure-2", cores=8),
        node("onprem-1", cores=2),
        node("onprem-2", cores=2),
    ]
    placements = plan([task(1, i, groups=groups) for i in range(1, tasks + 1)], nodes, {})
    assert sorted(p.node for p in placements) == sorted(expected)


def test_a_multi_node_task_spans_on_prem_and_vms_only_when_on_prem_is_short():
    nodes = [vm("azure-1"), vm("azure-2"), node("onprem-1"), node("onprem-2")]
    two = Task(job_id=1, id=1, command="x", nodes=2)
    [placed] = plan([two], nodes, {})
    assert sorted(h.node for h in placed.hosts) == ["onprem-1", "onprem-2"]
    three = Task(job_id=1, id=2, command="x", nodes=3)
    [placed] = plan([three], nodes, {})
    hosts = sorted(h.node for h in placed.hosts)
    assert hosts[1:] == ["onprem-1", "onprem-2"] and hosts[0].startswith("azure-")


def test_only_online_nodes_get_work():
    nodes = [
        node(n, state=s)
        for n, s in [
            ("a", NodeState.OFFLINE),
            ("b", NodeState.UNREACHABLE),
            ("c", NodeState.DRAINING),
            ("d", NodeState.STARTING),
        ]
    ]
    assert plan([task(1, 1)], nodes, {}) == []


def test_queue_order_is_kept_when_capacity_is_short():
    queued = [task(2, 1, priority=4000), task(1, 1, priority=2000)]
    placements = plan(queued, [node("a", cores=1)], {})
    assert [(p.job_id, p.task_id) for p in placements] == [(2, 1)]


def test_a_wide_task_that_fits_nowhere_lets_narrow_ones_backfill():
    queued = [task(1, 1, cores=8), task(2, 1, cores=1)]
    placements = plan(queued, [node("a", cores=4)], {})
    assert [(p.job_id, p.task_id) for p in placements] == [(2, 1)]


def test_load_is_spread_to_the_node_with_most_free_cores():
    placements = plan([task(1, i) for i in range(1, 5)], [node("a"), node("b")], {})
    assert sorted(p.node for p in placements) == ["a", "a", "b", "b"]
