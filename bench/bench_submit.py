"""Accepting and canceling large sweeps through the real API of a local cluster (`hpc up`).

Prints, for sweeps of 100,000 and 1,000,000 tasks (``--sizes``):
- the time the API takes to accept the job (the POST, as a client sees it);
- how much the control plane's memory grew: its resident set before the POST and the
  peak (VmHWM) after, read from /proc of the local Functions host `hpc up` started;
- how long until the sweep's first task runs (tasks come into being as dispatched);
- how long the API takes for a page of 100 of its tasks (the first page, and the last);
- the time to cancel it, until the job is Canceled.

Targets (issue "Scheduler"): 1,000,000 tasks accepted in <= 3 s with <= 100 MB more
memory; 100,000 in <= 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from hpc.localcluster import LocalCluster


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def control_plane_pid(up_pid: int) -> int:
    """The local Functions host (`python -m devhost`) that `hpc up` started."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        if ppid == up_pid and b"devhost" in cmdline:
            return int(proc.name)
    raise SystemExit("the control plane process (devhost) was not found")


def reset_peak(pid: int) -> None:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(Path(tmp) / "hpc", nodes=1, cores=2) as cluster,
    ):
        assert cluster.proc is not None
        pid = control_plane_pid(cluster.proc.pid)
        cluster.wait_for(lambda: bool(cluster.get("/api/nodes")), timeout_s=60, what="a node")
        for size in sizes:
            reset_peak(pid)
            before = memory_kb(pid)["VmRSS"]
            spec = {
                "name": f"sweep{size}",
                "tasks": [{"command": "sleep 30", "sweep": f"1-{size}"}],
            }
            t0 = time.perf_counter()
            reply = cluster.http.post("/api/jobs", json=spec)
            accepted = time.perf_counter() - t0
            if reply.status_code != 201:
                raise SystemExit(f"submit refused: {reply.status_code} {reply.text}")
            job_id = int(reply.json()["id"])
            accepted = time.perf_counter() - t0
            while not cluster.get(f"/api/jobs/{job_id}/tasks", state="Running", limit=1)["tasks"]:
                time.sleep(0.05)
            first = time.perf_counter() - t0
            peak = memory_kb(pid)["VmHWM"]
            t2 = time.perf_counter()
            page = cluster.get(f"/api/jobs/{job_id}/tasks", limit=100)["tasks"]
            last = cluster.get(f"/api/jobs/{job_id}/tasks", after=size - 100, limit=100)["tasks"]
            paged = (time.perf_counter() - t2) / 2
            assert len(page) == len(last) == 100, (len(page), len(last))
            t1 = time.perf_counter()
            cluster.post(f"/api/jobs/{job_id}/cancel")
            job = cluster.wait_job(job_id, timeout_s=120)
            canceled = time.perf_counter() - t1
            print(
                f"{size:>9,}-task sweep: accepted in {accepted:.3f} s; control plane memory "
                f"+{(peak - before) / 1024:.1f} MB (peak over RSS before); first task running "
                f"after {first:.2f} s; a page of 100 tasks (first or last) in {paged * 1000:.0f} ms; "
                f"cancel to {job['state']} in {canceled:.2f} s"
            )


if __name__ == "__main__":
    main()
