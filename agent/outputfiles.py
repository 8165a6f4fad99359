"""The files a task names for its stdout and stderr (``--stdout`` / ``--stderr``), as Slurm's
``--output`` / ``--error``.

The process writes such a stream straight into the user's file, whole: the
HPC_MAX_OUTPUT_BYTES cap does not apply to it (as Slurm writes it; the disk it
takes is the user's, in a folder they chose). The Output store, which the API
serves, gets a copy of the file's first HPC_MAX_OUTPUT_BYTES, taken while the
task runs (see :meth:`TaskFiles.mirror`), so ``hpc task output`` works as for
any task. When stdout and stderr name the same file (the same inode, however it
is spelled) both streams go into it through one descriptor, in the order they
were written; the API's stdout then holds that mix and its stderr stays empty.

Each attempt starts its files afresh (Slurm's default ``--open-mode=truncate``).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from shared.domain.messages import RunTask
from shared.ports.output import STREAMS, Stream

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class OutputFileError(Exception):
    """A task's stdout or stderr file cannot be written; the message names it."""


class TaskFiles:
    """The user's files of one attempt, and how much of each the Output store has copied.

    Lifecycle: :meth:`resolve` (an error string when a file cannot be written), then
    :meth:`open` (while starting the process), then :meth:`mirror` now and then and a last
    time once the process ended.
    """

    def __init__(self, task: RunTask, *, cwd: str | None) -> None:
        self._names: dict[Stream, str] = {
            stream: name for stream in STREAMS if (name := getattr(task, stream)) is not None
        }
        self._base = Path(cwd if cwd is not None else os.curdir)
        """The task's working directory (the agent's own when it has none, as for the process)."""
        self.paths: dict[Stream, Path] = {}
        """Stream -> the user's file it is written to (resolved against the working directory)."""
        self.sources: dict[Stream, Path] = {}
        """Output store stream -> the user's file it is copied from (stdout alone when both
        streams share one file)."""
        self._copied: dict[Stream, int] = {}

    def __bool__(self) -> bool:
        return bool(self._names)

    def resolve(self) -> str | None:
        """Resolve the names; ``None``, or why the task cannot start (naming the path)."""
        for stream, name in self._names.items():
            path = self._base / name  # an absolute name stays as it is
            if not os.path.isdir(path.parent):  # os.path: False on any OSError, never raises
                return (
                    f"{stream} file {str(path)!r}: its directory {str(path.parent)!r} "
                    "does not exist or is not a directory"
                )
            if os.path.isdir(path):
                return f"{stream} file {str(path)!r} is a directory"
            self.paths[stream] = path
        return None

    def open(self, stack: ExitStack) -> dict[Stream, BinaryIO]:
        """Open (emptied, append mode) the files for the process; one handle for both streams
        when they are the same file. Raises OutputFileError naming the path."""
        handles: dict[Stream, BinaryIO] = {}
        self.sources.clear()
        self._copied.clear()
        for stream, path in self.paths.items():
            shared = next(
                (s for s, h in handles.items() if _same_file(h, path)),
                None,
            )
            if shared is not None:
                handles[stream] = handles[shared]
                continue
            try:
                handle = stack.enter_context(_open_regular(path))
                handle.truncate(0)
            except OSError as exc:
                raise OutputFileError(
                    f"cannot write the {stream} file {str(path)!r}: {exc.strerror or exc}"
                ) from None
            handles[stream] = handle
            self.sources[stream] = path
            self._copied[stream] = 0
        return handles

    def mirror(self, sinks: dict[Stream, Path], *, cap: int, limit: int | None = None) -> None:
        """Append to each Output store stream what its file gained since the last call, up to
        one byte past ``cap`` (so that the caller's cut at the cap records the truncation).
        ``limit`` bounds the bytes copied per stream in this call. Never raises."""
        for stream, source in self.sources.items():
            done = self._copied[stream]
            want = cap + 1 - done
            if limit is not None:
                want = min(want, limit)
            if want <= 0 or stream not in sinks:
                continue
            try:
                if source.stat().st_size <= done:
                    continue
                with source.open("rb") as src, sinks[stream].open("ab") as dst:
                    src.seek(done)
                    while want > 0 and (chunk := src.read(min(_CHUNK, want))):
                        dst.write(chunk)
                        done += len(chunk)
                        want -= len(chunk)
            except OSError:
                log.warning("could not copy %s into the Output store", source, exc_info=True)
            self._copied[stream] = done


_NOT_REGULAR = "not a regular file (a FIFO, device or socket)"


def _open_regular(path: Path) -> BinaryIO:
    """Open ``path`` to append, refusing anything but a regular file: opening a FIFO with no
    reader would block the agent's loop (no heartbeats: its node goes Unreachable), and a
    device is no task's output. O_NONBLOCK makes that open fail at once instead."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise OSError(errno.EINVAL, _NOT_REGULAR) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, _NOT_REGULAR)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


def _same_file(handle: BinaryIO, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), path.stat())
    except OSError:
        return False
