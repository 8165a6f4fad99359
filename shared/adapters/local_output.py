"""The embedded Output store: task streams as files under one folder.

Layout: ``<root>/<job_id>/<task_id>.<attempt>.stdout`` and ``.stderr``, one pair
per attempt; a stream the agent cut at the cap has a companion
``<task_id>.<attempt>.<stream>.truncated`` holding the cap. The agent writes
straight into these files, so they are readable while the task runs and
``publish`` has nothing left to do.

An attempt's job stamp (:func:`shared.ports.output.job_stamp`) is kept beside its streams in
``<task_id>.<attempt>.job``; a reader whose stamp differs reads nothing.

Output written before streams were kept per attempt (``<task_id>.stdout``) is
read as attempt 0.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from shared.ports.output import (
    DEFAULT_READ_BYTES,
    STREAMS,
    OutputInfo,
    OutputStore,
    Stream,
    stamp_matches,
)

_STREAMS: frozenset[str] = frozenset({"stdout", "stderr"})


def _check(stream: str, attempt: int) -> None:
    if stream not in _STREAMS:
        raise ValueError(f"stream must be 'stdout' or 'stderr', got {stream!r}")
    if attempt < 0:
        raise ValueError(f"attempt must not be negative, got {attempt}")


class LocalOutputStore(OutputStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, job_id: int, task_id: int, stream: Stream, *, attempt: int = 0) -> Path:
        """Where an attempt's stream is written (whether or not it was written yet)."""
        _check(stream, attempt)
        return self.root / str(int(job_id)) / f"{int(task_id)}.{int(attempt)}.{stream}"

    def _legacy_path(self, job_id: int, task_id: int, stream: Stream) -> Path:
        return self.root / str(int(job_id)) / f"{int(task_id)}.{stream}"

    def _latest_attempt(self, job_id: int, task_id: int, stream: Stream) -> int:
        pattern = re.compile(rf"{int(task_id)}\.(\d+)\.{stream}")
        latest = 0
        try:
            with os.scandir(self.root / str(int(job_id))) as entries:
                for entry in entries:
                    match = pattern.fullmatch(entry.name)
                    if match:
                        latest = max(latest, int(match.group(1)))
        except (FileNotFoundError, NotADirectoryError):
            pass
        return latest

    def _readable(
        self, job_id: int, task_id: int, stream: Stream, attempt: int | None
    ) -> tuple[Path, int]:
        """The file holding the stream (which may not exist) and the attempt it is."""
        if attempt is None:
            _check(stream, 0)
            attempt = self._latest_attempt(job_id, task_id, stream)
        path = self.path(job_id, task_id, stream, attempt=attempt)
        if attempt == 0 and not path.exists():
            legacy = self._legacy_path(job_id, task_id, stream)
            if legacy.exists():
                return legacy, attempt
        return path, attempt

    def sink(
        self,
        job_id: int,
        task_id: int,
        stream: Stream,
        *,
        attempt: int = 0,
        stamp: str | None = None,
    ) -> Path:
        path = self.path(job_id, task_id, stream, attempt=attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        if stamp is not None and self.stamp(job_id, task_id, attempt) != stamp:
            for other in STREAMS:  # another job's (or an unstamped) cut is not this one's
                mark = self.path(job_id, task_id, other, attempt=attempt)
                mark.with_name(mark.name + ".truncated").unlink(missing_ok=True)
            stamp_path = self.stamp_path(job_id, task_id, attempt)
            tmp = stamp_path.with_name(f"{stamp_path.name}.{os.getpid()}.tmp")
            tmp.write_text(stamp + "\n")
            os.replace(tmp, stamp_path)  # whole or not at all: a reader sees one stamp
        return path

    def _matches(
        self, path: Path, job_id: int, task_id: int, attempt: int, stamp: str | None
    ) -> bool:
        """Whether the stream at ``path`` is the job's of ``stamp`` (:func:`stamp_matches`;
        an unstamped file by when it was last written)."""
        found = self.stamp(job_id, task_id, attempt)
        if stamp is None or found is not None:
            return stamp_matches(found, stamp)
        try:
            written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        except FileNotFoundError:
            return True  # nothing there: reads as empty anyway
        return stamp_matches(None, stamp, written)

    def stamp_path(self, job_id: int, task_id: int, attempt: int) -> Path:
        """Where the attempt's job stamp is kept (one for both streams)."""
        return self.root / str(int(job_id)) / f"{int(task_id)}.{int(attempt)}.job"

    def stamp(self, job_id: int, task_id: int, attempt: int) -> str | None:
        """The attempt's job stamp, None if it has none."""
        try:
            return self.stamp_path(job_id, task_id, attempt).read_text().strip() or None
        except (FileNotFoundError, NotADirectoryError):
            return None

    def mark_truncated(
        self, job_id: int, task_id: int, stream: Stream, *, attempt: int, cap: int
    ) -> None:
        path = self.sink(job_id, task_id, stream, attempt=attempt)
        path.with_name(path.name + ".truncated").write_text(f"{int(cap)}\n")

    def publish(self, job_id: int, task_id: int, *, attempt: int = 0, final: bool = False) -> None:
        """Nothing to do: :meth:`read` reads the very files the agent wrote (even ``final``:
        they are the store, kept)."""

    def read(
        self,
        job_id: int,
        task_id: int,
        stream: Stream,
        *,
        attempt: int | None = None,
        offset: int = 0,
        limit: int = DEFAULT_READ_BYTES,
        stamp: str | None = None,
    ) -> bytes:
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must not be negative, got {offset} and {limit}")
        path, attempt = self._readable(job_id, task_id, stream, attempt)
        if limit == 0 or not self._matches(path, job_id, task_id, attempt, stamp):
            return b""
        try:
            with path.open("rb") as f:
                # Past the end is empty, as the port says; seeking there is not always
                # possible (ext4 refuses offsets from 2^44 with EINVAL).
                if offset >= os.fstat(f.fileno()).st_size:
                    return b""
                f.seek(offset)
                return f.read(limit)
        except FileNotFoundError:
            return b""

    def info(
        self,
        job_id: int,
        task_id: int,
        stream: Stream,
        *,
        attempt: int | None = None,
        stamp: str | None = None,
    ) -> OutputInfo:
        path, attempt = self._readable(job_id, task_id, stream, attempt)
        if not self._matches(path, job_id, task_id, attempt, stamp):
            return OutputInfo(size=0, stored=False)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return OutputInfo(size=0, stored=False)
        marker = self.path(job_id, task_id, stream, attempt=attempt)
        try:
            truncated_at: int | None = int(marker.with_name(marker.name + ".truncated").read_text())
        except (FileNotFoundError, ValueError):
            truncated_at = None
        return OutputInfo(size=size, truncated_at=truncated_at)
