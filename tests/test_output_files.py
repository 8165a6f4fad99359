"""A task's own stdout / stderr files (``--stdout`` / ``--stderr``, Slurm's --output / --error).

Pinned here: the placeholders (%j, %t, %a, %%) and what is refused at submit (an
unknown one, %a outside a sweep) as a table; the control plane expands them at
dispatch; the agent's runner writes the streams whole into the files (relative to
the working directory; one file for both when they name the same file), keeps
serving a copy through the Output store (cut at the cap there only), and fails a
task whose file cannot be written with a reason naming the path; and the CLI
sends the fields and checks them first.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import Agent, AgentConfig
from agent.runner import Runner, task_env
from hpc.localcluster import LocalCluster, hpc_command
from hpc.spec import build_spec
from shared.adapters.local_output import LocalOutputStore
from shared.adapters.sqlite_bus import SqliteBus
from shared.domain.jobspec import JobSpec
from shared.domain.messages import RegisterNode, RunTask, TaskEnded
from shared.domain.outputpaths import OutputIds, check_output_path, expand_output_path
from shared.errors import InvalidRequest
from shared.ports.output import truncation_marker
from tests import test_agent, test_cli
from tests.helpers import wait_until
from tests.test_agent import ControlPlane
from tests.test_cli import StandIn, assert_one_error_line, hpc
from tests.test_control import Clock, make_cp, register

server = test_cli.server
api = test_cli.api
"""The CLI tests' stand-in control plane, as fixtures here too."""
bus = test_agent.bus
"""The agent tests' embedded bus, queues declared."""

# --- expansion and validation: pure, as tables ----------------------------------------

IDS = OutputIds(job_id=42, task_id=7, sweep_index=3)


@pytest.mark.parametrize(
    ("path", "ids", "expanded"),
    [
        ("out.txt", IDS, "out.txt"),
        ("job%j.out", IDS, "job42.out"),
        ("%j-%t-%a.log", IDS, "42-7-3.log"),
        ("/abs/%j/%t.err", IDS, "/abs/42/7.err"),
        ("100%%.txt", IDS, "100%.txt"),
        ("%%j is %j", IDS, "%j is 42"),  # %% then j: a literal "%j"
        ("%%%j", IDS, "%42"),
        ("%j%j", IDS, "4242"),
        ("a%a", OutputIds(job_id=1, task_id=1, sweep_index=-5), "a-5"),
        ("a%a", OutputIds(job_id=1, task_id=1, sweep_index=0), "a0"),
        # refused at submit; left as written so that dispatch can never fail on it
        ("a%a", OutputIds(job_id=1, task_id=1), "a%a"),
        ("x%q", IDS, "x%q"),
    ],
)
def test_placeholders_expand(path: str, ids: OutputIds, expanded: str) -> None:
    assert expand_output_path(path, ids) == expanded


@pytest.mark.parametrize(
    ("path", "sweep"),
    [
        ("out.txt", False),
        ("%j.%t.out", False),
        ("100%%", False),
        ("%a.out", True),
        ("logs/%j/%a-%t.txt", True),
    ],
)
def test_accepted_paths(path: str, sweep: bool) -> None:
    check_output_path(path, sweep=sweep)


@pytest.mark.parametrize(
    ("path", "sweep", "message"),
    [
        ("out-%x.txt", True, "unknown placeholder %x"),
        ("out-%A.txt", True, "unknown placeholder %A"),  # Slurm's array master id: not ours
        ("out-%3a.txt", True, "unknown placeholder %3"),
        ("%a.out", False, "%a is the sweep index and this task is not a sweep"),
        ("out%", True, "ends with a lone %: write %% for a literal %"),
        ("  ", True, "the path is empty"),
        ("a\0b", True, "NUL"),
    ],
)
def test_refused_paths_say_what_to_fix(path: str, sweep: bool, message: str) -> None:
    with pytest.raises(ValueError) as e:
        check_output_path(path, sweep=sweep)
    assert message in str(e.value)


# --- the job spec ---------------------------------------------------------------------------


def test_spec_refuses_an_unknown_placeholder_naming_field_and_placeholder() -> None:
    with pytest.raises(InvalidRequest) as e:
        JobSpec.parse({"tasks": [{"command": "x", "stderr": "err-%u.txt"}]})
    assert "tasks.0.stderr" in str(e.value)
    assert "unknown placeholder %u" in str(e.value)
    assert e.value.status == 422


def test_spec_refuses_the_sweep_index_in_a_task_that_is_not_a_sweep() -> None:
    with pytest.raises(InvalidRequest, match=r"tasks\.0\.stdout: .*%a is the sweep index"):
        JobSpec.parse({"command": "x", "stdout": "o-%a"})
    JobSpec.parse({"command": "x", "sweep": "1-3", "stdout": "o-%a"})  # a sweep has one


def test_top_level_stdout_and_stderr_belong_to_the_single_task() -> None:
    spec = JobSpec.parse({"command": "x", "stdout": "o-%j", "stderr": "e-%j"})
    assert (spec.tasks[0].stdout, spec.tasks[0].stderr) == ("o-%j", "e-%j")
    task = spec.build(5, now=datetime(2026, 1, 1, tzinfo=UTC))[1][0]
    assert (task.stdout, task.stderr) == ("o-%j", "e-%j")  # stored unexpanded


# --- dispatch expands them ------------------------------------------------------------------


def test_dispatch_expands_the_placeholders_of_each_sweep_step(tmp_path: Path) -> None:
    cp = make_cp(tmp_path, Clock())
    node = register(cp, "n1", cores=4)
    job = cp.submit(
        {
            "tasks": [
                {"command": "true", "stdout": "out/%j-%t.txt", "stderr": "100%%"},
                {"command": "true", "sweep": "10-30:10", "stdout": "s-%a", "stderr": "s-%a"},
            ]
        }
    )
    with pytest.raises(InvalidRequest, match="not a sweep"):
        cp.submit({"command": "true", "stdout": "%a"})
    assert cp.schedule_pass() == 4
    runs = sorted(node.runs(), key=lambda r: r.task_id)
    assert [(r.task_id, r.stdout, r.stderr) for r in runs] == [
        (1, f"out/{job.id}-1.txt", "100%"),
        (2, "s-10", "s-10"),
        (3, "s-20", "s-20"),
        (4, "s-30", "s-30"),
    ]


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


# --- the CLI --------------------------------------------------------------------------------


def test_build_spec_puts_the_paths_in_the_task() -> None:
    spec = build_spec(command="x", stdout="o-%j", stderr="e-%j")
    assert spec["tasks"][0]["stdout"] == "o-%j"
    assert spec["tasks"][0]["stderr"] == "e-%j"
    assert "stdout" not in build_spec(command="x")["tasks"][0]


def test_cli_submit_sends_stdout_and_stderr(api: StandIn) -> None:
    result = hpc(
        "job", "submit", "--sweep", "1-3", "--workdir", "/w",
        "--stdout", "o-%j-%a", "--stderr", "o-%j-%a", "--", "echo hi",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [task] = api.posted("/api/jobs")[0]["tasks"]
    assert (task["stdout"], task["stderr"], task["workDir"]) == ("o-%j-%a", "o-%j-%a", "/w")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--stdout", "o-%z", "--", "x"], ["'--stdout'", "unknown placeholder %z"]),
        (["--stderr", "e-%a", "--", "x"], ["'--stderr'", "%a is the sweep index"]),
        (["--file", "job.json", "--stdout", "o"], ["--file", "put --stdout in the file"]),
    ],
)
def test_cli_refuses_bad_paths_before_sending(
    api: StandIn,
    args: list[str],
    fragments: list[str],
) -> None:
    assert_one_error_line(hpc("job", "submit", *args), *fragments)
    assert api.posted("/api/jobs") == []


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.e2e
def test_end_to_end_a_sweep_writes_its_files_and_a_missing_folder_fails_the_task(
    tmp_path: Path,
) -> None:
    """`hpc up` with a real agent process; submitted with the CLI, as a user does."""
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    with LocalCluster(tmp_path / "hpc", nodes=1, cores=2) as cluster:
        submitted = subprocess.run(
            [
                *hpc_command(), "job", "submit", "--sweep", "1-3", "--workdir", str(work),
                "--stdout", "logs/%j-%a.txt", "--stderr", "logs/%j-%a.txt",
                "--", 'echo "out $HPC_SWEEP_INDEX"; echo "err $HPC_SWEEP_INDEX" >&2',
            ],
            env=cluster.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        job_id = int(submitted.stdout)
        assert cluster.wait_job(job_id)["state"] == "Finished"
        for i in (1, 2, 3):
            assert (work / "logs" / f"{job_id}-{i}.txt").read_text() == f"out {i}\nerr {i}\n"
        shown = [t["output"] for t in sorted(cluster.tasks(job_id), key=lambda t: t["id"])]
        assert shown == ["out 1\nerr 1\n", "out 2\nerr 2\n", "out 3\nerr 3\n"]
        assert {t["stdout"] for t in cluster.tasks(job_id)} == {"logs/%j-%a.txt"}

        failing = cluster.submit(
            {"command": "echo never", "workDir": str(work), "stdout": "nowhere/%j.out"}
        )
        assert cluster.wait_job(failing)["state"] == "Failed"
        [task] = cluster.tasks(failing)
        assert f"'{work}/nowhere'" in task["error"], task["error"]

        refused = cluster.http.post("/api/jobs", json={"command": "x", "stdout": "o-%q"})
        assert refused.status_code == 422
        assert "unknown placeholder %q" in refused.json()["error"]
