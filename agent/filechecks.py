"""The checks a task's stdout / stderr files must pass, and the program that applies them
as the task's owner.

Standard library only, on purpose: agent/outputfiles.py imports the checks, and
agent/ownerfiles.py runs this very source in a short-lived child process
(``python -I -S -X utf8 -c SOURCE``) that drops to the owner's uid, gid and groups for
good before it reads its request, then enters the working directory and opens the files
with the same checks, in the same order, with the same messages (naming the user where
permissions decide), and passes the descriptors back over a Unix socket (SCM_RIGHTS).
There only the standard library is at hand (``-S``: no site-packages), which is also
why nothing here imports the agent's package.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import sys
from pathlib import Path

NOT_REGULAR = "not a regular file (a FIFO, device or socket)"
MAX_REQUEST_BYTES = 4 << 20
"""More than any assignment holds (a bus message is 256 KB at most)."""


def path_error(stream: str, path: Path, *, user: str | None = None) -> str | None:
    """Why ``path`` cannot take a stream (naming it), or None. ``user``: the caller runs as
    that user, so a directory it may not search is said to be that, not missing."""
    parent = path.parent
    if not os.path.isdir(parent):  # os.path: False on any OSError, never raises
        if user is not None and _denied(parent):
            return (
                f"{stream} file {str(path)!r}: user {user!r} may not reach its directory "
                f"{str(parent)!r} (Permission denied)"
            )
        return (
            f"{stream} file {str(path)!r}: its directory {str(parent)!r} "
            "does not exist or is not a directory"
        )
    if os.path.isdir(path):
        return f"{stream} file {str(path)!r} is a directory"
    return None


def cannot_write(stream: str, path: Path, exc: OSError, *, user: str | None = None) -> str:
    who = "" if user is None else f" as user {user!r}"
    return f"cannot write the {stream} file {str(path)!r}{who}: {exc.strerror or exc}"


def open_regular(path: Path) -> int:
    """Open ``path`` to append (created 0644), refusing anything but a regular file or the
    null device (:func:`is_null_device`: ``--stdout /dev/null``, whose caller writes nothing
    there): opening a FIFO with no reader would block the agent's loop (no heartbeats: its
    node goes Unreachable), and any other device is no task's output. O_NONBLOCK makes that
    open fail at once instead. Returns the descriptor (blocking again)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise OSError(errno.EINVAL, NOT_REGULAR) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) and not is_null_device(fd):
            raise OSError(errno.EINVAL, NOT_REGULAR)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def is_null_device(fd: int) -> bool:
    """Whether ``fd`` is the null device: a character device with the st_rdev of
    ``os.devnull``'s (not a name: a symlink to it counts, another device called null not)."""
    try:
        mine, null = os.fstat(fd), os.stat(os.devnull)
    except OSError:
        return False
    return (
        stat.S_ISCHR(mine.st_mode) and stat.S_ISCHR(null.st_mode) and mine.st_rdev == null.st_rdev
    )


def same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), path.stat())
    except OSError:
        return False


def _denied(path: Path) -> bool:
    try:
        os.stat(path)
    except PermissionError:
        return True
    except (OSError, ValueError):
        return False
    return False


# --- the child process, as the owner --------------------------------------------------------


def become(uid: int, gid: int, groups: list[int]) -> None:
    """Drop to the owner for good (real, effective and saved ids); never to root."""
    if uid == 0:
        raise SystemExit("refusing to act as uid 0")
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise SystemExit(f"could not drop to uid {uid} gid {gid}")


def serve(request: dict[str, object], fds: list[int]) -> dict[str, object]:
    """Enter the working directory and open the files, as the agent would (the order of its
    checks: the directory, every file's path, then the opens). Appends the descriptors to
    ``fds`` (each file's writer, then its reader if it could be opened); returns the reply."""
    user, cwd = str(request["user"]), str(request["cwd"])
    fallback = request.get("fallback")
    try:
        os.chdir(cwd)
    except (OSError, ValueError) as exc:
        if isinstance(fallback, str) and not isinstance(exc, PermissionError):
            cwd = fallback  # no workDir, and the owner has no home directory
        elif isinstance(exc, PermissionError):
            return {
                "error": f"working directory {cwd!r}: user {user!r} may not enter it "
                "(Permission denied)"
            }
        else:
            return {"error": f"working directory {cwd!r} does not exist or is not a directory"}
    names = request.get("files")
    assert isinstance(names, list)
    paths = [(str(stream), Path(cwd) / str(name)) for stream, name in names]
    for stream, path in paths:
        if (error := path_error(stream, path, user=user)) is not None:
            return {"error": error}
    files: list[dict[str, object]] = []
    writers: list[tuple[int, str]] = []
    for stream, path in paths:
        shared = next((s for fd, s in writers if same_file(fd, path)), None)
        if shared is not None:
            files.append({"stream": stream, "path": str(path), "same": shared})
            continue
        try:
            fd = open_regular(path)
            if is_null_device(fd):  # nothing to write there: the stream goes to the API alone
                os.close(fd)
                files.append({"stream": stream, "path": str(path), "null": True})
                continue
            fds.append(fd)
            os.ftruncate(fd, 0)  # each attempt starts its file afresh
        except OSError as exc:
            return {"error": cannot_write(stream, path, exc, user=user)}
        reader = _reader(path, fd)
        if reader is not None:
            fds.append(reader)
        writers.append((fd, stream))
        files.append({"stream": stream, "path": str(path), "reader": reader is not None})
    return {"cwd": cwd, "files": files}


def _reader(path: Path, writer: int) -> int | None:
    """A read descriptor of the file ``writer`` writes (the agent copies its head into the
    Output store through it), or None if the owner may not read it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    if not os.path.samestat(os.fstat(fd), os.fstat(writer)):  # swapped in between
        os.close(fd)
        return None
    return fd


def main(argv: list[str]) -> int:
    """``SOCKET_FD UID GID GROUPS``: drop to the owner, read the JSON request from the
    socket until its end, answer one byte carrying the descriptors, then the JSON reply."""
    sock = socket.socket(fileno=int(argv[0]))
    become(int(argv[1]), int(argv[2]), [int(g) for g in argv[3].split(",") if g])
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
        if sum(map(len, chunks)) > MAX_REQUEST_BYTES:
            raise SystemExit("request too large")
    fds: list[int] = []
    try:
        reply = serve(json.loads(b"".join(chunks)), fds)
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            fds.clear()
        if fds:
            socket.send_fds(sock, [b"\0"], fds)
        else:
            sock.sendall(b"\0")
        sock.sendall(json.dumps(reply).encode())
    finally:
        for fd in fds:
            os.close(fd)
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
