"""End-to-end throughput and latency on a real local cluster (`hpc up`, 2 agents).

Prints:
- CPU an idle cluster uses (every process on the machine, measured from /proc);
- tasks/s for a sweep of `true` (default 1,000 tasks) on 2 agents with 2 cores each;
- submit and cancel times of a large sweep (default 100,000 tasks of `sleep 60`);
- submit -> start latency of a one-task job on an idle node (median and p95 of N runs),
  measured from just before the POST to the task's startTime recorded by the control plane.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from hpc.localcluster import LocalCluster


def idle_cpu(*, seconds: float) -> float:
    """CPU used by every process on this machine over ``seconds``, in % of one core."""

    def ticks() -> int:
        total = 0
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    stat = (proc / "stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rfind(")") + 2 :].split()
                total += int(fields[11]) + int(fields[12])
        return total

    before, t0 = ticks(), time.perf_counter()
    time.sleep(seconds)
    used = (ticks() - before) / os.sysconf("SC_CLK_TCK")
    return 100 * used / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--latency-runs", type=int, default=20)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument(
        "--big", type=int, default=100_000, help="tasks of the submit/cancel run (0: skip)"
    )
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(Path(tmp) / "hpc", nodes=args.nodes, cores=args.cores) as cluster,
    ):
        time.sleep(2)  # let start-up settle
        idle = idle_cpu(seconds=5)
        print(f"idle cluster (control plane + {args.nodes} agents): {idle:.1f}% of one core")

        t0 = time.perf_counter()
        job_id = cluster.submit(
            {"name": "bench", "tasks": [{"command": "true", "sweep": f"1-{args.tasks}"}]}
        )
        job = cluster.wait_job(job_id, timeout_s=600)
        elapsed = time.perf_counter() - t0
        assert job["state"] == "Finished", job
        nodes = {t["node"] for t in cluster.tasks(job_id)}
        print(
            f"sweep: {args.tasks} tasks of `true` on {args.nodes} agents x {args.cores} cores: "
            f"{elapsed:.2f} s, {args.tasks / elapsed:.1f} tasks/s (nodes used: {len(nodes)})"
        )

        latencies = []
        for _ in range(args.latency_runs):
            before = datetime.now().astimezone()
            jid = cluster.submit({"tasks": [{"command": "true"}]})
            cluster.wait_job(jid, timeout_s=60)
            start = datetime.fromisoformat(cluster.tasks(jid)[0]["startTime"])
            latencies.append((start - before).total_seconds() * 1000)
        latencies.sort()
        p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
        print(
            f"submit->start on an idle node: median {statistics.median(latencies):.1f} ms, "
            f"p95 {p95:.1f} ms, min {latencies[0]:.1f} ms ({len(latencies)} runs)"
        )

        if args.big:
            spec = {"name": "big", "tasks": [{"command": "sleep 60", "sweep": f"1-{args.big}"}]}
            t0 = time.perf_counter()
            big = cluster.submit(spec)
            t1 = time.perf_counter()
            cluster.post(f"/api/jobs/{big}/cancel")
            job = cluster.wait_job(big, timeout_s=600)
            t2 = time.perf_counter()
            print(
                f"{args.big}-task sweep: submit {t1 - t0:.2f} s, "
                f"cancel to {job['state']} {t2 - t1:.2f} s"
            )


if __name__ == "__main__":
    main()
