"""Following to the end, on `hpc up`'s control plane with real agents: a task's output
(``hpc task output --follow``) and a job (``hpc job submit --wait``).

A task writes a line, then waits for a gate file the test creates: the line must reach the
follower while the task still runs (the embedded default stores output as it is written),
the rest once it is written, and the follower must end with the task, exit code 0 only if
it Finished. No sleep decides an outcome: the task waits on the gate, the test on lines.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from hpc.localcluster import LocalCluster, hpc_command
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

GATED = 'echo "line 1"; while [ ! -e "$GATE" ]; do sleep 0.1; done; echo "line 2"; exit $CODE'


def started(
    factory: pytest.TempPathFactory, name: str, nodes: int, cores: int
) -> Iterator[LocalCluster]:
    c = LocalCluster(factory.mktemp(name) / "hpc", nodes=nodes, cores=cores)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from started(tmp_path_factory, "follow-e2e", nodes=1, cores=2)


class Follower:
    """``hpc task output ... --follow`` in a process, its stdout read line by line."""

    def __init__(self, cluster: LocalCluster, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*hpc_command(), "task", "output", *args, "--follow"],
            env=cluster.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.notes: queue.Queue[bytes] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.readers = [
            threading.Thread(target=self._read, args=(pipe, into), daemon=True)
            for pipe, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.notes))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(pipe: IO[bytes], into: queue.Queue[bytes]) -> None:
        for line in pipe:
            into.put(line)

    def line(self, timeout: float = 60) -> bytes:
        return self.lines.get(timeout=timeout)

    def note(self, timeout: float = 60) -> str:
        return self.notes.get(timeout=timeout).decode()

    def end(self) -> tuple[int, str]:
        code = self.proc.wait(timeout=60)
        for reader in self.readers:
            reader.join(timeout=10)  # the pipes close with the process
        said = []
        while not self.notes.empty():
            said.append(self.notes.get().decode())
        return code, "".join(said)


def besides_waiting(errors: str) -> list[str]:
    """stderr less the note of a follow begun while its task was still Queued."""
    return [line for line in errors.splitlines() if not line.endswith("once it starts")]


def state(cluster: LocalCluster, job_id: int) -> str:
    return str(cluster.tasks(job_id)[0]["state"])


@pytest.mark.parametrize(("code", "ends"), [(0, "Finished"), (3, "Failed")])
def test_follow_prints_the_output_as_it_is_written_and_ends_with_the_task(
    cluster: LocalCluster, tmp_path: Path, code: int, ends: str
) -> None:
    gate = tmp_path / "gate"
    job_id = cluster.submit({"command": GATED, "env": {"GATE": str(gate), "CODE": str(code)}})
    follower = Follower(cluster, f"{job_id}.1")  # from submit on: queued, then running
    assert follower.line() == b"line 1\n"
    assert state(cluster, job_id) == "Running"  # the line came while the task ran
    gate.touch()
    assert follower.line() == b"line 2\n"
    exit_code, errors = follower.end()
    assert state(cluster, job_id) == ends
    assert follower.lines.empty()
    if code == 0:
        assert (exit_code, besides_waiting(errors)) == (0, [])
    else:
        assert exit_code == 1
        assert errors.strip().splitlines()[-1] == f"task {job_id}.1 Failed (exit code 3)"


def test_follow_after_a_tail_prints_only_what_comes_after_it(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    command = 'echo a; echo b; echo c; while [ ! -e "$GATE" ]; do sleep 0.1; done; echo d'
    job_id = cluster.submit({"command": command, "env": {"GATE": str(gate)}})

    def written() -> bool:  # on output, not time: the first three lines are stored
        shown = subprocess.run(
            [*hpc_command(), "task", "output", f"{job_id}.1"], env=cluster.env, capture_output=True
        )
        return shown.stdout == b"a\nb\nc\n"

    wait_until(written, timeout=60, what="the first three lines")
    follower = Follower(cluster, f"{job_id}.1", "--tail", "1")
    assert follower.line() == b"c\n"
    gate.touch()
    assert follower.line() == b"d\n"
    assert follower.end() == (0, "")
    assert follower.lines.empty()


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from started(tmp_path_factory, "follow-two", nodes=2, cores=1)


def test_follow_goes_on_into_the_next_attempt_of_a_task_given_up_with_its_node(
    two_nodes: LocalCluster, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    command = 'echo "on $HPC_NODE_NAME"; while [ ! -e "$GATE" ]; do sleep 0.1; done; echo done'
    job_id = two_nodes.submit({"command": command, "env": {"GATE": str(gate)}})
    follower = Follower(two_nodes, f"{job_id}.1")
    first = follower.line().decode().split()[-1]
    taken = subprocess.run(
        [*hpc_command(), "node", "offline", first], env=two_nodes.env, capture_output=True
    )
    assert taken.returncode == 0, taken.stderr
    second = follower.line().decode().split()[-1]  # attempt 1, on the other node
    assert second != first
    gate.touch()
    assert follower.line() == b"done\n"
    code, errors = follower.end()
    assert code == 0
    assert f"task {job_id}.1: attempt 0 ended; following attempt 1" in errors


def test_follow_of_a_task_not_run_yet_waits_for_it(cluster: LocalCluster) -> None:
    """Its output does not exist yet (404): --follow waits for it (before, an error)."""
    submitted = subprocess.run(
        [*hpc_command(), "job", "submit", "--hold", "--", "echo hello"],
        env=cluster.env,
        capture_output=True,
    )
    job_id = int(submitted.stdout)
    follower = Follower(cluster, f"{job_id}.1")
    said = follower.note()  # before, it sat silent: a user could not tell why
    assert said.startswith(f"task {job_id}.1 is Queued: ") and "held" in said, said
    assert said.endswith("; its output follows once it starts\n"), said
    released = subprocess.run(
        [*hpc_command(), "job", "release", str(job_id)], env=cluster.env, capture_output=True
    )
    assert released.returncode == 0, released.stderr
    assert follower.line() == b"hello\n"
    assert follower.end() == (0, "")


@pytest.mark.parametrize(
    ("command", "code", "ends"), [("true", 0, "Finished"), ("exit 3", 1, "Failed")]
)
def test_submit_wait_ends_with_the_job_and_says_how(
    cluster: LocalCluster, command: str, code: int, ends: str
) -> None:
    """``hpc job submit --wait`` (Slurm's ``sbatch --wait``): the id at once, then the job's
    end; exit code 0 only if it Finished. With --json, the ended job's JSON."""
    run = subprocess.run(
        [*hpc_command(), "job", "submit", "--wait", "--", command],
        env=cluster.env,
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == code, run.stderr
    first, last = run.stdout.decode().splitlines()
    assert last == f"job {first} {ends}: 1/1 tasks ended" + (
        " (1 of 1 tasks failed)" if code else ""
    )
    assert state(cluster, int(first)) == ends
    as_json = subprocess.run(
        [*hpc_command(), "job", "submit", "--wait", "--json", "--", command],
        env=cluster.env,
        capture_output=True,
        timeout=120,
    )
    assert as_json.returncode == code and json.loads(as_json.stdout)["state"] == ends
