"""The Output port: where task stdout and stderr are kept, one pair per attempt.

A stream is keyed by ``(job, task, attempt, stream)``: every attempt of a task
(0 on first dispatch, +1 each time it is requeued) writes its own stdout and
stderr, so a retried task keeps what every attempt wrote.

The agent writes an attempt's streams to local files while it runs (so a
process writes at full speed with no extra hop); ``publish`` makes them durable
where the control plane can read them (a no-op for the local folder, an upload
for Blob storage). ``read`` and ``info`` serve ``hpc task output`` and the API.

A stream is also stamped with its job's identity (:func:`job_stamp`: the id and its submit
time), given where the agent starts the attempt (:meth:`OutputStore.sink`) and where the
control plane reads (:meth:`OutputStore.read`, :meth:`OutputStore.info`): a store that starts
empty beside output that was kept (a Cosmos stand-in restarted, a database made again while
its Blob container stays) numbers its jobs from 1 again, and job 1's output was the old job
1's. A stream stamped for another job reads as empty and is replaced by the new attempt's;
one without a stamp (written by an agent from before stamps) is read as it is.

Each stream keeps at most ``HPC_MAX_OUTPUT_BYTES`` bytes (the agent enforces it,
see agent/runner.py); a stream cut there ends with :func:`truncation_marker`
and is recorded with :meth:`OutputStore.mark_truncated`, which :meth:`info`
then reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, ...] = ("stdout", "stderr")

DEFAULT_READ_BYTES = 1 << 20
"""Bytes one read (one API page) returns when the caller does not say."""
MAX_READ_BYTES = 16 << 20
"""Most bytes one API page may ask for (``limit``)."""


def job_stamp(job_id: int, submit_time: str | None) -> str | None:
    """The stamp of a job's streams: its id and its submit time as the task's environment says
    it (``HPC_JOB_SUBMIT_TIME``, ISO 8601); None when the time is not known (an assignment
    from a control plane that predates stamps)."""
    return f"{int(job_id)}@{submit_time}" if submit_time else None


def stamp_matches(found: str | None, wanted: str | None, written: datetime | None = None) -> bool:
    """Whether a stream stamped ``found``, last written at ``written``, may be served to a
    reader that wants ``wanted``. A reader without a stamp cannot tell, so it may. A stream
    without one (written by an agent from before stamps) is the job's only if it was written
    after the job's submit (an old job of the same id wrote before it: a probe saw such
    output served while the new job ran, then kept)."""
    if wanted is None:
        return True
    if found is not None:
        return found == wanted
    submitted = _submitted(wanted)
    return written is None or submitted is None or written >= submitted


def writes_over(found: str | None, mine: str | None) -> bool:
    """Whether a writer stamped ``mine`` must replace a stream stamped ``found`` rather than
    append to it: it is another job's, or carries no stamp while the writer has one."""
    return mine is not None and found != mine


def _submitted(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp.split("@", 1)[1])
    except (IndexError, ValueError):
        return None


def truncation_marker(cap: int) -> bytes:
    """The line appended to a stream the agent cut at ``cap`` bytes."""
    return f"[hybridhpc: output truncated at {cap} bytes (HPC_MAX_OUTPUT_BYTES)]\n".encode()


@dataclass(frozen=True)
class OutputInfo:
    """What is known of one attempt's stream without reading it."""

    size: int
    """Bytes kept (the truncation marker included); 0 when nothing was written."""
    truncated_at: int | None = None
    """The cap the stream was cut at, or None when it is whole."""
    stored: bool = True
    """False: nothing of the stream is in the store (nor on this host's disk): not published
    yet, where "size 0" alone read as "it printed nothing" (a probe: a Finished task whose
    node could not reach Blob storage; agent/owedoutput.py publishes it later)."""

    @property
    def truncated(self) -> bool:
        return self.truncated_at is not None


class OutputStore(ABC):
    """Streams per ``(job_id, task_id, attempt, stream)``.

    ``attempt`` is keyword-only and defaults to 0 where a stream is written; for
    :meth:`read` and :meth:`info` ``attempt=None`` means the latest attempt that
    wrote this stream (attempt 0 when none did). The control plane always names
    the attempt.
    """

    remote: bool = False
    """:meth:`publish` does network I/O (Blob): the agent publishes off its loop, so that
    slow uploads never hold up its heartbeats (agent/publisher.py)."""

    @abstractmethod
    def sink(
        self,
        job_id: int,
        task_id: int,
        stream: Stream,
        *,
        attempt: int = 0,
        stamp: str | None = None,
    ) -> Path:
        """The local file the agent writes this attempt's stream to (parent folder created);
        ``stamp`` (:func:`job_stamp`) is recorded as the attempt's job."""

    @abstractmethod
    def mark_truncated(
        self, job_id: int, task_id: int, stream: Stream, *, attempt: int, cap: int
    ) -> None:
        """Record that the agent cut this attempt's stream at ``cap`` bytes."""

    @abstractmethod
    def publish(self, job_id: int, task_id: int, *, attempt: int = 0, final: bool = False) -> None:
        """Make the attempt's streams readable by :meth:`read` (after the process ends).
        ``final``: the attempt ended and nothing more is written, so a store that copies
        the local files elsewhere removes them once copied (never when the copy failed)."""

    @abstractmethod
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
        """Up to ``limit`` bytes from ``offset``; empty if nothing was written (yet), if it was
        stamped for another job than ``stamp``, or ``offset`` is at or past the end. Negative
        ``offset`` or ``limit``: ValueError."""

    @abstractmethod
    def info(
        self,
        job_id: int,
        task_id: int,
        stream: Stream,
        *,
        attempt: int | None = None,
        stamp: str | None = None,
    ) -> OutputInfo:
        """Size and truncation of the stream (size 0 if nothing was written, or if it was
        stamped for another job than ``stamp``)."""
