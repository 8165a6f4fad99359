"""The embedded Output store: task streams as files under one folder.

Layout: ``<root>/<job_id>/<task_id>.stdout`` and ``.stderr``. The agent writes
straight into these files, so they are readable while the task runs and
``publish`` has nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

from shared.ports.output import OutputStore, Stream

_STREAMS: frozenset[str] = frozenset({"stdout", "stderr"})


class LocalOutputStore(OutputStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, job_id: int, task_id: int, stream: Stream) -> Path:
        """Where a stream lives (whether or not it was written yet)."""
        if stream not in _STREAMS:
            raise ValueError(f"stream must be 'stdout' or 'stderr', got {stream!r}")
        return self.root / str(int(job_id)) / f"{int(task_id)}.{stream}"

    def sink(self, job_id: int, task_id: int, stream: Stream) -> Path:
        path = self.path(job_id, task_id, stream)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, job_id: int, task_id: int) -> None:
        """Nothing to do: :meth:`read` reads the very files the agent wrote."""

    def read(
        self, job_id: int, task_id: int, stream: Stream, *, offset: int = 0, limit: int = 1 << 20
    ) -> bytes:
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must not be negative, got {offset} and {limit}")
        if limit == 0:
            return b""
        try:
            with self.path(job_id, task_id, stream).open("rb") as f:
                f.seek(offset)
                return f.read(limit)
        except FileNotFoundError:
            return b""
