"""The autoscaler sizes groups for multi-node and exclusive tasks: a task on N nodes needs
N nodes (its parts never share one), an exclusive task needs whole nodes, and neither is
counted as fitting into the scattered free cores of busy nodes."""

from __future__ import annotations

import pytest

from shared.domain.demand import nodes_needed
from tests.test_autoscaler import AZ, ON, ONPREM, azure_vms, node, run, started, tasks


def wide(n: int = 1, *, cores: int = 1, nodes: int = 1, exclusive: bool = False, job: int = 1):
    out = tasks(n, cores=cores, job=job)
    for t in out:
        t.nodes, t.exclusive = nodes, exclusive
    return out


@pytest.mark.parametrize(
    ("parts", "node_cores", "expected"),
    [
        ([(1, "a"), (1, "a"), (1, "a")], 4, 3),  # one task on 3 nodes: 3 nodes, not 1
        ([(1, "a"), (1, "a"), (1, None), (1, None)], 4, 2),  # others may share its nodes
        ([(2, "a"), (2, "a"), (2, "b"), (2, "b")], 4, 2),  # two 2-node tasks pair up
        ([(1, None)] * 8, 4, 2),
    ],
)
def test_parts_of_one_task_go_on_different_nodes(parts, node_cores, expected):
    assert nodes_needed(parts, node_cores) == expected


@pytest.mark.parametrize(
    ("queued", "expected"),
    [
        (wide(cores=1, nodes=3), 3),  # an MPI task on 3 nodes starts 3 nodes
        (wide(2, cores=2, nodes=2), 2),  # two 2-node tasks of 2 cores share 2 nodes
        (wide(3, exclusive=True), 3),  # three exclusive 1-core tasks: three whole nodes
        (wide(cores=1, nodes=6), 5),  # all five Offline nodes, no more (max)
    ],
)
def test_wide_and_exclusive_tasks_grow_the_group_by_the_nodes_they_need(queued, expected):
    assert len(started(run(azure_vms(5), queued))) == expected


def test_a_wide_task_does_not_count_as_fitting_into_scattered_free_cores():
    """Two Online Azure nodes with 2 of 4 cores free each: four 1-core tasks would fit, but
    an exclusive task needs an idle node and a 2-node task of 3 cores needs 3 free on each."""
    up = [node("az-1", ON), node("az-2", ON), *azure_vms(5)[2:]]
    busy = {"az-1": 2, "az-2": 2}
    assert started(run(up, tasks(4), used=busy)) == []
    assert started(run(up, wide(exclusive=True), used=busy)) == ["az-3"]
    assert len(started(run(up, wide(cores=3, nodes=2), used=busy))) == 2


def test_an_onprem_idle_node_takes_an_exclusive_task_before_azure_grows():
    onprem = [node("op-1", ON, ONPREM, cores=4)]
    queued = wide(exclusive=True)
    for t in queued:
        t.node_groups = [ONPREM, AZ]
    assert started(run([*onprem, *azure_vms(2)], queued)) == []
    assert started(run([*onprem, *azure_vms(2)], queued, used={"op-1": 1})) == ["az-1"]
