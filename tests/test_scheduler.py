"""The pure scheduler: order, node groups, core accounting, backfill."""

from datetime import UTC, datetime, timedelta

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
