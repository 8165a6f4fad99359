"""The second mark of a task's processes (agent/taskgroups.py): a descriptor on the attempt's
mark file, ``<state>/groups/marks/<key>``, which every process of the task inherits from its
shell, whatever it does to its environment.

Why: a kill that lists processes, then signals them one by one, can kill a task's shell and
miss its command, which runs on in a group whose leader is gone; the next agent ends such a
kept group only if one of its processes is the attempt's. Told by the environment alone
(``HPC_JOB_ID``, ...), a command that cleared it (``exec env -i ...``) was not recognised: it
ran on while its attempt ran again, twice. Real processes, started by the agent's own spawn
code (agent/runner.py, and agent/owners.py as another user).
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.endrecords import EndRecords
from agent.groups import command_running, members, signal_group
from agent.owners import RunAsOwner
from agent.runner import Runner
from agent.taskenv import task_env
from agent.taskgroups import TaskGroups
from shared.adapters.local_output import LocalOutputStore
from shared.domain.messages import RegisterNode, RunTask, TaskStarted
from tests.agent_fixtures import run_task
from tests.helpers import wait_until

CLEARS_ITS_ENV = "exec env -i sh -c 'sleep 60; echo ran'"
"""A command whose processes name no attempt in their environment (nor have any)."""


def _marks(state: Path) -> Path:
    """Where the agent keeps the attempts' marks (written out: the layout is the point)."""
    return state / "groups" / "marks"


def _environ(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None


def _argv0(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return b""


def _holding(path: Path) -> set[int]:
    """The processes with a descriptor open on ``path``."""
    target, out = os.path.realpath(path), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if target in links:
            out.add(int(entry.name))
    return out


@contextmanager
def _task(
    state: Path, output: LocalOutputStore, key: str, command: str, **kw: Any
) -> Iterator[Runner]:
    """Attempt ``key`` started as the agent starts one (its environment, its end record in
    ``state``), killed with its whole group at the end whatever happened."""
    job, task_id, attempt = (int(part) for part in key.split("."))
    task = RunTask(
        incarnation=1, job_id=job, task_id=task_id, attempt=attempt, command=command, **kw
    )
    records = EndRecords(state / "ends")
    runner = Runner(
        task,
        output=output,
        env=task_env(task, node="n1", group="G"),
        end_record=(records, records.path(job, task_id, attempt)),
        run_as=RunAsOwner("n1") if task.owner else None,
    )
    assert runner.start() is None
    assert runner.pid is not None
    try:
        yield runner
    finally:
        signal_group(runner.pid, signal.SIGKILL)
        assert runner.process is not None
        runner.process.wait(5)


def _escaped(runner: Runner) -> list[int]:
    """Its command cleared its environment and runs; then its shell is killed alone (as a
    kill that lists, then signals, can): the command's processes, left in a leaderless group."""
    pgid = runner.pid
    assert pgid is not None and runner.process is not None
    wait_until(
        lambda: any(_argv0(p) == b"sleep" for p in members(pgid)), what="the command running"
    )
    command = [p for p in members(pgid) if p != pgid]
    environs = [_environ(p) for p in command]
    assert command and all(env is not None and b"HPC_" not in env for env in environs)
    os.kill(pgid, signal.SIGKILL)
    assert runner.process.wait(5) == -signal.SIGKILL
    assert members(pgid)  # it runs on
    return command


def test_a_command_that_cleared_its_environment_is_ended_by_its_mark(tmp_path, output):
    """``exec env -i ...`` left nothing in its environment to tell its attempt by: the next
    agent left it running, and the attempt ran again beside it. Every process of the task
    holds the attempt's mark, so it is ended; the agent itself holds no descriptor on it."""
    state = tmp_path / "state"
    before = set(os.listdir("/proc/self/fd"))
    with _task(state, output, "8.6.0", CLEARS_ITS_ENV) as runner:
        assert set(os.listdir("/proc/self/fd")) == before  # closed after the spawn
        mark = _marks(state) / "8.6.0"
        pgid = runner.pid
        assert pgid is not None
        TaskGroups(state).add(pgid, runner.key)
        _escaped(runner)
        assert TaskGroups(state).end_leaderless() == ["8.6.0"]
        wait_until(lambda: not members(pgid), what="the escaped command ended")
        assert TaskGroups(state).kept() == {} and not mark.exists()  # forgotten, mark and all


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or _nobody() is None,
    reason="starting tasks as another user needs root and the OS user 'nobody'",
)
def test_a_task_run_as_its_owner_holds_its_mark_too(tmp_path, output):
    """--run-as-owner: the agent (root) opens the mark, which the owner could not, and the
    task's shell inherits it across its drop to the owner's user."""
    state = tmp_path / "state"
    before = set(os.listdir("/proc/self/fd"))
    with _task(state, output, "8.8.0", CLEARS_ITS_ENV, owner="nobody") as runner:
        assert set(os.listdir("/proc/self/fd")) == before  # the mark's and the record's closed
        pgid = runner.pid
        assert pgid is not None
        TaskGroups(state).add(pgid, runner.key)
        command = _escaped(runner)
        nobody = _nobody()
        assert nobody is not None
        assert {os.stat(f"/proc/{p}").st_uid for p in command} == {nobody.pw_uid}
        assert TaskGroups(state).end_leaderless() == ["8.8.0"]
        wait_until(lambda: not members(pgid), what="the escaped command ended")


def test_a_leaderless_group_with_neither_the_environment_nor_the_mark_is_left_alone(
    tmp_path, output
):
    """A group id given again to something else: its processes name no attempt and do not
    hold the mark, even though the mark exists and the attempt's own processes, elsewhere,
    hold it. Nothing is ended."""
    state = tmp_path / "state"
    groups = TaskGroups(state)
    other = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 60 & wait"],
        start_new_session=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        with _task(state, output, "8.7.0", "sleep 60") as runner:
            assert runner.pid is not None
            wait_until(lambda: command_running(runner.pid or 0) is True, what="the task running")
            wait_until(lambda: len(members(other.pid)) == 2, what="its child running")
            assert _holding(_marks(state) / "8.7.0") >= {runner.pid}
            other.kill()
            assert other.wait(5) == -signal.SIGKILL and members(other.pid)  # leaderless
            groups.add(other.pid, "8.7.0")  # as if the attempt's group id had been given again
            assert groups.end_leaderless(ended_already={runner.pid}) == []
            assert members(other.pid) and runner.process and runner.process.poll() is None
    finally:
        signal_group(other.pid, signal.SIGKILL)


def test_a_task_that_cannot_start_leaves_no_mark(tmp_path, output):
    task = RunTask(incarnation=1, job_id=8, task_id=9, attempt=0, command="true")
    records = EndRecords(tmp_path / "ends")
    env = {**task_env(task, node="n1", group="G"), "BAD": "a\0b"}  # Popen refuses it
    runner = Runner(task, output=output, env=env, end_record=(records, records.path(8, 9, 0)))
    assert runner.start() is not None
    assert list(_marks(tmp_path).iterdir()) == []


def test_the_next_agent_forgets_marks_whose_group_was_never_kept(tmp_path):
    """An agent killed between a task's start and its keeping of the group left a mark alone."""
    _marks(tmp_path).mkdir(parents=True)
    (_marks(tmp_path) / "8.10.0").touch()
    assert TaskGroups(tmp_path).end_leaderless() == []
    assert list(_marks(tmp_path).iterdir()) == []


def test_a_task_whose_group_was_never_kept_is_ended_by_its_mark(tmp_path, output):
    """An agent killed between a task's start and its keeping of the group (no
    ``groups/<pgid>``), then a kill that took the task's shell and missed its command: the
    command still holds the attempt's mark, so the next agent finds and ends it (it was left
    running before, its mark forgotten, while the attempt ran again)."""
    state = tmp_path / "state"
    with _task(state, output, "8.11.0", CLEARS_ITS_ENV) as runner:
        pgid = runner.pid
        assert pgid is not None
        _escaped(runner)  # never kept: TaskGroups.add was not called
        assert TaskGroups(state).kept() == {}
        assert TaskGroups(state).end_leaderless() == ["8.11.0"]
        wait_until(lambda: not members(pgid), what="the escaped command ended")
        assert list(_marks(state).iterdir()) == []


def test_an_agent_removes_the_mark_when_the_task_ends(start_agent, cp, tmp_path):
    state = tmp_path / "state"
    agent, _ = start_agent(state_dir=state)
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="registered")
    cp.send(run_task(44, "exec env -i sh -c 'sleep 2'"))
    pid = cp.wait_for(TaskStarted).pid
    assert pid is not None
    mark = _marks(state) / "44.1.1"
    wait_until(lambda: any(_argv0(p) == b"sleep" for p in members(pid)), what="the command")
    assert set(members(pid)) <= _holding(mark) and os.getpid() not in _holding(mark)
    fds = [
        fd
        for fd in os.listdir(f"/proc/{pid}/fd")
        if Path(f"/proc/{pid}/fd/{fd}").resolve() == mark.resolve()
    ]
    assert [int(fd) >= 1000 for fd in fds] == [True]  # MARK_FD: above what scripts redirect
    assert cp.ended(44).exit_code == 0
    wait_until(lambda: not mark.exists(), what="the mark removed")
    assert TaskGroups(state).kept() == {}


def test_a_kept_file_that_names_no_attempt_names_no_mark(tmp_path):
    """Only an attempt's key names a mark: a kept file holding a path instead (``../``s up
    to /dev/null, which nearly every process holds) makes no process the attempt's."""
    other = subprocess.Popen(["sleep", "60"], start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        TaskGroups(tmp_path).add(other.pid, "../" * 40 + "dev/null")
        assert TaskGroups(tmp_path).end_leaderless() == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait(5)
