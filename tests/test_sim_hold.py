"""The replay's autoscaler is shown the scheduler's reservation as the cluster's timer reads
it (shared.sim.hold against shared.usecases.autoscale.reserved on the same cluster)."""

from __future__ import annotations

from shared.domain.models import Host, Task
from shared.domain.protocol import AGENT_PROTOCOL
from shared.domain.scheduler import Busy
from shared.sim.fleet import Fleet, dt
from shared.sim.hold import reserved
from shared.sim.swf import SwfJob
from shared.usecases import autoscale

N0, N1, N2 = "n0000", "n0001", "n0002"


def _scene() -> tuple[Fleet, list[Busy], list[SwfJob]]:
    """n0-n2 Online since 10; job 7 (limit 100) runs on n0 from 10. At 20 job 2 (3 nodes)
    is blocked, reserved n0-n2 at 110; job 3 (1 node, limit 200) would not end first."""
    fleet = Fleet(4, 1)
    for name in (N0, N1, N2):
        fleet.start(name, 0, 10)
        fleet.boot(name, 10)
    fleet.free[N0] = 0
    fleet.took([N0], 10)
    queue = [SwfJob(2, 15, 50, 3, 50), SwfJob(3, 16, 30, 1, 200)]
    return fleet, [Busy(N0, 1, 110)], queue


def test_the_replay_reads_the_reservation_as_the_clusters_timer_does():
    fleet, busy, queue = _scene()
    sim = reserved(queue, fleet, busy, 20, "easy", 1)
    registered = {"incarnation": 1, "agent_protocol": AGENT_PROTOCOL}  # reads runtime limits
    nodes = [fleet.recs[n].model_copy(update=registered) for n in sorted(fleet.online)]
    running = Task(
        job_id=7, id=1, command="", cores=1, state="Running", node=N0, dispatch_time=dt(10),
        runtime_limit_s=100, hosts=[Host(node=N0, cores=1, incarnation=1)],
    )  # fmt: skip
    queued = [
        Task(job_id=2, id=1, command="", cores=1, nodes=3, runtime_limit_s=50),
        Task(job_id=3, id=1, command="", cores=1, runtime_limit_s=200),
    ]
    cluster = autoscale.reserved(nodes, queued, [running], {N0: 1}, dt(20))
    assert sim is not None and cluster is not None
    assert (sim.cores, sim.at, sim.held_mb) == (cluster.cores, cluster.at, cluster.held_mb)
    assert dict(sim.cores) == {N0: 0, N1: 1, N2: 1} and sim.at == 110
    # one multi-node task in the cluster, three one-node tasks in the replay: the hold is
    # keyed to the last, so the first fit places the whole job before it decides
    assert cluster.task == (2, 1) and sim.task == (2, 3)


def test_nothing_is_reserved_when_no_online_core_is_free():
    fleet, busy, queue = _scene()
    for name in (N1, N2):
        fleet.free[name] = 0
        fleet.took([name], 12)
    assert reserved(queue, fleet, busy, 20, "easy", 1) is None
