"""Task output end to end: `hpc up` with a real agent process, read with `hpc task output`.

A task fails on its first attempt and, requeued, succeeds on its second; each
attempt writes well over 1 MiB. Both attempts' output must be kept whole and
apart, the last attempt shown by default, and a stream over HPC_MAX_OUTPUT_BYTES
cut with a line saying so.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpc.localcluster import LocalCluster, hpc_command

pytestmark = pytest.mark.e2e

CAP = 3_000_000
"""HPC_MAX_OUTPUT_BYTES of this cluster: above the 1 MiB the output used to be cut at."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(
        tmp_path_factory.mktemp("output-e2e") / "hpc",
        nodes=1,
        cores=2,
        env={"HPC_MAX_OUTPUT_BYTES": str(CAP)},
    )
    c.start()
    yield c
    c.stop()


def hpc(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*hpc_command(), *args], env=cluster.env, capture_output=True, timeout=120
    )


def lines(word: str, count: int) -> bytes:
    return b"".join(b"%s %07d\n" % (word.encode(), i) for i in range(count))


def test_a_requeued_task_keeps_each_attempts_big_output_whole_and_apart(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    mark = tmp_path / "ran-once"
    command = (
        'if [ -e "$MARK" ]; then n=200000; w=second; else n=150000; w=first; touch "$MARK"; fi; '
        "awk -v n=$n -v w=$w 'BEGIN { for (i = 0; i < n; i++) printf \"%s %07d\\n\", w, i }'; "
        '[ $w = second ] || { echo "first attempt fails" >&2; exit 3; }'
    )
    job_id = cluster.submit({"command": command, "env": {"MARK": str(mark)}})
    assert cluster.wait_job(job_id)["state"] == "Failed"
    cluster.post(f"/api/jobs/{job_id}/requeue")
    assert cluster.wait_job(job_id)["state"] == "Finished"

    first, second = lines("first", 150_000), lines("second", 200_000)
    assert len(first) > 1 << 20 and len(second) > 1 << 20
    shown = hpc(cluster, "task", "output", str(job_id), "1")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == second  # the last attempt, whole
    assert hpc(cluster, "task", "output", str(job_id), "1", "--attempt", "1").stdout == second
    assert hpc(cluster, "task", "output", str(job_id), "1", "--attempt", "0").stdout == first
    errors = hpc(
        cluster, "task", "output", str(job_id), "1", "--attempt", "0", "--stream", "stderr"
    )
    assert errors.stdout == b"first attempt fails\n"
    tail = hpc(cluster, "task", "output", str(job_id), "1", "--tail", "2")
    assert tail.stdout == b"second 0199998\nsecond 0199999\n"
    missing = hpc(cluster, "task", "output", str(job_id), "1", "--attempt", "2")
    assert missing.returncode != 0
    assert missing.stderr.decode().strip().splitlines() == [
        f"error: task {job_id}.1 has no attempt 2: it had attempts 0 to 1"
    ]


def test_a_stream_over_the_cap_is_cut_with_a_line_saying_so(cluster: LocalCluster) -> None:
    job_id = cluster.submit(
        {"command": "head -c 5000000 /dev/zero | tr '\\0' z; echo; echo done >&2; exit 0"}
    )
    assert cluster.wait_job(job_id)["state"] == "Finished"
    marker = f"[hybridhpc: output truncated at {CAP} bytes (HPC_MAX_OUTPUT_BYTES)]\n".encode()
    out = hpc(cluster, "task", "output", str(job_id), "1")
    assert out.stdout == b"z" * CAP + b"\n" + marker
    assert (
        hpc(cluster, "task", "output", str(job_id), "1", "--stream", "stderr").stdout == b"done\n"
    )
    r = cluster.http.get(f"/api/jobs/{job_id}/tasks/1/output", params={"limit": 0})
    assert r.headers["X-Output-Truncated"] == "true"
    assert r.headers["X-Output-Size"] == str(CAP + 1 + len(marker))
    assert cluster.tasks(job_id)[0]["output"].endswith(marker.decode())


def test_output_not_stored_is_told_from_output_that_is_empty(cluster: LocalCluster) -> None:
    """A probe: a Finished task whose node could not publish its output (Blob storage down)
    printed nothing and exited 0 on `hpc task output`, as for a task that printed nothing."""
    job_id = cluster.submit({"command": "true"})
    assert cluster.wait_job(job_id)["state"] == "Finished"
    empty = hpc(cluster, "task", "output", str(job_id), "1")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, b"", b"")  # it printed nothing
    for path in (cluster.home / "output" / str(job_id)).glob("1.0.*"):
        path.unlink()  # as output its node has not published: nothing of it stored
    missing = hpc(cluster, "task", "output", str(job_id), "1")
    assert missing.returncode == 0 and missing.stdout == b""
    said = b" ".join(missing.stderr.split())
    assert f"nothing of task {job_id}.1's stdout of attempt 0 is stored yet".encode() in said
    assert b"its agent keeps trying" in said


def test_an_earlier_attempt_that_never_ran_is_not_said_to_be_on_its_way(
    cluster: LocalCluster,
) -> None:
    """A probe: attempt 0 canceled while held, requeued and run as attempt 1; `--attempt 0`
    said its agent kept trying to store an output that attempt never had."""
    job_id = int(hpc(cluster, "job", "submit", "--hold", "--", "echo hi").stdout)
    for step in ("cancel", "requeue", "release"):
        assert hpc(cluster, "job", step, str(job_id)).returncode == 0
    assert cluster.wait_job(job_id)["state"] == "Finished"
    old = hpc(cluster, "task", "output", f"{job_id}.1", "--attempt", "0")
    said = b" ".join(old.stderr.split())
    assert b"that attempt may never have reached a node" in said, said
    assert b"keeps trying" not in said
