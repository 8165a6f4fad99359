"""Who a task runs as with ``--run-as-owner``: the OS account named as its job's owner.

HPC Pack runs each task under its owner's account, and an on-prem HPC admin expects the
same: an agent started as root with --run-as-owner runs each task as the OS user whose name
is its job's owner (the API user who submitted it, told in the assignment since agent
protocol 4), with that account's groups (``os.getgrouplist``) and HOME, USER and LOGNAME.
Its working directory and its stdout / stderr files are entered and opened as the owner
too (agent/ownerfiles.py), never with root's rights.

Never as uid 0: a task whose owner is root on the node (an API user named ``root``), has
no account on the node, or whose assignment does not say its owner (an older control
plane) fails at its start with a reason naming the user, the node and what to do; the
agent goes on with other tasks. Failing is what the exactly-once rules make safe here: the
task ends Failed (it never ran), where a refused assignment would be requeued, come back
to the same node and be refused again.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent.endrecords import owner_argv
from agent.outputfiles import TaskFiles
from agent.ownerfiles import open_as
from shared.domain.messages import RunTask

FALLBACK_CWD = "/"
"""Where a task without a workDir runs when its owner has no home directory."""


class OwnerError(Exception):
    """The task cannot run as its owner here; the message says why and what to do."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    """Every group of the account (its primary one too), as login would set them."""
    home: str


def account_of(owner: str | None, *, node: str) -> Account:
    """The OS account a task of ``owner`` runs as on ``node``; OwnerError if none may."""
    if owner is None:
        raise OwnerError(
            f"node {node} runs each task as its job's owner (--run-as-owner), but this task's "
            "assignment does not say its owner (the control plane predates per-user "
            "execution): upgrade the control plane, or run the agent without --run-as-owner"
        )
    try:
        entry = pwd.getpwnam(owner)
    except (KeyError, ValueError, UnicodeError):
        raise OwnerError(
            f"the job's owner {owner!r} has no OS account on node {node}, which runs each "
            f"task as its owner (--run-as-owner): create the user {owner!r} there, or submit "
            "the job as an API user who has an account on the node"
        ) from None
    if entry.pw_uid == 0:
        raise OwnerError(
            f"the job's owner {owner!r} is uid 0 (root) on node {node}: an agent with "
            "--run-as-owner never runs a task as root; submit the job as an API user whose "
            "account on the node is not root"
        )
    try:
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError as exc:
        raise OwnerError(
            f"cannot read the groups of {owner!r} on node {node}: {exc.strerror or exc}"
        ) from None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir or "/")


def owner_env(
    env: Mapping[str, str], account: Account, task_env: Mapping[str, str]
) -> dict[str, str]:
    """``env`` with HOME, USER and LOGNAME of the account, unless the task's own env sets
    them (the owner's choice, as any variable of theirs)."""
    out = dict(env)
    for name, value in (("HOME", account.home), ("USER", account.name), ("LOGNAME", account.name)):
        if name not in task_env:
            out[name] = value
    return out


def start_error() -> str | None:
    """Why an agent with --run-as-owner may not start in this process, or None: it must be
    root to start tasks as other users (and is never anything else by accident)."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:
        return "--run-as-owner needs a POSIX system (it starts each task as its owner's user)"
    euid: int = geteuid()
    if euid == 0:
        return None
    try:
        who = f"{pwd.getpwuid(euid).pw_name!r} (uid {euid})"
    except KeyError:
        who = f"uid {euid}"
    return (
        f"--run-as-owner needs the agent to run as root (it starts each task as its job's "
        f"owner), but it runs as {who}: start it as root, or without --run-as-owner"
    )


@dataclass(frozen=True)
class OwnerStart:
    """One task's start as its owner, once its working directory and files checked out."""

    account: Account
    cwd: str

    def popen(
        self,
        task: RunTask,
        env: Mapping[str, str],
        *,
        record: Path | None,
        stack: ExitStack,
        stdout: BinaryIO,
        stderr: BinaryIO,
        marks: tuple[int, ...] = (),
    ) -> subprocess.Popen[bytes]:
        """Start the task's shell as the owner, in its own session. Its end record (agent/
        endrecords.py) is opened here and handed down as a descriptor: the shell, no longer
        root, could not open it in the agent's folder; so are ``marks``, the attempt's
        mark (agent/taskgroups.py), opened by the agent. The shell enters the working
        directory itself, as the owner (Popen's ``cwd`` would do it as root)."""
        account = self.account
        fds: tuple[int, ...] = ()
        target = ""
        if record is not None:
            record.unlink(missing_ok=True)
            fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            stack.callback(os.close, fd)
            os.fchown(fd, account.uid, account.gid)  # written through /dev/fd by the owner
            fds, target = (fd,), f"/dev/fd/{fd}"
        return subprocess.Popen(  # noqa: S603 - running the user's shell command is the point
            owner_argv(task.command, self.cwd, target),
            cwd="/",
            env=owner_env(env, account, task.env),
            user=account.uid,
            group=account.gid,
            extra_groups=list(account.groups),
            pass_fds=(*fds, *marks),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )


class RunAsOwner:
    """An agent's --run-as-owner mode: each task's account, directory and files."""

    def __init__(self, node: str) -> None:
        self.node = node

    def prepare(self, task: RunTask, files: TaskFiles) -> OwnerStart:
        """Find the owner's account, then, as the owner, enter the working directory (its
        workDir, relative to the owner's home; none: the home, or / if there is none) and
        open the task's files (adopted by ``files``). OwnerError says why it cannot start."""
        account = account_of(task.owner, node=self.node)
        if task.work_dir is None:
            cwd, fallback = account.home, FALLBACK_CWD
        else:
            cwd, fallback = os.path.join(account.home, task.work_dir), None
        opened = open_as(
            account.name,
            (account.uid, account.gid, account.groups),
            cwd=cwd,
            fallback=fallback,
            names=files.names,
        )
        if opened.error is not None:
            raise OwnerError(opened.error)
        files.adopt(opened.paths, opened.writers, opened.readers)
        return OwnerStart(account, opened.cwd)
