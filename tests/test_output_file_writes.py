"""A task's own stdout / stderr files (``--stdout`` / ``--stderr``, Slurm's --output / --error): the writing.

The agent's runner writes the streams whole into the files (relative to the working
directory; one file for both when they name the same file), keeps serving a copy
through the Output store (cut at the cap there only), and fails a task whose file
cannot be written with a reason naming the path; the agent reports that failure.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import Agent, AgentConfig
from agent.runner import Runner
from agent.taskenv import task_env
from shared.adapters.local_output import LocalOutputStore
from shared.adapters.sqlite_bus import SqliteBus
from shared.domain.messages import RegisterNode, RunTask, TaskEnded
from shared.ports.output import truncation_marker
from tests.agent_fixtures import ControlPlane
from tests.helpers import wait_until

# --- the runner writes the files ------------------------------------------------------------


@pytest.fixture
def output(tmp_path: Path) -> LocalOutputStore:
    return LocalOutputStore(tmp_path / "store")


def run_task(command: str, *, attempt: int = 0, **extra: Any) -> RunTask:
    return RunTask(incarnation=1, job_id=9, task_id=2, attempt=attempt, command=command, **extra)


def make_runner(task: RunTask, output: LocalOutputStore, **kw: Any) -> Runner:
    return Runner(task, output=output, env=task_env(task, node="n1", group="OnPremNodes"), **kw)


def run(r: Runner, timeout: float = 30.0) -> int:
    assert r.start() is None
    deadline = time.monotonic() + timeout
    while (code := r.poll()) is None:
        assert time.monotonic() < deadline, "the task did not end"
        time.sleep(0.005)
    r.finish()
    return code


def api_copy(output: LocalOutputStore, stream: Any, attempt: int = 0) -> bytes:
    return output.read(9, 2, stream, attempt=attempt, limit=1 << 30)


def test_streams_go_to_their_files_relative_to_the_work_dir_and_to_the_api(
    tmp_path: Path, output: LocalOutputStore
) -> None:
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    task = run_task(
        "echo out1; echo err1 >&2; echo out2",
        work_dir=str(work),
        stdout="logs/task.out",
        stderr=str(tmp_path / "abs.err"),
    )
    assert run(make_runner(task, output)) == 0
    assert (work / "logs" / "task.out").read_bytes() == b"out1\nout2\n"
    assert (tmp_path / "abs.err").read_bytes() == b"err1\n"
    assert api_copy(output, "stdout") == b"out1\nout2\n"
    assert api_copy(output, "stderr") == b"err1\n"


def test_one_file_for_both_streams_gets_both_in_the_order_written(
    tmp_path: Path, output: LocalOutputStore
) -> None:
    (tmp_path / "sub").mkdir()
    task = run_task(
        "echo a; echo b >&2; echo c; echo d >&2",
        work_dir=str(tmp_path),
        stdout="both.txt",
        stderr="sub/../both.txt",  # the same file, spelt otherwise
    )
    assert run(make_runner(task, output)) == 0
    assert (tmp_path / "both.txt").read_bytes() == b"a\nb\nc\nd\n"
    assert api_copy(output, "stdout") == b"a\nb\nc\nd\n"
    assert api_copy(output, "stderr") == b""


def test_only_the_stream_with_a_file_goes_to_a_file(
    tmp_path: Path, output: LocalOutputStore
) -> None:
    task = run_task("echo o; echo e >&2", work_dir=str(tmp_path), stderr="e.txt")
    assert run(make_runner(task, output)) == 0
    assert (tmp_path / "e.txt").read_bytes() == b"e\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["e.txt"]
    assert api_copy(output, "stdout") == b"o\n"
    assert api_copy(output, "stderr") == b"e\n"


def test_the_file_is_whole_while_the_api_copy_is_cut_at_the_cap(
    tmp_path: Path, output: LocalOutputStore
) -> None:
    cap = 10_000
    task = run_task(
        "head -c 50000 /dev/zero | tr '\\0' z; echo; echo done >&2",
        work_dir=str(tmp_path),
        stdout="big.out",
    )
    r = make_runner(task, output, max_output_bytes=cap)
    assert run(r) == 0
    assert (tmp_path / "big.out").read_bytes() == b"z" * 50_000 + b"\n"
    assert api_copy(output, "stdout") == b"z" * cap + b"\n" + truncation_marker(cap)
    assert output.info(9, 2, "stdout", attempt=0).truncated_at == cap
    assert api_copy(output, "stderr") == b"done\n"
    assert not output.info(9, 2, "stderr", attempt=0).truncated


def test_the_api_copy_follows_the_file_while_the_task_runs(
    tmp_path: Path, output: LocalOutputStore
) -> None:
    go = tmp_path / "go"
    task = run_task(
        f"echo early; while [ ! -e {go} ]; do sleep 0.01; done; echo late",
        work_dir=str(tmp_path),
        stdout="live.out",
    )
    r = make_runner(task, output)
    assert r.start() is None
    try:
        wait_until(
            lambda: r.poll() is None and api_copy(output, "stdout") == b"early\n",
            what="the running task's output in the Output store",
        )
    finally:
        go.touch()
    wait_until(lambda: r.poll() is not None, what="the task to end")
    r.finish()
    assert api_copy(output, "stdout") == b"early\nlate\n"


def test_each_attempt_starts_its_file_afresh(tmp_path: Path, output: LocalOutputStore) -> None:
    (tmp_path / "o.txt").write_text("left over from before\n")
    for attempt, word in enumerate(["first", "second"]):
        task = run_task(f"echo {word}", attempt=attempt, work_dir=str(tmp_path), stdout="o.txt")
        assert run(make_runner(task, output)) == 0
        assert (tmp_path / "o.txt").read_text() == f"{word}\n"
    assert api_copy(output, "stdout", attempt=0) == b"first\n"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"stdout": "nodir/o.txt"}, "stdout file '{w}/nodir/o.txt': its directory '{w}/nodir'"),
        ({"stderr": "/no/such/dir/e.txt"}, "stderr file '/no/such/dir/e.txt': its directory"),
        ({"stdout": "adir"}, "stdout file '{w}/adir' is a directory"),
        ({"stdout": "a" * 300}, "cannot write the stdout file '{w}/" + "a" * 300 + "': File name"),
    ],
)
def test_a_file_that_cannot_be_written_stops_the_task_with_a_reason_naming_it(
    tmp_path: Path, output: LocalOutputStore, fields: dict[str, str], reason: str
) -> None:
    (tmp_path / "adir").mkdir()
    marker = tmp_path / "ran"
    task = run_task(f"touch {marker}", work_dir=str(tmp_path), **fields)
    error = make_runner(task, output).start()
    expected = reason.format(w=tmp_path)
    assert error is not None and expected in error
    assert not marker.exists(), "the command must not run"
    assert expected.encode() in api_copy(output, "stderr")  # hpc task output shows why


# --- the agent reports it -------------------------------------------------------------------


@pytest.fixture
def agent_cp(bus: SqliteBus, output: LocalOutputStore) -> Iterator[ControlPlane]:
    """A registered agent in a thread, and the test's side of the bus."""
    cp = ControlPlane(bus)
    config = AgentConfig(name="node-1", groups=["OnPremNodes"], cores=2, poll_ms=20)
    agent = Agent(config, bus=bus, output=output)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="the registration answered")
    yield cp
    agent.stop()
    thread.join(timeout=5)


def test_the_agent_fails_a_task_whose_output_directory_is_missing(
    agent_cp: ControlPlane, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    agent_cp.send(run_task("echo never", work_dir=str(tmp_path), stdout="missing/o-%j.txt"))
    ended = agent_cp.wait_for(TaskEnded)
    assert ended.exit_code is None
    assert ended.error is not None and f"'{missing}'" in ended.error
    agent_cp.send(run_task("echo fine", attempt=1, work_dir=str(tmp_path), stdout="ok.txt"))
    assert agent_cp.wait_for(TaskEnded, lambda e: e.attempt == 1).exit_code == 0
    assert (tmp_path / "ok.txt").read_text() == "fine\n"


def test_a_fifo_as_the_output_file_stops_the_task_at_once_not_the_agent(
    tmp_path: Path, output: LocalOutputStore
) -> None:
    """Opening a FIFO nobody reads would block the agent's loop: no heartbeats, the node
    Unreachable, another user's tasks requeued. It is refused at once, naming the file."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    marker = tmp_path / "ran"
    task = run_task(f"touch {marker}", work_dir=str(tmp_path), stdout="fifo")
    started = time.monotonic()
    error = make_runner(task, output).start()
    assert time.monotonic() - started < 5
    assert error is not None and f"cannot write the stdout file '{fifo}'" in error
    assert "not a regular file (a FIFO, device or socket)" in error
    assert not marker.exists(), "the command must not run"


@pytest.mark.parametrize("name", [os.devnull, "to-null"])
def test_the_null_device_takes_nothing_and_the_api_still_gets_the_stream(
    tmp_path: Path, output: LocalOutputStore, name: str
) -> None:
    """``--stdout /dev/null`` is the everyday idiom to drop a stream: accepted (by what the file
    is, the null device, so a symlink to it too), written nothing, the API copy kept."""
    (tmp_path / "to-null").symlink_to(os.devnull)
    task = run_task(
        "echo out; echo err >&2", work_dir=str(tmp_path), stdout=name, stderr=os.devnull
    )
    runner = make_runner(task, output)
    assert run(runner) == 0
    assert api_copy(output, "stdout") == b"out\n"
    assert api_copy(output, "stderr") == b"err\n"
    assert (tmp_path / name).is_char_device()  # the device (or the link to it) left as it was
    assert (tmp_path / "to-null").is_symlink()


@pytest.mark.parametrize("name", ["/dev/zero", "to-zero", "a-dir"])
def test_other_devices_and_directories_are_still_refused(
    tmp_path: Path, output: LocalOutputStore, name: str
) -> None:
    (tmp_path / "to-zero").symlink_to("/dev/zero")
    (tmp_path / "a-dir").mkdir()
    marker = tmp_path / "ran"
    task = run_task(f"touch {marker}", work_dir=str(tmp_path), stdout=name)
    error = make_runner(task, output).start()
    assert error is not None
    if name == "a-dir":
        assert error == f"stdout file '{tmp_path / name}' is a directory"
    else:
        assert error.endswith("not a regular file (a FIFO, device or socket)")
    assert not marker.exists(), "the command must not run"
