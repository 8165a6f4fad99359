"""The autoscaler's first fit puts a job-exclusive job's queued tasks on the nodes its job
already holds before any other node, as the scheduler's next pass does (its FreeCores looks
in the job's own index first): otherwise they take a free node the next pass gives another
job, and the autoscaler starts a node for that job's tasks that the scheduler never needs.
Its notes name job-level exclusive when that is why tasks overflow running nodes
(shared.domain.firstfit, shared.domain.autoscaler_notes)."""

from __future__ import annotations

import pytest

from shared.domain.firstfit import place_queue
from shared.domain.hosts import Holding, Seat
from shared.domain.idleplan import overflow
from shared.domain.jobexclusive import Tenants, occupancy
from shared.domain.models import Task
from shared.domain.scheduler import plan
from tests.test_autoscaler import AZ, OFF, ON, ONPREM, STARTING, node, started
from tests.test_job_exclusive_autoscaler import decide

E, N, X = 1, 2, 3
"""A job-exclusive job, a normal one, and another job-exclusive one."""


def tasks(job: int, n: int, cores: int = 1, **kw) -> list[Task]:
    return [
        Task(job_id=job, id=i, command="x", cores=cores, job_exclusive=job in (E, X), **kw)
        for i in range(1, n + 1)
    ]


def holds(job: int, *nodes: str) -> list[Holding]:
    """One 1-core task of ``job`` running on each of ``nodes``."""
    return [
        Holding(job, 90 + i, (Seat(n, 1),), job_exclusive=job in (E, X))
        for i, n in enumerate(nodes)
    ]


def scheduled(nodes, queued, running) -> int:
    """How many of ``queued`` the scheduler's next pass places."""
    used = {s.node: s.cores for h in running for s in h.hosts}
    return len(plan(queued, [n for n in nodes if n.state is ON], used, running=running))


AZ0 = node("az-0", ON, cores=8)
VMS = [node(f"az-{i}", OFF, cores=8) for i in (1, 2)]


def onprem(name: str, cores: int = 8):
    return node(name, ON, group=ONPREM, cores=cores)


@pytest.mark.parametrize(
    ("nodes", "queued"),
    [
        pytest.param([onprem("p-0"), AZ0, *VMS], tasks(E, 7) + tasks(N, 8), id="one-core-tasks"),
        pytest.param(  # a 2-node task of E: its held node and one other, not two others
            [onprem("p-0"), onprem("p-1"), AZ0, *VMS],
            tasks(E, 1, cores=4, nodes=2) + tasks(N, 1, cores=8),
            id="two-node-task",
        ),
    ],
)
def test_an_exclusive_jobs_tasks_fill_the_node_it_holds_first_and_start_no_needless_vm(
    nodes, queued
):
    """E holds az-0 (a task of it runs there). The old first fit put E's tasks on the idle
    on-prem node first (first in its order), which E then held: N's tasks had no node left
    and a VM was started, though the scheduler puts E's tasks on az-0 and N's on p-0."""
    running = holds(E, "az-0")
    assert scheduled(nodes, queued, running) == len(queued)
    assert started(decide(nodes, queued, running)) == []


def test_the_idle_policy_floor_counts_the_queue_the_same_way():
    nodes = [onprem("p-0"), AZ0]
    running = holds(E, "az-0")
    left = overflow(tasks(E, 7) + tasks(N, 8), nodes, {"az-0": 1}, {"az-0"}, occupancy(running))
    assert left == []


def test_a_starting_node_the_job_took_in_the_simulation_is_not_filled_before_online_ones():
    """A Starting node is not in the scheduler's next pass: E's 1-core task goes to the idle
    2-core on-prem node, so N's 2-core task after it has no node and a VM must start for it
    (filling az-0 first would start none and leave N waiting)."""
    nodes = [onprem("p-0", cores=2), node("az-0", STARTING, cores=8), *VMS]
    e1, e2 = tasks(E, 2, cores=4)
    queued = [e1, e2.model_copy(update={"cores": 1}), *tasks(N, 1, cores=2)]
    assert scheduled(nodes, queued, []) == 1  # E's 1-core task on p-0; N's waits
    assert len(started(decide(nodes, queued, []))) == 1


def test_a_normal_jobs_order_is_unchanged():
    nodes = [onprem("p-0"), AZ0, *VMS]
    running = holds(N, "az-0")
    assert started(decide(nodes, tasks(N, 15), running)) == []
    assert len(started(decide(nodes, tasks(N, 16), running))) == 1


ALL = ("p", "a", "b")


@pytest.mark.parametrize(
    ("running", "queued", "coming", "placed", "kept"),
    [
        pytest.param([], tasks(E, 1), (), {"p"}, {}, id="holds-nothing-first-fit"),
        pytest.param(holds(E, "a"), tasks(E, 1), (), {"a"}, {}, id="its-held-node-first"),
        pytest.param(holds(E, "b", "a"), tasks(E, 1), (), {"a"}, {}, id="held-in-node-order"),
        pytest.param(holds(E, "a"), tasks(E, 1), ("a",), {"p"}, {}, id="not-a-coming-node"),
        pytest.param(holds(E, "a"), tasks(E, 1, cores=4), (), {"p"}, {}, id="no-room-there"),
        pytest.param(holds(E, "b"), tasks(E, 1, nodes=2), (), {"b", "p"}, {}, id="wide"),
        pytest.param(holds(N, "a"), tasks(N, 1), (), {"p"}, {}, id="a-normal-job-holds-none"),
        pytest.param(holds(N, *ALL), tasks(E, 1), (), set(), {(E, 1): {N}}, id="kept-off"),
        pytest.param(holds(X, *ALL), tasks(N, 1), (), set(), {(N, 1): {X}}, id="by-a-hold"),
        pytest.param(holds(N, *ALL), tasks(E, 1, cores=4), (), set(), {}, id="no-room-anyway"),
    ],
)
def test_first_fit_takes_the_nodes_a_job_holds_first(running, queued, coming, placed, kept):
    """p: an on-prem node (tier 0), first in the order, a and b VMs after it; 4 cores each."""
    placing, used = ["p", "a", "b"], {s.node: s.cores for h in running for s in h.hosts}
    free = {n: 4 - used.get(n, 0) for n in placing}
    kept_off: dict = {}
    over, wanted = place_queue(
        queued, placing, free, dict.fromkeys(placing, 4), dict.fromkeys(placing, {AZ}),
        tiers={"a": 1, "b": 1}, occupied=occupancy(running), coming=coming, kept_off=kept_off,
    )  # fmt: skip
    assert (wanted, kept_off) == (placed, kept)
    assert len(over) == (0 if placed else len(queued))


@pytest.mark.parametrize(
    ("running", "job", "exclusive", "node", "blockers"),
    [
        (holds(N, "a"), E, True, "a", {N}),  # an exclusive job: other jobs' tasks there
        (holds(N, "a"), N, False, "a", set()),
        (holds(N, "a"), 4, False, "a", set()),  # normal jobs share
        (holds(X, "a"), N, False, "a", {X}),  # a hold: its holder
        (holds(X, "a"), E, True, "a", {X}),
        (holds(E, "a"), E, True, "a", set()),  # its own hold
        ([], E, True, "a", set()),
    ],
)
def test_who_keeps_a_job_off_a_node(running, job, exclusive, node, blockers):
    assert Tenants(occupancy(running)).blockers(job, exclusive, node) == blockers


# --- the note says when job-level exclusive is why tasks overflow ---------------------


def start_reasons(nodes, queued, running) -> list[str]:
    return [o.reason for o in decide(nodes, queued, running).orders if o.action == "start"]


@pytest.mark.parametrize(
    ("queued", "running", "reason"),
    [
        pytest.param(
            tasks(E, 4),
            holds(N, "az-0"),
            "4 queued tasks of job 1 may not use the free cores of running nodes (job-level "
            "exclusive: job 1 is exclusive and those nodes run other jobs' tasks); AzureNodes "
            "needs 1 node of 8 cores",
            id="exclusive-job-kept-off",
        ),
        pytest.param(
            tasks(N, 2),
            holds(X, "az-0"),
            "2 queued tasks of job 2 may not use the free cores of running nodes (job-level "
            "exclusive: those nodes are held by exclusive job 3); AzureNodes needs 1 node of "
            "8 cores",
            id="held-by-another-exclusive-job",
        ),
        pytest.param(
            tasks(E, 2) + tasks(N, 9),  # E kept off az-0's 7 free cores; N's last 2 find none
            holds(N, "az-0"),
            "4 queued tasks of jobs 1, 2 overflow the free cores of running nodes (2 of them by "
            "job-level exclusive: job 1 is exclusive and those nodes run other jobs' tasks); "
            "AzureNodes needs 2 nodes of 8 cores",
            id="some-for-cores-some-for-exclusivity",
        ),
        pytest.param(
            tasks(N, 9),
            holds(N, "az-0"),
            "2 queued tasks of job 2 overflow the free cores of running nodes; AzureNodes "
            "needs 1 node of 8 cores",
            id="cores-only-as-before",
        ),
    ],
)
def test_the_start_reason_names_job_level_exclusive_when_it_is_the_cause(queued, running, reason):
    assert set(start_reasons([AZ0, *VMS], queued, running)) == {reason}


def test_a_wide_exclusive_task_kept_off_running_nodes_says_so():
    up = [node("az-0", ON, cores=8), node("az-3", ON, cores=8)]
    [why] = start_reasons([*up, *VMS], tasks(E, 1, cores=2, nodes=2), holds(N, "az-0"))
    assert why.startswith("1 queued task of job 1 may not use the free cores of running nodes")
