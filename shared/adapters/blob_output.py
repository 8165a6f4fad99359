"""The Output store on Azure Blob storage: one append blob per task attempt and stream.

The agent writes an attempt's streams to local files under ``scratch`` (the same
layout as :class:`~shared.adapters.local_output.LocalOutputStore`, no pipe);
``publish`` appends what the blob does not hold yet, in blocks of at most 4 MiB,
so it may be called while the task runs (each call uploads the new tail) and once
more after it ends. Blobs are named ``<job_id>/<task_id>.<attempt>.<stream>`` in
one container; a stream the agent cut at the cap carries the blob metadata
``truncated_at``, and each carries its job's stamp as ``hpcjob`` (shared.ports.output
``job_stamp``, kept in the scratch folder from the attempt's start): a blob stamped for
another job (a store that started empty numbers its jobs from 1 again) is read as empty and
replaced whole by the first upload of the new attempt, never appended to.

``read`` serves byte ranges of the blob (one ranged GET). Where the blob does not
exist yet but the agent's local file does (the agent's own machine, before
``publish``), the local file is read, so an agent host sees its running output.

The local files are scratch: the last ``publish`` of an ended attempt (``final``)
removes them, and their job's folder once empty, after every stream's upload
succeeded and holds the whole file (a live probe found 10,004 files left by one
5,000-task sweep, up to twice the cap per attempt, on nodes whose disk nothing
else frees). A failed upload raises before anything is removed, so the files stay
for another ``publish``. :meth:`BlobOutputStore.sink` creates its file, so that a
folder being emptied is never removed under a task about to write there.

Connection: a connection string (Azurite: ``UseDevelopmentStorage=true`` or the
well-known account key) or an account URL with ``DefaultAzureCredential``
(managed identity in Azure).
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.adapters.local_output import LocalOutputStore
from shared.ports.output import (
    DEFAULT_READ_BYTES,
    STREAMS,
    OutputInfo,
    OutputStore,
    Stream,
    stamp_matches,
    writes_over,
)

APPEND_BLOCK_BYTES = 4 << 20
"""Largest block one append sends (the Append Block limit of older service versions)."""
TRUNCATED_KEY = "truncated_at"
STAMP_KEY = "hpcjob"
"""Blob metadata naming the job the stream belongs to (its stamp)."""
_SINK_TRIES = 5
"""Times :meth:`BlobOutputStore.sink` creates its folder again if a final publish removed it."""

log = logging.getLogger(__name__)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def blob_name(job_id: int, task_id: int, stream: Stream, attempt: int) -> str:
    return f"{int(job_id)}/{int(task_id)}.{int(attempt)}.{stream}"


RETRY: dict[str, Any] = {
    "retry_total": 3,
    "initial_backoff": 2,
    "increment_base": 2,
    "connection_timeout": 10,
}
"""The SDK's retries (its ExponentialRetry, as keyword arguments of the client): 3 retries
after about 2, 4 and 6 s, a connection given 10 s. Its defaults (15, 18 and 24 s, 20 s)
held an ended task Running about 85 s a publish while Blob did not answer, and the agent
tries 3 times before it reports the end (4.5 min in a fault probe): now about 45 s, and its
output is published again later (agent/owedoutput.py). Reads (``hpc task output``) answer a
503 sooner too."""


def service_client(
    *, connection_string: str | None = None, account_url: str | None = None
) -> BlobServiceClient:
    """A client from a connection string, else from an account URL and DefaultAzureCredential."""
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, **RETRY)
    if account_url:
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(account_url, credential=DefaultAzureCredential(), **RETRY)
    raise ValueError(
        "Blob output needs HPC_BLOB_CONNECTION_STRING or HPC_BLOB_ACCOUNT_URL "
        "(Azurite: scripts/emulators.sh env)"
    )


class BlobOutputStore(OutputStore):
    remote = True

    def __init__(
        self,
        scratch: Path,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        container: str = "output",
        client: BlobServiceClient | None = None,
    ) -> None:
        self.local = LocalOutputStore(scratch)
        self.service = client or service_client(
            connection_string=connection_string, account_url=account_url
        )
        self.container: ContainerClient = self.service.get_container_client(container)
        self._container_ready = False

    # --- helpers ------------------------------------------------------------------

    def _ensure_container(self) -> None:
        if self._container_ready:
            return
        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()
        self._container_ready = True

    def _blob(self, job_id: int, task_id: int, stream: Stream, attempt: int) -> Any:
        return self.container.get_blob_client(blob_name(job_id, task_id, stream, attempt))

    def _latest_attempt(self, job_id: int, task_id: int, stream: Stream) -> int:
        latest = self.local._latest_attempt(job_id, task_id, stream)
        pattern = re.compile(rf"{int(job_id)}/{int(task_id)}\.(\d+)\.{stream}")
        try:
            for item in self.container.list_blobs(
                name_starts_with=f"{int(job_id)}/{int(task_id)}."
            ):
                match = pattern.fullmatch(item.name)
                if match:
                    latest = max(latest, int(match.group(1)))
        except ResourceNotFoundError:  # no container yet: nothing published
            pass
        return latest

    def _resolve(self, job_id: int, task_id: int, stream: Stream, attempt: int | None) -> int:
        if attempt is None:
            self.local.path(job_id, task_id, stream, attempt=0)  # validates the stream
            return self._latest_attempt(job_id, task_id, stream)
        self.local.path(job_id, task_id, stream, attempt=attempt)  # validates both
        return attempt

    @staticmethod
    def _cap(metadata: dict[str, str] | None) -> int | None:
        try:
            return int((metadata or {})[TRUNCATED_KEY])
        except (KeyError, ValueError):
            return None

    # --- the port -------------------------------------------------------------------

    def sink(
        self,
        job_id: int,
        task_id: int,
        stream: Stream,
        *,
        attempt: int = 0,
        stamp: str | None = None,
    ) -> Path:
        """The local file, created (kept as it is if it exists): a folder holding a file is
        never removed by a final :meth:`publish` of another task, one still empty may be. The
        stamp is kept beside it, for :meth:`publish` (even by the agent's next process)."""
        for _ in range(_SINK_TRIES - 1):
            try:
                path = self.local.sink(job_id, task_id, stream, attempt=attempt, stamp=stamp)
                path.touch()
                return path
            except FileNotFoundError:  # its folder was removed after the mkdir: again
                continue
        path = self.local.sink(job_id, task_id, stream, attempt=attempt, stamp=stamp)
        path.touch()
        return path

    def mark_truncated(
        self, job_id: int, task_id: int, stream: Stream, *, attempt: int, cap: int
    ) -> None:
        """Recorded locally now, and on the blob at ``publish`` (or now if it exists)."""
        self.local.mark_truncated(job_id, task_id, stream, attempt=attempt, cap=cap)
        metadata = self._metadata(job_id, task_id, attempt, cap)
        with contextlib.suppress(ResourceNotFoundError):
            blob = self._blob(job_id, task_id, stream, attempt)
            if self._ours(blob.get_blob_properties().metadata, metadata):
                blob.set_blob_metadata(metadata)

    def publish(self, job_id: int, task_id: int, *, attempt: int = 0, final: bool = False) -> None:
        """Append to each stream's blob what the local file holds past the blob's end; with
        ``final`` (the attempt ended), then remove the local files if the blobs hold them whole.
        Raises on a failed upload, the local files kept."""
        uploaded: dict[Path, int] = {}
        for stream in STREAMS:
            path = self.local.path(job_id, task_id, stream, attempt=attempt)
            if path.exists():
                uploaded[path] = self._append(job_id, task_id, stream, attempt, path)
        if final:
            self._drop_scratch(job_id, task_id, attempt, uploaded)

    def _append(self, job_id: int, task_id: int, stream: Stream, attempt: int, path: Path) -> int:
        """Upload the local file's new tail; the bytes the blob holds after it."""
        self._ensure_container()
        blob = self._blob(job_id, task_id, stream, attempt)
        cap = self.local.info(job_id, task_id, stream, attempt=attempt).truncated_at
        metadata = self._metadata(job_id, task_id, attempt, cap)
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            props = None
        if props is not None and not self._ours(props.metadata, metadata):
            log.warning(
                "blob %s held another job's output (%s): replaced by this one's (%s)",
                blob.blob_name,
                props.metadata.get(STAMP_KEY),
                metadata.get(STAMP_KEY),
            )
            props = None
        if props is None:
            blob.create_append_blob(metadata=metadata)  # (replaces another job's blob whole)
            uploaded = 0
        else:
            uploaded = int(props.size)
            if any(props.metadata.get(k) != v for k, v in metadata.items()):
                blob.set_blob_metadata({**props.metadata, **metadata})
        with path.open("rb") as f:
            f.seek(uploaded)
            while chunk := f.read(APPEND_BLOCK_BYTES):
                # appendpos_condition: a concurrent or repeated publish fails
                # instead of appending the same bytes twice.
                blob.append_block(chunk, appendpos_condition=uploaded)
                uploaded += len(chunk)
        return uploaded

    def _metadata(self, job_id: int, task_id: int, attempt: int, cap: int | None) -> dict[str, str]:
        """The blob's metadata: the attempt's stamp (from its scratch folder) and its cap."""
        metadata = {}
        stamp = self.local.stamp(job_id, task_id, attempt)
        if stamp is not None:
            metadata[STAMP_KEY] = stamp
        if cap is not None:
            metadata[TRUNCATED_KEY] = str(int(cap))
        return metadata

    @staticmethod
    def _ours(found: dict[str, str] | None, metadata: dict[str, str]) -> bool:
        """Whether this attempt (``metadata``) may append to a blob with metadata ``found``:
        stamped alike, or this writer has no stamp (an assignment that gave none). One it
        has a stamp for replaces an unstamped blob too (a probe: an old job's unstamped
        output was kept under the new job's stamp, its first bytes lost)."""
        return not writes_over((found or {}).get(STAMP_KEY), metadata.get(STAMP_KEY))

    def _drop_scratch(
        self, job_id: int, task_id: int, attempt: int, uploaded: dict[Path, int]
    ) -> None:
        """Remove the attempt's local files (streams and truncation markers), and its job's
        folder if that leaves it empty; nothing when a file grew past what was uploaded
        (something still writes there: the files stay, as after a failed upload)."""
        grown = [p for p, size in uploaded.items() if _size(p) not in (size, None)]
        if grown:
            log.warning("not removing %s: written to after its upload", ", ".join(map(str, grown)))
            return
        for stream in STREAMS:
            path = self.local.path(job_id, task_id, stream, attempt=attempt)
            for name in (path, path.with_name(path.name + ".truncated")):
                with contextlib.suppress(FileNotFoundError):
                    name.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.local.stamp_path(job_id, task_id, attempt).unlink()
        with contextlib.suppress(OSError):  # not empty (other tasks' files), or gone
            self.local.root.joinpath(str(int(job_id))).rmdir()

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
        attempt = self._resolve(job_id, task_id, stream, attempt)
        if limit == 0:
            return b""
        blob = self._blob(job_id, task_id, stream, attempt)
        try:
            download = blob.download_blob(offset=offset, length=limit)
        except ResourceNotFoundError:
            download = None
        except HttpResponseError as exc:
            if exc.status_code != 416:  # 416: offset at or past the end (or an empty blob)
                raise
            download = None
        if download is not None:
            props = download.properties
            if stamp_matches(props.metadata.get(STAMP_KEY), stamp, props.last_modified):
                return bytes(download.readall())
        # No blob, or another job's (not replaced yet): the local file, on the agent's host
        return self.local.read(
            job_id, task_id, stream, attempt=attempt, offset=offset, limit=limit, stamp=stamp
        )

    def info(
        self,
        job_id: int,
        task_id: int,
        stream: Stream,
        *,
        attempt: int | None = None,
        stamp: str | None = None,
    ) -> OutputInfo:
        attempt = self._resolve(job_id, task_id, stream, attempt)
        try:
            props = self._blob(job_id, task_id, stream, attempt).get_blob_properties()
        except ResourceNotFoundError:
            return self.local.info(job_id, task_id, stream, attempt=attempt, stamp=stamp)
        if not stamp_matches((props.metadata or {}).get(STAMP_KEY), stamp, props.last_modified):
            return self.local.info(job_id, task_id, stream, attempt=attempt, stamp=stamp)
        return OutputInfo(size=int(props.size), truncated_at=self._cap(props.metadata))

    def close(self) -> None:
        self.service.close()
