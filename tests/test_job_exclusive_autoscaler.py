"""Job-level exclusive in the autoscaler's demand: a job-exclusive job's tasks pack only with
their own job's, so the autoscaler starts the nodes the scheduler will really use, never
counting a node another job holds as room for it, nor one it holds as room for others
(shared.domain.demand, shared.domain.firstfit)."""

from __future__ import annotations

import pytest

from shared.domain.autoscaler import AutoscalerPolicy, AutoscalerState, ClusterView, autoscale
from shared.domain.autoscaler_io import Reserved
from shared.domain.demand import nodes_needed
from shared.domain.firstfit import place_queue
from shared.domain.growshrink import GroupPolicy
from shared.domain.hosts import Holding, Seat
from shared.domain.jobexclusive import occupancy
from shared.domain.models import Task
from tests.test_autoscaler import AZ, OFF, ON, STARTING, T0, node, started

E, N = 1, 2


def tasks(job: int, n: int, cores: int = 1) -> list[Task]:
    return [
        Task(job_id=job, id=i, command="x", cores=cores, job_exclusive=job == E)
        for i in range(1, n + 1)
    ]


def decide(nodes, queued, running=()):
    """One autoscaler run on these nodes, with ``running``'s holdings, for 8-core VMs."""
    view = ClusterView(
        nodes=nodes,
        queued=queued,
        used_cores={s.node: s.cores for h in running for s in h.hosts},
        occupied=occupancy(running),
    )
    pol = AutoscalerPolicy(groups={AZ: GroupPolicy(node_cores=8, max_nodes=10)})
    return autoscale(view, pol, AutoscalerState(), T0)


def grow(nodes, queued, running=()):
    return started(decide(nodes, queued, running))


def vms(n: int, state=OFF) -> list:
    return [node(f"az-{i}", state, cores=8) for i in range(1, n + 1)]


@pytest.mark.parametrize("exclusive_first", [True, False])
def test_an_exclusive_job_and_another_on_offline_vms_start_two_nodes_not_one(exclusive_first):
    ex, other = tasks(E, 4), tasks(N, 4)
    queued = ex + other if exclusive_first else other + ex
    assert len(grow(vms(4), queued)) == 2


def test_an_exclusive_jobs_steps_pack_onto_one_new_node():
    assert len(grow(vms(4), tasks(E, 8))) == 1


def test_a_node_another_job_runs_on_is_no_room_for_an_exclusive_job():
    up = node("az-0", ON, cores=8)
    running = [Holding(N, 9, (Seat("az-0", 1),))]
    assert len(grow([up, *vms(2)], tasks(E, 4), running)) == 1


def test_a_node_an_exclusive_job_holds_is_no_room_for_other_jobs():
    up = node("az-0", ON, cores=8)
    running = [Holding(E, 9, (Seat("az-0", 1),), job_exclusive=True)]
    assert len(grow([up, *vms(2)], tasks(N, 2), running)) == 1
    assert grow([up, *vms(2)], tasks(E, 2), running) == []  # its own job's room


def test_a_starting_node_taken_by_an_exclusive_job_is_no_room_for_another():
    coming = node("az-0", STARTING, cores=8)
    assert len(grow([coming, *vms(2)], tasks(E, 1) + tasks(N, 1))) == 1


@pytest.mark.parametrize(
    ("parts", "bins"),
    [
        pytest.param([(1, None, 1)] * 4 + [(1, None, None)] * 4, 2, id="two-tenants-two-nodes"),
        pytest.param([(1, None, 1)] * 8, 1, id="one-tenant-packs"),
        pytest.param([(1, None, 1)] * 2 + [(1, None, 2)] * 2, 2, id="two-exclusive-jobs"),
        pytest.param([(1, None)] * 8, 1, id="no-tenant-given-all-share"),
    ],
)
def test_bins_hold_parts_of_one_tenant(parts, bins):
    assert nodes_needed(parts, 8) == bins


def test_another_jobs_task_gets_no_spare_core_of_an_exclusive_jobs_reserved_node():
    """The scheduler refuses a backfill that would share a reserved node with a
    job-exclusive job (reservation.harmless): the autoscaler must not count its spare
    cores as room either, or it grows nothing for the task that waits."""
    head, later = tasks(E, 1)[0], tasks(N, 1)[0]
    running = occupancy([Holding(3, 1, (Seat("a", 4),))])  # keeps E off a for now
    hold = Reserved((E, 1), {"a": 1}, None, job_exclusive=True)
    over, _ = place_queue([head, later], ["a"], {"a": 4}, {"a": 8}, {"a": {AZ}},
                          reserved=hold, occupied=running)  # fmt: skip
    assert [(t.job_id, t.id) for t in over] == [(E, 1), (N, 1)]


def test_an_exclusive_jobs_task_gets_no_spare_core_of_another_jobs_reserved_node():
    """The reverse: a normal task waits for a node the exclusive job holds; more of that
    job's tasks there would keep it waiting, so they are no room there either."""
    head, later = tasks(N, 1)[0], tasks(E, 1)[0]
    running = occupancy([Holding(E, 9, (Seat("a", 4),), job_exclusive=True)])
    hold = Reserved((N, 1), {"a": 1}, None)
    over, _ = place_queue([head, later], ["a"], {"a": 4}, {"a": 8}, {"a": {AZ}},
                          reserved=hold, occupied=running)  # fmt: skip
    assert [(t.job_id, t.id) for t in over] == [(N, 1), (E, 1)]
