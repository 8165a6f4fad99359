"""Reading a task's output through the API: byte ranges, whole streams, tails.

Part of :class:`hpc.client.ApiClient` (the output routes); a stream is read in
pages, all from one attempt, and a tail fetches ranges from the end only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import httpx

from hpc.client_http import HttpClient
from shared.ports.output import MAX_READ_BYTES

OUTPUT_PAGE_BYTES = 4 << 20
"""Bytes asked for per request when reading a whole output."""
TAIL_FIRST_BYTES = 64 << 10
"""The first range read from the end of an output for ``--tail`` (doubled while short)."""

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class OutputPage:
    """A byte range of a task attempt's stream, with what the API said of the whole."""

    data: bytes
    size: int | None
    """The stream's whole size (``X-Output-Size``), None if the server did not say."""
    attempt: int | None
    """The attempt served (``X-Attempt``), None if the server did not say."""
    truncated: bool
    """The agent cut the stream at HPC_MAX_OUTPUT_BYTES (``X-Output-Truncated``)."""
    stored: bool = True
    """False: nothing of the stream is stored yet (``X-Output-Stored``; missing: True)."""


def tail_lines(data: bytes, lines: int) -> bytes:
    """The last ``lines`` lines of ``data`` (a final newline ends the last line)."""
    if lines <= 0:
        return b""
    pos = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return data
    return data[pos + 1 :]


def _holds_lines(data: bytes, lines: int) -> bool:
    """Whether ``data`` (the end of a stream) surely holds its last ``lines`` whole lines."""
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    return data.count(b"\n", 0, max(end, 0)) >= lines


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


class OutputRoutes(HttpClient):
    """The task-output routes of the API."""

    def task_output_page(
        self,
        job_id: int,
        task_id: int,
        *,
        stream: Stream = "stdout",
        attempt: int | None = None,
        offset: int | None = None,
        limit: int | None = None,
    ) -> OutputPage:
        """One byte range of a task attempt's stdout or stderr (the API's defaults: the
        attempt the task's state comes from, offset 0, 1 MiB)."""
        params = {"stream": stream, "attempt": attempt, "offset": offset, "limit": limit}
        response = self._send("GET", f"jobs/{job_id}/tasks/{task_id}/output", params=params)
        return OutputPage(
            data=response.content,
            size=_int_header(response, "X-Output-Size"),
            attempt=_int_header(response, "X-Attempt"),
            truncated=response.headers.get("X-Output-Truncated", "").lower() == "true",
            stored=response.headers.get("X-Output-Stored", "").lower() != "false",
        )

    def iter_task_output(
        self,
        job_id: int,
        task_id: int,
        *,
        stream: Stream = "stdout",
        attempt: int | None = None,
        page_bytes: int | None = None,
        offset: int = 0,
    ) -> Iterator[OutputPage]:
        """The whole stream from ``offset`` on, page by page (``OUTPUT_PAGE_BYTES`` each), all
        from the attempt the first page came from (a task retried meanwhile does not mix
        attempts). Ends at the first short page."""
        page_bytes = page_bytes or OUTPUT_PAGE_BYTES
        while True:
            page = self.task_output_page(
                job_id, task_id, stream=stream, attempt=attempt, offset=offset, limit=page_bytes
            )
            if attempt is None:
                attempt = page.attempt
            yield page
            offset += len(page.data)
            if len(page.data) < page_bytes or (page.size is not None and offset >= page.size):
                return

    def task_output(
        self, job_id: int, task_id: int, *, stream: Stream = "stdout", attempt: int | None = None
    ) -> str:
        """A task attempt's whole stdout or stderr as text (read in pages)."""
        pages = self.iter_task_output(job_id, task_id, stream=stream, attempt=attempt)
        return b"".join(page.data for page in pages).decode("utf-8", errors="replace")

    def task_output_tail(
        self,
        job_id: int,
        task_id: int,
        lines: int,
        *,
        stream: Stream = "stdout",
        attempt: int | None = None,
    ) -> OutputPage:
        """The last ``lines`` lines of a task attempt's stream, fetching only ranges from its
        end (growing from 64 KiB) until they hold that many lines."""
        probe = self.task_output_page(
            job_id, task_id, stream=stream, attempt=attempt, offset=0, limit=0
        )
        if probe.size is None:  # a server that does not say the size: read it all
            pages = list(self.iter_task_output(job_id, task_id, stream=stream, attempt=attempt))
            data = b"".join(p.data for p in pages)
            last = pages[-1]
            return OutputPage(
                tail_lines(data, lines), last.size, last.attempt, last.truncated, last.stored
            )
        attempt = probe.attempt if attempt is None else attempt
        data, end, chunk = b"", probe.size, TAIL_FIRST_BYTES
        truncated = probe.truncated
        while end > 0 and lines > 0 and not _holds_lines(data, lines):
            start = max(0, end - chunk)
            page = self.task_output_page(
                job_id, task_id, stream=stream, attempt=attempt, offset=start, limit=end - start
            )
            truncated = truncated or page.truncated
            data, end = page.data + data, start
            chunk = min(chunk * 2, MAX_READ_BYTES)
        return OutputPage(tail_lines(data, lines), probe.size, attempt, truncated, probe.stored)
