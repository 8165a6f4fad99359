"""Task output as the agent keeps it: each attempt run through agent/runner.py (the way
the agent runs every attempt) into the real local Output store.

Pinned here: a retried task's attempts keep their streams apart; output far above
1 MiB is kept whole by default; past HPC_MAX_OUTPUT_BYTES a stream is cut (while
the process writes on, never blocking it), ends with a line saying so and is
recorded as truncated.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import agent.runner as runner_module
from agent.runner import Runner
from agent.taskenv import task_env
from shared.adapters.local_output import LocalOutputStore
from shared.domain.messages import JOB_SUBMIT_ENV, RunTask
from shared.ports.output import OutputStore, job_stamp, truncation_marker
from shared.settings import Settings
from tests.helpers import wait_until

MiB = 1 << 20


@pytest.fixture
def output(tmp_path: Path) -> LocalOutputStore:
    return LocalOutputStore(tmp_path / "out")


def run_task(job: int, command: str, *, attempt: int = 0, **extra: Any) -> RunTask:
    fields: dict[str, Any] = {"job_id": job, "task_id": 1, "attempt": attempt, **extra}
    if "incarnation" in RunTask.model_fields:
        fields["incarnation"] = 1
    return RunTask(command=command, **fields)


def runner(task: RunTask, output: OutputStore, **kw: Any) -> Runner:
    return Runner(task, output=output, env=task_env(task, node="n1", group="OnPremNodes"), **kw)


def run(r: Runner, timeout: float = 30.0) -> tuple[int, str]:
    """Start, poll as the agent does until the process ends, finish: (exit code, tail)."""
    assert r.start() is None
    deadline = time.monotonic() + timeout
    while (code := r.poll()) is None:
        assert time.monotonic() < deadline, f"task {r.key} did not end within {timeout} s"
        time.sleep(0.005)
    return code, r.finish()


def whole(output: LocalOutputStore, job: int, stream: Any, attempt: int) -> bytes:
    """The stream read back through the port in 1 MiB pages, as the API serves it."""
    pages, offset = [], 0
    while page := output.read(job, 1, stream, attempt=attempt, offset=offset, limit=MiB):
        pages.append(page)
        offset += len(page)
    return b"".join(pages)


def test_a_retried_task_keeps_each_attempts_output_apart(output):
    command = 'echo "try $HPC_TRY"; [ "$HPC_TRY" = 1 ] || { echo "warn $HPC_TRY" >&2; exit 1; }'
    first = run_task(1, command, attempt=0, env={"HPC_TRY": "0"})
    second = run_task(1, command, attempt=1, env={"HPC_TRY": "1"})
    assert run(runner(first, output)) == (1, "try 0\n")
    assert run(runner(second, output)) == (0, "try 1\n")
    assert output.read(1, 1, "stdout", attempt=0) == b"try 0\n"
    assert output.read(1, 1, "stderr", attempt=0) == b"warn 0\n"
    assert output.read(1, 1, "stdout", attempt=1) == b"try 1\n"
    assert output.read(1, 1, "stderr", attempt=1) == b""


def test_an_attempt_stamps_its_output_with_its_jobs_submit_time_and_another_job_reads_none(
    output,
):
    """A store that starts empty beside kept output numbers its jobs from 1 again: the new job
    1 was served the old job 1's output (a fault probe). The agent stamps each attempt's
    output with the job's submit time from its environment (shared.ports.output.job_stamp)."""
    old = run_task(4, "echo old secret", env={JOB_SUBMIT_ENV: "2026-01-01T00:00:00+00:00"})
    assert run(runner(old, output)) == (0, "old secret\n")
    new_stamp = job_stamp(4, "2026-02-02T00:00:00+00:00")
    assert output.stamp(4, 1, 0) == job_stamp(4, "2026-01-01T00:00:00+00:00")
    assert output.read(4, 1, "stdout", attempt=0, stamp=new_stamp) == b""  # not the new job's
    new = run_task(4, "echo new", env={JOB_SUBMIT_ENV: "2026-02-02T00:00:00+00:00"})
    assert run(runner(new, output)) == (0, "new\n")
    assert output.read(4, 1, "stdout", attempt=0, stamp=new_stamp) == b"new\n"
    without = run_task(5, "echo from an old control plane")  # no submit time: no stamp
    run(runner(without, output))
    assert output.stamp(5, 1, 0) is None
    assert output.read(5, 1, "stdout", attempt=0, stamp=job_stamp(5, "x")) != b""


def test_an_attempt_that_could_not_start_leaves_the_reason_in_its_own_stderr(output):
    run(runner(run_task(2, "echo ran"), output))
    failed = runner(run_task(2, "echo never", attempt=1, work_dir="/no/dir"), output)
    assert "/no/dir" in (failed.start() or "")
    assert b"/no/dir" in output.read(2, 1, "stderr", attempt=1)
    assert output.read(2, 1, "stdout", attempt=0) == b"ran\n"
    assert output.read(2, 1, "stderr", attempt=0) == b""


def test_output_far_above_1_mib_is_kept_whole_by_default(output):
    assert Settings().max_output_bytes == 100 * MiB
    size = 5 * MiB + 123
    expected = (b"0123456789abcde\n" * (size // 16 + 1))[:size]
    command = f"yes 0123456789abcde | head -c {size}; head -c {3 * MiB} /dev/zero >&2"
    r = runner(run_task(3, command), output)
    code, tail = run(r)
    assert code == 0 and r.truncated == set()
    assert whole(output, 3, "stdout", 0) == expected
    assert tail == expected[-4000:].decode()
    assert whole(output, 3, "stderr", 0) == bytes(3 * MiB)
    assert not output.info(3, 1, "stdout", attempt=0).truncated


def test_past_the_cap_a_stream_is_cut_marked_and_recorded_and_the_task_runs_on(output):
    cap = 64 * 1024
    # 4 MiB, far more than a pipe holds: a task blocked on a full pipe would never exit.
    command = f"head -c {4 * MiB} /dev/zero | tr '\\0' x; echo; echo still running; exit 7"
    r = runner(run_task(4, command, attempt=2), output, max_output_bytes=cap)
    code, tail = run(r)
    assert code == 7
    data = whole(output, 4, "stdout", 2)
    marker = truncation_marker(cap)
    assert data == b"x" * cap + b"\n" + marker
    assert marker == b"[hybridhpc: output truncated at 65536 bytes (HPC_MAX_OUTPUT_BYTES)]\n"
    assert tail.endswith(marker.decode())
    assert output.info(4, 1, "stdout", attempt=2).truncated_at == cap
    assert not output.info(4, 1, "stderr", attempt=2).truncated
    assert r.truncated == {"stdout"}


def test_output_of_exactly_the_cap_is_whole_and_unmarked(output):
    r = runner(run_task(5, "printf 0123456789"), output, max_output_bytes=10)
    run(r)
    assert output.read(5, 1, "stdout", attempt=0) == b"0123456789"
    assert not output.info(5, 1, "stdout", attempt=0).truncated


def test_the_cap_comes_from_hpc_max_output_bytes(output, monkeypatch):
    monkeypatch.setenv("HPC_MAX_OUTPUT_BYTES", "100")
    r = runner(run_task(6, "head -c 1000 /dev/zero >&2; echo ok"), output)
    assert r.max_output_bytes == 100
    run(r)
    assert output.read(6, 1, "stderr", attempt=0) == bytes(100) + b"\n" + truncation_marker(100)
    assert output.read(6, 1, "stdout", attempt=0) == b"ok\n"
    assert output.info(6, 1, "stderr", attempt=0).truncated_at == 100


def test_a_running_task_is_cut_back_to_the_cap_while_it_writes_on(output, monkeypatch):
    monkeypatch.setattr(runner_module, "CAP_CHECK_S", 0.0)
    cap = 1000
    command = (
        "head -c 3000000 /dev/zero; echo written >&2; "
        "while :; do head -c 100000 /dev/zero; sleep 0.01; done"
    )
    r = runner(run_task(7, command), output, max_output_bytes=cap)
    assert r.start() is None
    try:
        path = output.path(7, 1, "stdout", attempt=0)
        wait_until(lambda: b"written" in output.read(7, 1, "stderr", attempt=0), timeout=10)
        assert r.poll() is None  # still running: writing past the cap did not stop it
        assert path.stat().st_size < 1_000_000  # cut back from 3 MB (and what came since)
        assert output.info(7, 1, "stdout", attempt=0).truncated_at == cap  # visible already
        for _ in range(20):
            assert r.poll() is None
            time.sleep(0.01)
        assert path.stat().st_size < 1_000_000
    finally:
        r.kill_tree()
        r.finish()
    assert output.read(7, 1, "stdout", attempt=0) == bytes(cap) + b"\n" + truncation_marker(cap)
