"""Per-user execution (``hpc agent run --run-as-owner``): each task runs as the OS user named
as its job's owner, and opens its files with that user's rights, never root's.

Real OS users, no stand-ins: the agent runs in this (root) test process, its tasks as
``nobody`` (which every Debian has); nothing is created in /etc. Tests that need root are
skipped elsewhere, saying so. The folders ``nobody`` must reach are made under /tmp, since
pytest's own temporary folders are root's alone (0700).
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import Agent
from agent.cli import main as agent_main
from agent.endrecords import EndRecords
from agent.owners import RunAsOwner, start_error
from agent.runner import Runner
from agent.taskenv import task_env
from shared.adapters.local_output import LocalOutputStore
from shared.domain.messages import CancelTask, RegisterNode, RunTask, TaskEnded
from tests.agent_fixtures import ControlPlane, run_task
from tests.helpers import group_members, process_alive, wait_until


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


NOBODY = _nobody()
as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or NOBODY is None,
    reason="starting tasks as another user needs root and the OS user 'nobody'",
)


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    """``(root_only, nobodys)``: a folder everyone may enter but only root may write, and one
    inside it that belongs to nobody."""
    assert NOBODY is not None
    top = Path(tempfile.mkdtemp(prefix="hpc-owner-"))
    try:
        top.chmod(0o755)
        mine = top / "nobody"
        mine.mkdir()
        os.chown(mine, NOBODY.pw_uid, NOBODY.pw_gid)
        yield top, mine
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def owner_agent(start_agent: Any, cp: ControlPlane, tmp_path: Path) -> Agent:
    """A registered agent with --run-as-owner, with end records in its (root's) folder."""
    agent, _ = start_agent(run_as_owner=True, state_dir=tmp_path / "state")
    cp.wait_for(RegisterNode)
    wait_until(lambda: agent.incarnation, what="the registration answered")
    return agent


# --- the agent runs each task as its owner -----------------------------------------------------


@as_root
def test_a_task_of_nobody_runs_as_nobody_with_its_groups_and_variables(
    owner_agent: Agent, cp: ControlPlane, dirs: tuple[Path, Path]
) -> None:
    assert NOBODY is not None
    top, _ = dirs
    command = 'id -un; id -G; echo "$HOME $USER $LOGNAME"; pwd'
    cp.send(run_task(1, command, owner="nobody", work_dir=str(top)))
    ended = cp.ended(1)
    assert ended.exit_code == 0 and ended.error is None, ended
    name, groups, variables, cwd = ended.output.splitlines()
    assert name == "nobody"
    assert sorted(map(int, groups.split())) == sorted(set(os.getgrouplist("nobody", NOBODY.pw_gid)))
    assert variables == f"{NOBODY.pw_dir} nobody nobody"
    assert cwd == str(top)


@as_root
def test_without_a_work_dir_it_runs_in_the_owners_home_or_at_the_root(
    owner_agent: Agent, cp: ControlPlane
) -> None:
    assert NOBODY is not None
    cp.send(run_task(2, "pwd", owner="nobody"))
    expected = NOBODY.pw_dir if os.path.isdir(NOBODY.pw_dir) else "/"  # Debian: /nonexistent
    assert cp.ended(2).output == expected + "\n"


@as_root
def test_a_stdout_file_where_only_root_may_write_fails_the_task_saying_so(
    owner_agent: Agent, cp: ControlPlane, dirs: tuple[Path, Path]
) -> None:
    top, _ = dirs
    marker = top / "nobody" / "ran"
    cp.send(run_task(3, f"touch {marker}", owner="nobody", work_dir=str(top), stdout="o.txt"))
    ended = cp.ended(3)
    assert ended.exit_code is None
    assert ended.error == (
        f"cannot write the stdout file '{top}/o.txt' as user 'nobody': Permission denied"
    )
    assert not (top / "o.txt").exists() and not marker.exists(), "nothing may run"


@as_root
def test_a_stdout_file_where_the_owner_may_write_is_written_and_belongs_to_it(
    owner_agent: Agent, cp: ControlPlane, output: LocalOutputStore, dirs: tuple[Path, Path]
) -> None:
    assert NOBODY is not None
    top, mine = dirs
    cp.send(
        run_task(
            4,
            "echo out; echo err >&2",
            owner="nobody",
            work_dir=str(top),
            stdout="nobody/o-4.txt",
            stderr=str(mine / "o-4.txt"),  # the same file: both streams, in order
        )
    )
    ended = cp.ended(4)
    assert ended.exit_code == 0, ended
    written = mine / "o-4.txt"
    assert written.read_text() == "out\nerr\n"
    assert (written.stat().st_uid, written.stat().st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert output.read(4, 1, "stdout") == b"out\nerr\n"  # the API's copy


@as_root
@pytest.mark.parametrize(
    ("owner", "said"),
    [
        (
            "no-such-user-7",
            "the job's owner 'no-such-user-7' has no OS account on node node-1, which runs each "
            "task as its owner (--run-as-owner): create the user 'no-such-user-7' there, or "
            "submit the job as an API user who has an account on the node",
        ),
        (
            "root",
            "the job's owner 'root' is uid 0 (root) on node node-1: an agent with "
            "--run-as-owner never runs a task as root; submit the job as an API user whose "
            "account on the node is not root",
        ),
        (
            None,
            "node node-1 runs each task as its job's owner (--run-as-owner), but this task's "
            "assignment does not say its owner (the control plane predates per-user "
            "execution): upgrade the control plane, or run the agent without --run-as-owner",
        ),
    ],
)
def test_a_task_that_may_not_run_as_its_owner_fails_and_the_agent_goes_on(
    owner_agent: Agent,
    cp: ControlPlane,
    output: LocalOutputStore,
    dirs: tuple[Path, Path],
    owner: str | None,
    said: str,
) -> None:
    top, mine = dirs
    marker = mine / "ran"
    cp.send(run_task(5, f"touch {marker}", owner=owner, work_dir=str(top)))
    ended = cp.ended(5)
    assert (ended.exit_code, ended.canceled, ended.error) == (None, False, said)
    assert not marker.exists(), "the command must not run, as anyone"
    assert said.encode() in output.read(5, 1, "stderr")  # hpc task output shows why
    cp.send(run_task(6, "id -un", owner="nobody", work_dir=str(top)))
    assert cp.ended(6).output == "nobody\n"


@as_root
def test_cancel_and_the_runtime_limit_kill_the_owners_whole_tree(
    owner_agent: Agent, cp: ControlPlane, dirs: tuple[Path, Path]
) -> None:
    top, _ = dirs
    cp.send(run_task(7, "sh -c 'sleep 30 & sleep 30'", owner="nobody", work_dir=str(top)))
    leader = cp.started(7).pid
    assert leader is not None
    tree = wait_until(lambda: len(group_members(leader)) >= 3 and group_members(leader))
    assert {os.stat(f"/proc/{p}").st_uid for p in tree} == {NOBODY.pw_uid if NOBODY else -1}
    cp.send(CancelTask(incarnation=1, job_id=7, task_id=1, attempt=1))
    assert cp.wait_for(TaskEnded, lambda e: e.job_id == 7, timeout=20.0).canceled
    wait_until(lambda: not any(process_alive(p) for p in tree), timeout=20.0, what="tree gone")

    cp.send(run_task(8, "sleep 30", owner="nobody", work_dir=str(top), runtime_limit_s=1))
    ended = cp.ended(8, timeout=20.0)
    assert ended.error == "runtime limit 0:00:01 exceeded"
    assert owner_agent.running == []


@as_root
def test_without_the_option_the_owner_changes_nothing(agent: Agent, cp: ControlPlane) -> None:
    """The agent's own user runs every task, as before per-user execution."""
    cp.send(run_task(9, "id -un", owner="nobody"))
    assert cp.ended(9).output == "root\n"


# --- the runner: files and end records through the owner's descriptors -------------------------


def _runner(task: RunTask, output: LocalOutputStore, **kw: Any) -> Runner:
    env = task_env(task, node="n1", group="G")
    return Runner(task, output=output, env=env, run_as=RunAsOwner("n1"), **kw)


def _run(runner: Runner) -> int:
    assert runner.start() is None
    deadline = time.monotonic() + 30
    while (code := runner.poll()) is None:
        assert time.monotonic() < deadline, "the task did not end"
        time.sleep(0.005)
    runner.finish()
    return code


@as_root
def test_the_end_record_is_written_by_the_owner_in_the_agents_own_folder(
    tmp_path: Path, output: LocalOutputStore, dirs: tuple[Path, Path]
) -> None:
    records = EndRecords(tmp_path / "ends")  # under pytest's folder: root's alone
    task = RunTask(incarnation=1, job_id=3, task_id=1, attempt=0, command="exit 7", owner="nobody")
    task = task.model_copy(update={"work_dir": str(dirs[0])})
    runner = _runner(task, output, end_record=(records, records.path(3, 1, 0)))
    assert _run(runner) == 7
    assert records.read("3.1.0") == 7


@as_root
def test_the_api_copy_is_read_through_the_owners_descriptor_not_the_path(
    output: LocalOutputStore, dirs: tuple[Path, Path]
) -> None:
    """A user who swaps their file for a link to one only root may read must not find it in
    ``hpc task output``: the agent reads the file it opened as the user, never the path."""
    top, mine = dirs
    secret = top / "secret"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    command = "echo before; rm o.txt; ln -s ../secret o.txt; echo after"
    task = RunTask(
        incarnation=1,
        job_id=4,
        task_id=1,
        attempt=0,
        command=command,
        owner="nobody",
        work_dir=str(mine),
        stdout="o.txt",
    )
    assert _run(_runner(task, output)) == 0
    assert (mine / "o.txt").is_symlink()
    assert output.read(4, 1, "stdout", attempt=0) == b"before\nafter\n"


@as_root
def test_no_descriptor_is_left_open_in_the_agent(
    output: LocalOutputStore, dirs: tuple[Path, Path]
) -> None:
    top, mine = dirs
    before = set(os.listdir("/proc/self/fd"))
    for attempt, stdout in enumerate(["o.txt", "../cannot.txt", "o.txt"]):
        task = RunTask(
            incarnation=1,
            job_id=5,
            task_id=1,
            attempt=attempt,
            command="echo x",
            owner="nobody",
            work_dir=str(mine),
            stdout=stdout,
            stderr=stdout,
        )
        runner = _runner(task, output)
        if stdout.startswith(".."):
            assert runner.start() is not None  # top: only root may write
        else:
            assert _run(runner) == 0
    assert set(os.listdir("/proc/self/fd")) == before


# --- starting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "setting"])
def test_an_agent_told_to_run_as_owners_refuses_to_start_unless_root(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    how: str,
) -> None:
    """One line, exit 2, no traceback, before it opens the bus (non-root simulated in the
    check alone: ``os.geteuid`` says 65534 while run_agent runs)."""
    monkeypatch.setenv("HPC_HOME", str(tmp_path / "home"))
    if how == "setting":
        monkeypatch.setenv("HPC_AGENT_RUN_AS_OWNER", "true")
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    option = ["--run-as-owner"] if how == "option" else []
    code = agent_main(["--name", "n1", *option])  # python -m agent
    err = capsys.readouterr().err
    nobody = NOBODY is not None and NOBODY.pw_uid == 65534
    who = "'nobody' (uid 65534)" if nobody else "uid 65534"
    assert code == 2
    assert err == (
        "agent: error: --run-as-owner needs the agent to run as root (it starts each task as "
        f"its job's owner), but it runs as {who}: start it as root, or without --run-as-owner\n"
    )
    assert not (tmp_path / "home").exists(), "refused before anything was opened"


def test_as_root_the_start_check_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert start_error() is None


@as_root
@pytest.mark.parametrize("code", [0, 1])
def test_an_owners_task_that_traps_sigterm_ends_canceled_or_past_its_limit_all_the_same(
    owner_agent: Agent, cp: ControlPlane, dirs: tuple[Path, Path], code: int
) -> None:
    """Its shell, the owner's, writes its end record through the descriptor when its trap
    exits after the kill: the end is still the kill's (as without --run-as-owner)."""
    top, _ = dirs
    command = f'trap "echo got term; exit {code}" TERM; sleep 30 & wait'
    cp.send(run_task(21, command, owner="nobody", work_dir=str(top)))
    leader = cp.started(21).pid
    assert leader is not None
    wait_until(
        lambda: any(
            Path(f"/proc/{p}/comm").read_text().strip() == "sleep" for p in group_members(leader)
        ),
        what="the task's sleep (its trap is set)",
    )
    cp.send(CancelTask(incarnation=1, job_id=21, task_id=1, attempt=1))
    ended = cp.wait_for(TaskEnded, lambda e: e.job_id == 21, timeout=20.0)
    assert (ended.canceled, ended.exit_code, ended.error) == (True, code, None)
    assert "got term" in ended.output

    cp.send(run_task(22, command, owner="nobody", work_dir=str(top), runtime_limit_s=1))
    ended = cp.ended(22, timeout=20.0)
    assert ended.error == "runtime limit 0:00:01 exceeded" and not ended.canceled
    assert "got term" in ended.output


@as_root
def test_dev_null_as_the_owners_stdout_takes_nothing_and_the_api_still_gets_the_stream(
    owner_agent: Agent, cp: ControlPlane, output: LocalOutputStore, dirs: tuple[Path, Path]
) -> None:
    top, mine = dirs
    cp.send(
        run_task(
            23,
            "echo out; echo err >&2",
            owner="nobody",
            work_dir=str(top),
            stdout="/dev/null",
            stderr="nobody/e-23.txt",
        )
    )
    ended = cp.ended(23)
    assert (ended.exit_code, ended.error) == (0, None)
    assert ended.output == "out\n"
    assert output.read(23, 1, "stdout") == b"out\n"
    assert (mine / "e-23.txt").read_text() == "err\n"
    assert output.read(23, 1, "stderr") == b"err\n"
    assert Path(os.devnull).is_char_device()


@as_root
def test_another_device_as_the_owners_stdout_is_still_refused(
    owner_agent: Agent, cp: ControlPlane, dirs: tuple[Path, Path]
) -> None:
    top, _ = dirs
    cp.send(run_task(24, "echo out", owner="nobody", work_dir=str(top), stdout="/dev/zero"))
    ended = cp.ended(24)
    assert ended.exit_code is None
    assert ended.error == (
        "cannot write the stdout file '/dev/zero' as user 'nobody': "
        "not a regular file (a FIFO, device or socket)"
    )
