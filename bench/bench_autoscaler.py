"""How long one autoscaler decision takes, by queue length and node count.

The pure autoscaler (shared/domain/autoscaler.py) on synthetic clusters: N Online 4-core VMs
of a managed group, each running a 3-core task (1 core free), 200 Offline VMs it may start,
and a queue of 1- to 4-core tasks of 50 jobs. The run places the queue where the scheduler's
next pass would (shared/domain/nextpass.py), then bin-packs what is left onto new nodes
(shared/domain/demand.py). Prints milliseconds per run, the median of several.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.domain.autoscaler import (  # noqa: E402
    AutoscalerPolicy,
    AutoscalerState,
    ClusterView,
    autoscale,
)
from shared.domain.cluster import Node  # noqa: E402
from shared.domain.growshrink import GroupPolicy  # noqa: E402
from shared.domain.models import Task  # noqa: E402
from shared.domain.states import NodeState  # noqa: E402

CORES, GROUP, NOW = 4, "AzureNodes", datetime(2026, 12, 1, tzinfo=UTC)


def view(queued: int, online: int) -> ClusterView:
    nodes = [
        Node(name=f"az-{i}", groups=[GROUP], cores=CORES, state=NodeState.ONLINE,
             provider="azure", state_time=NOW, incarnation=1)
        for i in range(online)
    ] + [
        Node(name=f"off-{i}", groups=[GROUP], cores=CORES, state=NodeState.OFFLINE,
             provider="azure", state_time=NOW)
        for i in range(200)
    ]  # fmt: skip
    tasks = [
        Task(job_id=1 + i % 50, id=i + 1, command="x", cores=1 + i % CORES,
             node_groups=[GROUP])
        for i in range(queued)
    ]  # fmt: skip
    used = {f"az-{i}": CORES - 1 for i in range(online)}
    return ClusterView(nodes=nodes, queued=tasks, used_cores=used)


def time_run(queued: int, online: int, repeat: int = 3) -> float:
    v = view(queued, online)
    policy = AutoscalerPolicy(groups={GROUP: GroupPolicy(node_cores=CORES, max_nodes=100_000)})
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        autoscale(v, policy, AutoscalerState(), NOW)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    print(f"{'queued':>8} {'online':>7} {'run ms':>9}")
    for queued in (1_000, 10_000, 50_000):
        for online in (100, 2_000):
            print(f"{queued:>8} {online:>7} {time_run(queued, online):>9.1f}")


if __name__ == "__main__":
    main()
