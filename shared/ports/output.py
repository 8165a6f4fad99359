"""The Output port: where task stdout and stderr are kept.

The agent writes a task's streams to local files while it runs (so a process
writes at full speed with no extra hop); ``publish`` makes them durable where
the control plane can read them (a no-op for the local folder, an upload for
Blob storage). ``read`` serves ``hpc task output`` and the API.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

Stream = Literal["stdout", "stderr"]


class OutputStore(ABC):
    @abstractmethod
    def sink(self, job_id: int, task_id: int, stream: Stream) -> Path:
        """The local file the agent writes this stream to (parent folder created)."""

    @abstractmethod
    def publish(self, job_id: int, task_id: int) -> None:
        """Make the task's streams readable by :meth:`read` (after the process ends)."""

    @abstractmethod
    def read(
        self, job_id: int, task_id: int, stream: Stream, *, offset: int = 0, limit: int = 1 << 20
    ) -> bytes:
        """Up to ``limit`` bytes from ``offset``; empty if nothing was written (yet)."""
