"""Consumable memory in the autoscaler (shared.domain.memoryfit): its first fit of the queue
counts each Online node's memory less what active tasks hold there and what the queue
places, its bin-packing onto new nodes packs by cores and memory, a reservation's memory is
kept from later tasks, and the idle policies' overflow counts held memory too."""

from __future__ import annotations

import pytest

from shared.domain.autoscaler import autoscale
from shared.domain.autoscaler_io import ClusterView, Reserved
from shared.domain.demand import nodes_needed
from shared.domain.firstfit import place_queue
from shared.domain.growshrink import AutoscalerPolicy, AutoscalerState, GroupPolicy
from shared.domain.idleplan import overflow
from tests.test_autoscaler import AZ, ON, ONPREM, T0, azure_vms, started
from tests.test_memory_autoscaler import asks, mem_node

G = 1024
BIG = AutoscalerPolicy(groups={AZ: GroupPolicy(node_cores=16, node_memory_mb=16 * G)})
"""Its VMs have 16 cores and 16 GB."""


def vms(n: int):
    out = azure_vms(n)
    for vm in out:
        vm.cores, vm.memory_mb = 16, 16 * G
    return out


def grow(nodes, queued, *, used=None, held=None):
    view = ClusterView(nodes=nodes, queued=list(queued), used_cores=used or {}, held_mb=held or {})
    return started(autoscale(view, BIG, AutoscalerState(), T0))


def test_four_8_gb_one_core_tasks_start_two_16_gb_16_core_nodes_not_one():
    assert len(grow(vms(4), asks(8, 4))) == 2
    assert len(grow(vms(4), asks(4, 4))) == 1  # 4 GB each: four fit one node
    assert len(grow(vms(4), asks(None, 16))) == 1  # no memory asked: cores alone


@pytest.mark.parametrize(
    ("held_gb", "count", "starts"),
    [
        (0, 2, 0),  # both fit the Online node's 16 GB
        (8, 2, 1),  # one fits the 8 GB left; the other needs a node
        (12, 2, 1),  # 4 GB left: neither fits; one new node holds both
        (8, 4, 2),  # one fits; three need two nodes
    ],
)
def test_an_online_nodes_free_memory_is_what_its_active_tasks_leave(held_gb, count, starts):
    online = mem_node("az-0", ON, AZ, 16 * G, cores=16)
    used = {"az-0": 1} if held_gb else {}
    assert len(grow([online, *vms(4)], asks(8, count), used=used, held={"az-0": held_gb * G})) == (
        starts
    )


@pytest.mark.parametrize(
    ("parts", "memory_gb", "bins"),
    [
        ([(1, None, None, 8 * G)] * 4, 16, 2),
        ([(1, None, None, 8 * G)] * 4, None, 1),  # memory unknown: cores alone
        ([(1, None, None, 12 * G), (1, None, None, 4 * G), (1, None, None, 4 * G)], 16, 2),
        ([(4, None, None, 2 * G)] * 4, 16, 1),  # cores fill first
        ([(1, ("w", 1), None, 8 * G)] * 2 + [(1, None, None, 8 * G)] * 2, 16, 2),
    ],
)
def test_bin_packing_onto_new_nodes_counts_memory(parts, memory_gb, bins):
    memory = None if memory_gb is None else memory_gb * G
    assert nodes_needed(parts, 16, memory) == bins


def test_the_first_fit_keeps_a_reservations_memory_from_later_tasks():
    """The reserved task (not in the window) waits for 2 cores and 12 GB of node a: a later
    task that would leave it too little memory overflows, one asking 4 GB does not."""
    res = Reserved((9, 1), {"a": 2}, None, False, 12 * G)

    def over(task_gb: int) -> int:
        free, placing = {"a": 8}, ["a"]
        memory = {"a": 16 * G}
        args = (placing, free, {"a": 8}, {"a": set[str]()})
        return len(place_queue(asks(task_gb), *args, memory=memory, reserved=res)[0])

    assert over(8) == 1
    assert over(4) == 0


def test_the_idle_policies_overflow_counts_the_memory_held_on_online_nodes():
    nodes = [mem_node("op", ON, ONPREM, 16 * G, cores=8), *azure_vms(2)]
    managed = {n.name for n in nodes if n.groups == [AZ]}

    def over(held_gb: int) -> list[int]:
        held = {"op": held_gb * G}
        return [t.id for t in overflow(asks(8, 2), nodes, {"op": 1}, managed, None, held)]

    assert over(0) == []
    assert over(4) == [2]
    assert over(12) == [1, 2]
