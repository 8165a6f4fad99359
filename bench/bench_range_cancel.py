"""Canceling 10,000 tasks of a held 50,000-step sweep on a local cluster (`hpc up`, the
embedded store): one task at a time (``POST /api/jobs/{id}/tasks/{taskId}/cancel``, what
``hpc task cancel J FIRST-LAST`` sent before: a probe's 1,001 took 49 s) against one request
(``POST /api/jobs/{id}/tasks/cancel``), and ``hpc task cancel J 20001-30000`` end to end
(its process start and its 10,000 lines included). Then the same for the requeue of canceled
tasks (``POST /api/jobs/{id}/tasks/{taskId}/requeue``, what ``hpc task requeue J FIRST-LAST``
sent before: a probe's 951 took 56 s, against ``POST /api/jobs/{id}/tasks/requeue``).

The one-at-a-time figures are measured on ``--sample`` tasks (default 500) and scaled to
10,000 (the whole would take minutes); ``--sample 10000`` measures it all.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from hpc.localcluster import LocalCluster, hpc_command

TASKS = 10_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=500, help="tasks canceled one at a time")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(Path(tmp) / "hpc", nodes=1, cores=2) as cluster,
    ):
        spec = {"tasks": [{"command": "sleep 30", "sweep": "1-50000"}], "held": True}
        job = cluster.submit(spec)

        t0 = time.perf_counter()
        for task in range(1, args.sample + 1):
            reply = cluster.http.post(f"/api/jobs/{job}/tasks/{task}/cancel")
            assert reply.status_code == 200, reply.text
        each = (time.perf_counter() - t0) / args.sample

        t1 = time.perf_counter()
        reply = cluster.http.post(f"/api/jobs/{job}/tasks/cancel", json={"tasks": ["10001-20000"]})
        at_once = time.perf_counter() - t1
        assert reply.status_code == 200 and len(reply.json()["tasks"]) == TASKS, reply.text

        env = {**os.environ, "HPC_API_URL": cluster.url, "HPC_TOKEN": cluster.token}
        t2 = time.perf_counter()
        out = subprocess.run(
            [*hpc_command(), "task", "cancel", str(job), "20001-30000"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        cli = time.perf_counter() - t2
        assert out.returncode == 0 and out.stdout.count("Canceled") == TASKS, out.stderr

        counts = cluster.job(job)["taskCounts"]
        assert counts.get("Canceled") == args.sample + 2 * TASKS, counts

        t3 = time.perf_counter()  # requeue: tasks of the range canceled by one request
        for task in range(10_001, 10_001 + args.sample):
            reply = cluster.http.post(f"/api/jobs/{job}/tasks/{task}/requeue")
            assert reply.status_code == 200, reply.text
        requeue_each = (time.perf_counter() - t3) / args.sample

        t4 = time.perf_counter()
        reply = cluster.http.post(f"/api/jobs/{job}/tasks/requeue", json={"tasks": ["20001-30000"]})
        requeue_at_once = time.perf_counter() - t4
        assert reply.status_code == 200 and len(reply.json()["tasks"]) == TASKS, reply.text

        reply = cluster.http.post(f"/api/jobs/{job}/tasks/cancel", json={"tasks": ["30001-40000"]})
        assert reply.status_code == 200, reply.text
        t5 = time.perf_counter()
        out = subprocess.run(
            [*hpc_command(), "task", "requeue", str(job), "30001-40000"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        requeue_cli = time.perf_counter() - t5
        assert out.returncode == 0 and out.stdout.count("Queued") == TASKS, out.stderr
        counts = cluster.job(job)["taskCounts"]
        assert counts.get("Canceled") == TASKS, counts
        print(
            f"cancel {TASKS:,} of a held 50,000-step sweep: one request per task "
            f"{each * 1000:.1f} ms each, {each * TASKS:.1f} s for {TASKS:,} (measured on "
            f"{args.sample:,}); one request {at_once:.3f} s; `hpc task cancel {job} "
            f"20001-30000` {cli:.2f} s"
        )
        print(
            f"requeue {TASKS:,} canceled tasks of it: one request per task "
            f"{requeue_each * 1000:.1f} ms each, {requeue_each * TASKS:.1f} s for {TASKS:,} "
            f"(measured on {args.sample:,}); one request {requeue_at_once:.3f} s; `hpc task "
            f"requeue {job} 30001-40000` {requeue_cli:.2f} s"
        )


if __name__ == "__main__":
    main()
