"""What one stored document and one ``commit`` may hold: Cosmos DB's limits (2 MB an item, a
transactional batch of 100 operations and 2 MB), which every Store adapter enforces alike, so
that "works here" means "works in Azure" (the embedded SQLite store refuses what Cosmos DB
would). Moved out of :mod:`shared.ports.store`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.domain.models import Job, Task
from shared.domain.records import Record
from shared.domain.taskrange import TaskRange

MAX_BATCH = 100
"""Most documents one ``commit`` writes (Cosmos's transactional batch limit)."""

MAX_DOCUMENT_BYTES = 2_000_000
"""Largest stored document, by :func:`stored_size`. Cosmos DB refuses an item over 2 MB
(2,097,152 bytes); the ~97 KB left are the adapters' own top-level fields."""

MAX_BATCH_BYTES = 2_000_000
"""Most bytes (sum of :func:`stored_size`) one ``commit`` or one part of ``add_job``
writes: a Cosmos transactional batch is at most 2 MB."""


def stored_size(record: Record) -> int:
    """The bytes a record takes stored: its compact JSON, each non-ASCII character counted
    as its ``\\uXXXX`` escape (the larger of the two ways a client may send it), so every
    adapter measures the same and none is laxer than Cosmos DB."""
    return json_size(record.model_dump_json(by_alias=True, exclude={"etag"}))


def json_size(text: str) -> int:
    """The bytes JSON text takes stored, measured as :func:`stored_size` measures (for parts
    of a document, e.g. the hosts a dispatch will add to a task)."""
    if text.isascii():
        return len(text)
    return len(text) + sum(5 if ord(c) < 0x10000 else 11 for c in text if ord(c) > 127)


def check_size(record: Record, size: int) -> None:
    """ValueError, saying what to shorten, for a document over :data:`MAX_DOCUMENT_BYTES`."""
    if size > MAX_DOCUMENT_BYTES:
        raise ValueError(
            f"{_what(record)} would be {size:,} bytes stored; a document holds at most "
            f"{MAX_DOCUMENT_BYTES:,} (Cosmos DB's 2 MB item limit): shorten its command, "
            "environment or other text fields; nothing was written"
        )


def _what(record: Record) -> str:
    if isinstance(record, Job):
        return f"job {record.id}"
    if isinstance(record, (Task, TaskRange)):
        return f"{'task' if isinstance(record, Task) else 'range'} {record.key}"
    name = getattr(record, "name", None) or getattr(record, "key", "")
    return f"{type(record).__name__.lower()} {name!r}"


class BatchTooLarge(ValueError):
    """A commit over MAX_BATCH documents or MAX_BATCH_BYTES: nothing was written; the caller
    may commit the same changes in smaller parts."""


def size_bound(record: Task | TaskRange) -> int:
    """An upper bound of :func:`stored_size`, from the lengths of the fields that can be long
    (each character counted as 12 bytes, an astral character's two ``\\uXXXX`` escapes), without serializing: cheap enough for
    every task a 1,000,000-task cancel commits, so commits of tasks with long commands are
    split by bytes as well as by count (:func:`shared.usecases.deps.chunks`)."""
    task = record.template if isinstance(record, TaskRange) else record
    chars = (
        len(task.command)
        + len(task.name)
        + sum(len(g) + 3 for g in task.node_groups)
        + sum(len(k) + len(v) + 6 for k, v in task.env.items())
        + sum(len(d) + 3 for d in task.depends_on)
        + sum(len(s or "") for s in (task.work_dir, task.stdout, task.stderr))
        + len(task.error or "")
        + len(task.canceled_for or "")
        + len(task.output or "")
    )
    if isinstance(record, TaskRange):
        chars += len(record.name_prefix or "") + len(record.canceled_reason or "")
        chars += len(record.canceled_for or "")
    hosts = len(task.hosts) + sum(len(lost.hosts) + 1 for lost in task.lost)
    ids = len(record.created_ahead) if isinstance(record, TaskRange) else 0
    return 4096 + 12 * chars + 200 * hosts + 12 * ids


def check_batch(job: Job | None, tasks: Sequence[Task], ranges: Sequence[TaskRange] = ()) -> None:
    """``commit``'s preconditions: one job's documents, each once, at most MAX_BATCH of
    them and MAX_BATCH_BYTES together, none over MAX_DOCUMENT_BYTES."""
    size = len(tasks) + len(ranges) + (job is not None)
    if size > MAX_BATCH:
        raise BatchTooLarge(f"commit writes at most {MAX_BATCH} documents, got {size}")
    total = 0
    for record in [*([job] if job is not None else []), *ranges, *tasks]:
        one = stored_size(record)
        check_size(record, one)
        total += one
    if total > MAX_BATCH_BYTES:
        raise BatchTooLarge(
            f"commit writes at most {MAX_BATCH_BYTES:,} bytes (a Cosmos DB transactional "
            f"batch is 2 MB), got {total:,} in {size} documents: commit fewer at a time; "
            "nothing was written"
        )
    if len({r.first_id for r in ranges}) != len(ranges):
        raise ValueError("commit got the same range twice")
    job_ids = (
        {t.job_id for t in tasks}
        | {r.job_id for r in ranges}
        | ({job.id} if job is not None else set())
    )
    if len(job_ids) > 1:
        raise ValueError(f"commit writes one job's documents, got jobs {sorted(job_ids)}")
    if len({t.id for t in tasks}) != len(tasks):
        raise ValueError("commit got the same task twice")
