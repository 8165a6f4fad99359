"""How sharp EndChance's end forecast is, offline (no replay): Brier score, log loss, and
the share of truly freed nodes named at high chances.

Walks a trace in time: each job starts at its start in a replay's ``starts`` (a JSON of job
id -> start, ``elastic()``'s second value; without it, at its submit) and ends ``run`` later.
At every ``--every``-th submit, every running job's chance to end within ``--horizon`` is
scored against the truth; ended jobs are learnt at their end, as the replay learns them (no
peeking). Variants are EndChance's constructor parameters, e.g.

    python bench/bench_endchance.py --starts starts.json \\
        now: before:decay=1,last_weight=0,same_kept=20

Per variant: ``brier`` (per job), ``brier_nodes`` (node-weighted), ``logloss``, ``c90``/``f90``
(of the nodes that come free, the share named at a chance >= 0.9; of the nodes named so, the
share that did not come free), ``f70`` (the false share at 0.7: the pool's confidence), and
``R97``/``R90`` (the share of the freed nodes named at the best threshold whose nodes are
97% / 90% truly freed: calibration-free).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.domain.endchance import EndChance  # noqa: E402
from shared.sim.swf import SwfJob, read  # noqa: E402

TRACE = Path(__file__).resolve().parents[2] / "shared/data/traces/KTH-SP2-1996-2.1-cln.swf.gz"
"""Where the repository's README says the traces are (``../shared/data/traces``)."""


def params(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        out[name] = int(value) if name.endswith("_kept") else float(value)
    return out


def score(
    jobs: list[SwfJob],
    start: dict[int, float],
    ends: EndChance,
    horizon: float,
    every: int,
) -> dict[str, Any]:
    events: list[tuple[float, int, int]] = []  # (time, 0 end / 1 start / 2 moment, job)
    for j in jobs:
        events += [(start[j.id] + j.run, 0, j.id), (start[j.id], 1, j.id)]
    events += [(t, 2, -1) for k, t in enumerate(sorted(j.submit for j in jobs)) if k % every == 0]
    events.sort()
    by_id = {j.id: j for j in jobs}
    running: dict[int, SwfJob] = {}
    n = brier = loss = nodes = brier_n = 0.0
    freed = caught = named = false = named7 = false7 = 0
    scored: list[tuple[float, bool, int]] = []
    for t, kind, job_id in events:
        if kind == 0:
            j = running.pop(job_id)
            ends.ended(_user(j), j.limit, j.run)
            continue
        if kind == 1:
            running[job_id] = by_id[job_id]
            continue
        for j in running.values():
            p = ends.chance(_user(j), j.limit, t - start[j.id], horizon)
            y = start[j.id] + j.run <= t + horizon
            d = (p - y) ** 2
            n += 1
            brier += d
            nodes += j.procs
            brier_n += d * j.procs
            q = min(max(p, 1e-4), 1 - 1e-4)
            loss -= math.log(q if y else 1 - q)
            scored.append((p, y, j.procs))
            freed += j.procs * y
            if p >= 0.9:
                named += j.procs
                caught += j.procs * y
                false += j.procs * (not y)
            if p >= 0.7:
                named7 += j.procs
                false7 += j.procs * (not y)
    scored.sort(key=lambda x: -x[0])
    recall = {}
    for precision in (0.97, 0.9):
        tp = fp = best = 0
        for _, y, w in scored:
            tp, fp = tp + w * y, fp + w * (not y)
            if tp >= precision * (tp + fp):
                best = tp
        recall[precision] = best / max(1, freed)
    return {
        "brier": brier / n,
        "brier_nodes": brier_n / nodes,
        "logloss": loss / n,
        "c90": caught / max(1, freed),
        "f90": false / max(1, named),
        "f70": false7 / max(1, named7),
        "R97": recall[0.97],
        "R90": recall[0.9],
        "scored": int(n),
    }


def _user(job: SwfJob) -> str | None:
    return str(job.user) if job.user >= 0 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trace", type=Path, default=TRACE, help="SWF (default: KTH-SP2)")
    ap.add_argument("variants", nargs="*", help="NAME:k=v,k=v (EndChance's parameters)")
    ap.add_argument("--starts", type=Path, help="a replay's starts (JSON: job id -> start)")
    ap.add_argument("--nodes", type=int, default=500, help="jobs wider are left out")
    ap.add_argument("--horizon", type=float, default=180.0)
    ap.add_argument("--every", type=int, default=1, help="score at every N-th submit")
    args = ap.parse_intermixed_args()
    if not args.trace.exists():  # the traces live beside the repository, not in it
        print(f"no trace at {args.trace}: give its path (SWF, .swf or .swf.gz)")
        return
    jobs = [j for j in read(args.trace) if j.procs <= args.nodes]
    known = (
        {int(k): float(v) for k, v in json.loads(args.starts.read_text()).items()}
        if (args.starts)
        else {}
    )
    start = {j.id: known.get(j.id, j.submit) for j in jobs}
    for variant in args.variants or ["base:"]:
        name, _, text = variant.partition(":")
        t0 = time.perf_counter()
        out = score(jobs, start, EndChance(**params(text)), args.horizon, args.every)  # type: ignore[arg-type]
        cells = " ".join(
            f"{k} {v:.5f}" if isinstance(v, float) else f"{k} {v}" for k, v in out.items()
        )
        print(f"{name:12s} {cells} ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
