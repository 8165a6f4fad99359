"""Entering a task's working directory and opening its stdout / stderr files as its owner
(``--run-as-owner``), so that a user cannot make a root agent write where only root, or
another user, may.

How: a short-lived child process runs agent/filechecks.py's source (``python -I -S -X
utf8 -c SOURCE``). It starts as root only to drop, before it reads anything of the task,
to the owner's uid, gid and groups for good (setgroups, setresgid, setresuid); then it
enters the working directory, applies the checks agent/outputfiles.py applies when the
agent opens the files itself (a regular file, so a FIFO fails at once instead of blocking;
the same file for both streams through one descriptor; emptied for the attempt; the null
device, ``--stdout /dev/null``, said as such and not passed back) and sends the open
descriptors back over a Unix socket (SCM_RIGHTS, ``socket.send_fds``), with a read
descriptor of each file.

Why descriptors, not a child that copies the stream into the file: the task writes
straight into its file, as it does without --run-as-owner (no pipe through another
process that could fill up, die, or reorder two streams that share a file), and nothing
stays running beside the task. The read descriptors are how the agent copies the file's
head into the Output store: root never opens the user's path (a file swapped for a symlink
after the start would otherwise be copied where its owner can read it).

Why a child at all: ``seteuid`` in the agent would change the identity of the whole
multi-threaded process (the bus client's threads too). Why the child drops privileges
itself rather than being started with ``subprocess``'s ``user=``: the interpreter may lie
where the owner cannot read it (a pyenv under /root), and ``-I -S`` keeps root's
site-packages and environment out of it. It costs one interpreter start per task
(about 25 ms here).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from agent import filechecks
from shared.ports.output import Stream

HELPER_TIMEOUT_S = 10.0
"""The child gets this long (a hung network file system); then the task fails, saying so.
Shorter than the default heartbeat timeout (15 s): the agent's loop waits for it."""
_CLOEXEC = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


@dataclass
class Opened:
    """What the child answered: an error (the task cannot start), or the directory and the
    descriptors, now the caller's to close."""

    error: str | None = None
    cwd: str = ""
    paths: dict[Stream, Path] = field(default_factory=dict)
    writers: dict[Stream, int] = field(default_factory=dict)
    """Stream -> its file's descriptor (one for both streams when they share a file)."""
    readers: dict[Stream, int] = field(default_factory=dict)
    """Output store stream -> a read descriptor of its file (missing: the owner may not read)."""


@cache
def _source() -> str:
    return Path(filechecks.__file__).read_text()


def open_as(
    user: str,
    ids: tuple[int, int, tuple[int, ...]],
    *,
    cwd: str,
    fallback: str | None,
    names: Mapping[Stream, str],
    timeout_s: float = HELPER_TIMEOUT_S,
) -> Opened:
    """As ``user`` (``ids``: uid, gid, groups), enter ``cwd`` (or ``fallback`` if ``cwd`` does
    not exist) and open the files ``names`` (relative: to that directory)."""
    uid, gid, groups = ids
    if uid == 0:
        raise ValueError("never as uid 0")
    parent, child = socket.socketpair()
    with parent, child:
        parent.settimeout(timeout_s)
        argv = [str(child.fileno()), str(uid), str(gid), ",".join(map(str, groups))]
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own program, fixed arguments
                [sys.executable, "-I", "-S", "-X", "utf8", "-c", _source(), *argv],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env={},
                cwd="/",
            )
        except OSError as exc:
            return Opened(error=f"could not start the process that opens files as {user!r}: {exc}")
        child.close()
        request = {"user": user, "cwd": cwd, "fallback": fallback, "files": list(names.items())}
        data = b""
        fds: list[int] = []
        try:
            parent.sendall(json.dumps(request).encode())
            parent.shutdown(socket.SHUT_WR)
            data, fds = _receive(parent)
        except OSError as exc:  # a timeout too
            proc.kill()
            _close(fds)
            return Opened(error=f"could not open the task's files as {user!r}: {exc}")
        finally:
            problem = _finish(proc, timeout_s)
    return _parse(user, data, fds, problem)


def _receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    data = bytearray()
    fds: list[int] = []
    while True:
        msg, got, flags, _ = socket.recv_fds(sock, 1 << 16, 8, _CLOEXEC)
        fds.extend(got)
        if flags & socket.MSG_CTRUNC:
            _close(fds)
            raise OSError("descriptors lost on the way")
        if not msg:
            return bytes(data), fds
        data += msg


def _finish(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """Wait for the child; the last line of what it said on stderr (empty if nothing)."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    lines = err.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else (f"exit code {proc.returncode}" if proc.returncode else "")


def _parse(user: str, data: bytes, fds: list[int], problem: str) -> Opened:
    """The reply (``\\0`` carrying the descriptors, then JSON) as an :class:`Opened`."""
    try:
        reply = json.loads(data[1:]) if data[:1] == b"\0" else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        _close(fds)
        return Opened(
            error=f"could not open the task's files as {user!r}: {problem or 'no answer'}"
        )
    if reply.get("error") is not None:
        _close(fds)
        return Opened(error=str(reply["error"]))
    opened = Opened(cwd=str(reply["cwd"]))
    left = list(fds)
    try:
        for entry in reply["files"]:
            stream: Stream = entry["stream"]
            if entry.get("null"):
                continue  # the null device: the stream goes to the Output store alone
            opened.paths[stream] = Path(entry["path"])
            if entry.get("same") is not None:
                opened.writers[stream] = opened.writers[entry["same"]]
                continue
            opened.writers[stream] = left.pop(0)
            if entry.get("reader"):
                opened.readers[stream] = left.pop(0)
    except (KeyError, IndexError, TypeError):
        _close(fds)
        return Opened(error=f"could not open the task's files as {user!r}: a garbled answer")
    _close(left)  # (none are left over from a well-formed answer)
    return opened


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
