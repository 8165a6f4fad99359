"""How long one scheduler decision takes, by queue length and node count.

The pure scheduler (shared/domain/scheduler.py) on synthetic clusters of 4-core nodes:
"busy" (every node full, as under load: most passes look like this), "mixed" (every node
has 1 of its 4 cores free and runs a 3-core task with a runtime limit; the head of the
queue wants 4 cores, so EASY projects its reservation and backfills the 1-core tasks that
end before it) and "free" (every node idle, the pass fills the cluster). Prints milliseconds per pass, the median of several.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.domain.scheduler import Busy, Request, Space, schedule  # noqa: E402

CORES = 4


def cluster(nodes: int, kind: str) -> tuple[list[Space], list[Busy]]:
    held = {"busy": CORES, "mixed": CORES - 1, "free": 0}[kind]
    spaces = [Space(f"n{i}", ("G",), CORES - held) for i in range(nodes)]
    running = [Busy(f"n{i}", held, 100.0 + i) for i in range(nodes)] if held else []
    return spaces, running


def queue(n: int) -> list[Request]:
    return [Request(i, 1 + i % 4, 1, frozenset({"G"}), 60.0 + i % 600) for i in range(n)]


def time_pass(n: int, nodes: int, kind: str, repeat: int = 5) -> float:
    reqs = queue(n)
    if kind == "mixed":
        reqs = [Request("head", CORES, 1, frozenset({"G"}), 600.0), *reqs]
    times = []
    for _ in range(repeat):
        spaces, running = cluster(nodes, kind)
        t0 = time.perf_counter()
        schedule(reqs, spaces, running, now=0.0, policy="easy")
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    print(f"{'queued':>8} {'nodes':>6} {'busy ms':>9} {'mixed ms':>9} {'free ms':>9}")
    for n in (1_000, 10_000, 100_000):
        for nodes in (100, 500, 2_000):
            row = [time_pass(n, nodes, kind, repeat=3) for kind in ("busy", "mixed", "free")]
            print(f"{n:>8} {nodes:>6} " + " ".join(f"{ms:>9.1f}" for ms in row))


if __name__ == "__main__":
    main()
