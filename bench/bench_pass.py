"""One whole scheduler pass of the cluster (the use case: store reads, the decision, the
commits and the RunTask messages) on the embedded store and bus, by queue length and node
count.

The queue is half stored tasks (jobs of 10,000 single tasks) and half one sweep range, so
both sources of the queue are read. Nodes have 4 cores. Two situations:

- "steady": every node is full except one that just freed 4 cores (what most passes of a
  loaded cluster see): the pass reads its window, places 4 tasks, commits, sends;
- "fill": every node idle: the pass places as many tasks as there are free cores (4 per
  node; at most HPC_SCHEDULER_WINDOW, 5,000), commits them in chunks of 89 and sends them:
  the worst case.

Prints milliseconds per pass (median of 3). Target (issue "Scheduler"): one pass with
100,000 queued tasks and 2,000 nodes <= 100 ms.

``--users N``: the jobs belong to N users in turn (each 10,000-task job and the sweep one
user's), so fair share (shared/domain/fairshare.py) merges the window user by user; by
default one user owns all, and the window is merged first come, first served.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.adapters.local_output import LocalOutputStore  # noqa: E402
from shared.adapters.sqlite_bus import SqliteBus  # noqa: E402
from shared.adapters.sqlite_busadmin import SqliteBusAdmin  # noqa: E402
from shared.adapters.sqlite_rows import _task_row  # noqa: E402
from shared.adapters.sqlite_schema import _INSERT_TASK  # noqa: E402
from shared.adapters.sqlite_store import SqliteStore  # noqa: E402
from shared.domain.cluster import Node, Principal  # noqa: E402
from shared.domain.models import Task  # noqa: E402
from shared.domain.states import NodeState, TaskState  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.usecases.control_plane import ControlPlane  # noqa: E402
from shared.wiring import declare_queues  # noqa: E402

CORES = 4
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def cluster(root: Path, queued: int, nodes: int, users: int = 1) -> ControlPlane:
    bus = SqliteBus(root / "bus.db")
    declare_queues(SqliteBusAdmin(bus))
    cp = ControlPlane(
        store=SqliteStore(root / "store.db"),
        bus=bus,
        output=LocalOutputStore(root / "out"),
        settings=Settings(home=root),
        clock=lambda: NOW,
    )
    for i in range(nodes):
        node = Node(name=f"n{i:05}", groups=["OnPremNodes"], cores=CORES, incarnation=1)
        node.state = NodeState.ONLINE
        cp.store.put_node(node)
    owners = [Principal(name=f"user{i}", role="user") for i in range(users)]
    singles, k = queued // 2, 0
    while singles > 0:
        n = min(singles, 10_000)
        cp.submit({"tasks": [{"command": "true"} for _ in range(n)]}, owners[k % users])
        singles, k = singles - n, k + 1
    sweep = {"tasks": [{"command": "true *", "sweep": f"1-{queued - queued // 2}"}]}
    cp.submit(sweep, owners[k % users])
    return cp


def occupy(cp: ControlPlane, nodes: int, free_node: bool) -> None:
    """Every node full (one running 4-core placeholder each), but the first if ``free_node``."""
    job = cp.submit({"tasks": [{"command": "hold", "cores": CORES}]})
    holders = []
    for i in range(1 if free_node else 0, nodes):
        t = Task(job_id=job.id, id=1, command="hold", cores=CORES, node=f"n{i:05}")
        t.state = TaskState.RUNNING
        holders.append(t.model_copy(update={"id": 100_000 + i}))
    # Placeholders are written straight into the SQLite file: they only hold cores.
    with cp.store._transaction() as con:  # type: ignore[attr-defined]
        con.executemany(_INSERT_TASK, [_task_row(t, "bench") for t in holders])


def time_pass(queued: int, nodes: int, kind: str, repeat: int = 3, users: int = 1) -> float:
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            cp = cluster(Path(tmp), queued, nodes, users)
            if kind == "steady":
                occupy(cp, nodes, free_node=True)
            t0 = time.perf_counter()
            placed = cp.schedule_pass()
            times.append(time.perf_counter() - t0)
            expected = CORES if kind == "steady" else CORES * nodes
            window = cp.settings.scheduler_window  # a pass looks at most this far
            assert placed == min(expected, queued, window), (placed, expected)
            cp.store.close()
    return statistics.median(times) * 1000


def main() -> None:
    users = int(sys.argv[sys.argv.index("--users") + 1]) if "--users" in sys.argv else 1
    print(f"{'queued':>8} {'nodes':>6} {'steady ms':>10} {'fill ms':>9}  (whole pass, SQLite, "
          f"{users} user{'s' if users != 1 else ''})")  # fmt: skip
    for queued in (1_000, 10_000, 100_000):
        for nodes in (100, 500, 2_000):
            steady = time_pass(queued, nodes, "steady", users=users)
            fill = time_pass(queued, nodes, "fill", repeat=1, users=users)
            print(f"{queued:>8} {nodes:>6} {steady:>10.1f} {fill:>9.1f}")


if __name__ == "__main__":
    main()
