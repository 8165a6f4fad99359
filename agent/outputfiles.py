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

The null device (``--stdout /dev/null``, or any name of it: checked as the character device
of ``os.devnull``, not by its name) is accepted and nothing is written there: that stream
goes to the Output store as if no file were named (capped as usual), so ``hpc task output``
still shows it. Any other device, a FIFO or a directory is refused.

An agent with --run-as-owner opens nothing of the user's itself: its files come opened by
the owner (:meth:`TaskFiles.adopt`, agent/ownerfiles.py), with a read descriptor of each
that the Output store's copy is taken through, never the path (root would follow a file
swapped for a symlink to one its owner may not read).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import BinaryIO

from agent.filechecks import (
    cannot_write,
    is_null_device,
    open_regular,
    path_error,
    same_file,
)
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
        self._owned = False
        """The owner opened the files (--run-as-owner): the agent never opens their paths."""
        self._writers: dict[Stream, int] = {}
        """Stream -> descriptor the owner opened, until :meth:`open` hands it to the process."""
        self._readers: dict[Stream, int] = {}
        """Output store stream -> read descriptor of its source (--run-as-owner)."""

    def __bool__(self) -> bool:
        return bool(self._names)

    @property
    def names(self) -> dict[Stream, str]:
        """Stream -> the file name the task gave (relative: to its working directory)."""
        return dict(self._names)

    def adopt(
        self,
        paths: Mapping[Stream, Path],
        writers: Mapping[Stream, int],
        readers: Mapping[Stream, int],
    ) -> None:
        """Take the files the owner opened (emptied, append mode): ``writers`` per stream (one
        descriptor for both when they are one file), ``readers`` per Output store stream.
        Instead of :meth:`resolve`; :meth:`open` then hands the writers to the process, and
        the descriptors are this object's to close (:meth:`close`)."""
        self.paths = dict(paths)
        self._owned = True
        self._writers = dict(writers)
        self._readers = dict(readers)

    def resolve(self) -> str | None:
        """Resolve the names; ``None``, or why the task cannot start (naming the path)."""
        for stream, name in self._names.items():
            path = self._base / name  # an absolute name stays as it is
            if (error := path_error(stream, path)) is not None:
                return error
            self.paths[stream] = path
        return None

    def open(self, stack: ExitStack) -> dict[Stream, BinaryIO]:
        """Open (emptied, append mode) the files for the process; one handle for both streams
        when they are the same file. Raises OutputFileError naming the path."""
        handles: dict[Stream, BinaryIO] = {}
        self.sources.clear()
        self._copied.clear()
        if self._owned:
            return self._hand_over(stack)
        for stream, path in self.paths.items():
            shared = next(
                (s for s, h in handles.items() if _same_file(h, path)),
                None,
            )
            if shared is not None:
                handles[stream] = handles[shared]
                continue
            try:
                fd = open_regular(path)
                if is_null_device(fd):  # nothing to write there: the Output store's sink
                    os.close(fd)  # takes the stream, as if no file were named
                    continue
                handle = stack.enter_context(_fdopen(fd))
                handle.truncate(0)
            except OSError as exc:
                raise OutputFileError(cannot_write(stream, path, exc)) from None
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
            if self._owned:
                self._copied[stream] = self._copy_from_reader(stream, sinks[stream], done, want)
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

    def _hand_over(self, stack: ExitStack) -> dict[Stream, BinaryIO]:
        """The adopted writers as handles for the process (closed with ``stack``)."""
        handles: dict[Stream, BinaryIO] = {}
        by_fd: dict[int, BinaryIO] = {}
        try:
            for stream, fd in self._writers.items():
                if fd not in by_fd:
                    by_fd[fd] = stack.enter_context(os.fdopen(fd, "ab"))  # the stack's now
                    self.sources[stream] = self.paths[stream]
                    self._copied[stream] = 0
                handles[stream] = by_fd[fd]
        finally:
            self._writers = {s: fd for s, fd in self._writers.items() if fd not in by_fd}
        return handles

    def _copy_from_reader(self, stream: Stream, sink: Path, done: int, want: int) -> int:
        """:meth:`mirror` of one stream through the owner's read descriptor; the new count."""
        reader = self._readers.get(stream)
        if reader is None:
            return done  # the owner may not read its own file: no copy (never by the path)
        try:
            if os.fstat(reader).st_size <= done:
                return done
            with sink.open("ab") as dst:
                while want > 0 and (chunk := os.pread(reader, min(_CHUNK, want), done)):
                    dst.write(chunk)
                    done += len(chunk)
                    want -= len(chunk)
        except OSError:
            log.warning("could not copy the %s file into the Output store", stream, exc_info=True)
        return done

    def close(self) -> None:
        """Close the descriptors the owner opened that are still this object's. Never raises."""
        fds = {*self._writers.values(), *self._readers.values()}
        self._writers, self._readers = {}, {}
        for fd in fds:
            with suppress(OSError):
                os.close(fd)


def _fdopen(fd: int) -> BinaryIO:
    """A descriptor of :func:`agent.filechecks.open_regular` as a file object."""
    try:
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


def _same_file(handle: BinaryIO, path: Path) -> bool:
    return same_file(handle.fileno(), path)
