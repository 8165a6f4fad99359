"""How large the ``forecast`` idle policy's stored memory grows, and whether the cluster's
timer (which restores it from JSON at every run) plans as the simulator's one object does.

Replays a Standard Workload Format trace (default: KTH-SP2 in ../shared/data/traces) into
two :class:`ForecastPool` s: one kept in memory, as the simulator keeps it, and one that a
timer every ``--timer`` seconds rebuilds from the JSON the previous run stored (as
:mod:`shared.usecases.idle_policy` does through the autoscaler's Meta document). Each is
told every submit (user, nodes) and every job end (at submit + run time: no queue wait;
with its run time and limit, which the end forecast learns from) in time order, ends first
at a tie (runs with nothing new are skipped: they store the
same). Prints the stored JSON's size (largest, and on the
busiest day) and how many runs planned differently (0 expected while no more users than
``USERS_KEPT`` come back after dropping out of the stored ones).
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.domain.forecastpool import ForecastPool  # noqa: E402
from shared.sim.swf import read  # noqa: E402

TRACE = Path(__file__).resolve().parents[2] / "shared/data/traces/KTH-SP2-1996-2.1-cln.swf.gz"
"""Where the repository's README says the traces are (``../shared/data/traces``)."""
BOOT_S, NODES, CPN = 180.0, 500, 1


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("trace", nargs="?", type=Path, default=TRACE)
    args.add_argument("--timer", type=float, default=60.0, help="seconds between runs")
    opts = args.parse_args()
    if not opts.trace.exists():  # the traces live beside the repository, not in it
        print(f"no trace at {opts.trace}: give its path (SWF, .swf or .swf.gz)")
        return
    jobs = read(opts.trace)
    # (time, 0 end | 1 submit, nodes, user, limit, run)
    events: list[tuple[float, int, int, str | None, float, float]] = []
    for j in jobs:
        user = str(j.user) if j.user >= 0 else None
        nodes = -(-j.procs // CPN)
        events += [(j.submit, 1, nodes, user, j.limit, j.run),
                   (j.submit + j.run, 0, nodes, user, j.limit, j.run)]  # fmt: skip
    heapq.heapify(events)
    kept = ForecastPool(BOOT_S, NODES)
    stored = json.dumps(kept.to_dict())
    runs = differ = largest = 0
    day_size: dict[int, int] = {}
    per_day = Counter(int(j.submit // 86_400) for j in jobs)
    tick = events[0][0] // opts.timer * opts.timer + opts.timer
    while events:
        timer = ForecastPool(BOOT_S, NODES)
        timer.restore(json.loads(stored))
        while events and events[0][0] < tick:
            at, kind, nodes, user, limit, run = heapq.heappop(events)
            for pool in (kept, timer):
                if kind:
                    pool.arrived(at, nodes, user)
                else:
                    pool.ended(at, nodes, user)
                    pool.ran(user, limit, run)
        runs += 1
        # the plans, and the end forecast of a job like the last one, 60 s into its run
        probe = (user, limit, 60.0, BOOT_S)
        if any(kept.plan(tick, 0, 0, i) != timer.plan(tick, 0, 0, i) for i in (0, 3)) or (
            kept.ends.chance(*probe) != timer.ends.chance(*probe)
        ):
            differ += 1
        stored = json.dumps(timer.to_dict())
        largest = max(largest, len(stored))
        day = int(tick // 86_400)
        day_size[day] = max(day_size.get(day, 0), len(stored))
        tick += opts.timer
        if events and events[0][0] >= tick:  # runs with nothing new change nothing stored
            tick = events[0][0] // opts.timer * opts.timer + opts.timer
    busiest, submits = per_day.most_common(1)[0]
    print(f"{opts.trace.name}: {len(jobs)} jobs, {len({j.user for j in jobs})} users, "
          f"{runs} timer runs of {opts.timer:g} s")  # fmt: skip
    print(f"stored JSON: largest {largest:,} bytes; on the busiest day (day {busiest}, "
          f"{submits} submits) {day_size.get(busiest, 0):,} bytes")  # fmt: skip
    print(f"runs whose restored plan differed from the kept object's: {differ}")


if __name__ == "__main__":
    main()
