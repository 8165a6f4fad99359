"""The Cosmos DB Store's index of the hot paths: pointer documents, their queries, and how a
pointer is judged against the task or range it points to (no I/O here).

The ``index`` container (partition key ``/pk``) holds small pointers in two logical
partitions, so each scheduler pass and each heartbeat reads one partition instead of
every partition of ``jobs`` (docs/cosmos.md, "How the hot paths are found"):

- ``queue``: one pointer per Queued task (``t-<job>-<task>``) and per open range
  (``r-<job>-<first>``), with the scheduling order keys;
- ``active``: one pointer per task holding cores (``t-<job>-<task>``), with every node
  it holds and what :class:`~shared.domain.hosts.Holding` needs.

A pointer is never the truth: readers fetch the task it names and keep it only if the
pointer is :data:`CURRENT` for it. A pointer carries the *period* of the task it was
written for, so a late delete can tell a newer period's pointer from its own:

- a queue pointer's ``gen`` and an active pointer's ``attempt`` are the task's attempt.
  Every entry into Queued takes a new attempt (requeue, rerun) and an attempt is active
  at most once, so ``attempt`` names one Queued period and one active period;
- a range pointer's ``gen`` is the etag its writer read the range with ("" for a new
  one): a range can be reopened (a canceled job requeued), and no counter says so.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.adapters.cosmos_docs import Query, micros
from shared.domain.hosts import Holding, Seat, held
from shared.domain.models import Task
from shared.domain.states import TASK_ACTIVE, TaskState
from shared.domain.taskrange import TaskRange

INDEX = "index"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
QUEUE = "queue"
ACTIVE = "active"

Verdict = Literal["current", "over", "ahead"]
CURRENT: Verdict = "current"
"""The pointer describes the state the task (range) is in now: readers use it."""
OVER: Verdict = "over"
"""The period the pointer was written for has ended: it may be deleted (under its etag)."""
AHEAD: Verdict = "ahead"
"""Written for a period that has not begun: a writer's commit is in flight, or failed or
crashed after its upsert. Readers skip it; the repair deletes it once old."""

_ASC, _DESC = "ascending", "descending"
INDEX_INDEXING: dict[str, Any] = {
    "indexingMode": "consistent",
    "includedPaths": [
        {"path": "/kind/?"},
        {"path": "/priority/?"},
        {"path": "/submitTime/?"},
        {"path": "/jobId/?"},
        {"path": "/taskId/?"},
        {"path": "/nodes/[]/?"},
    ],
    "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
    "compositeIndexes": [
        [  # the queue in scheduling order (kind is filtered on, so it leads)
            {"path": "/kind", "order": _ASC},
            {"path": "/priority", "order": _DESC},
            {"path": "/submitTime", "order": _ASC},
            {"path": "/jobId", "order": _ASC},
            {"path": "/taskId", "order": _ASC},
        ]
    ],
}


def task_id(job_id: int, task_id: int) -> str:
    return f"t-{job_id}-{task_id}"


def range_id(job_id: int, first_id: int) -> str:
    return f"r-{job_id}-{first_id}"


def queue_pointer(job_id: int, tid: int, priority: int, submit_micros: int, attempt: int) -> dict:
    return {
        "id": task_id(job_id, tid),
        "pk": QUEUE,
        "kind": "task",
        "jobId": job_id,
        "taskId": tid,
        "priority": priority,
        "submitTime": submit_micros,
        "gen": attempt,
    }


def active_pointer(task: Task) -> dict:
    seats = [[h.node, h.cores, h.incarnation] for h in held(task)]
    since = task.start_time or task.dispatch_time
    return {
        "id": task_id(task.job_id, task.id),
        "pk": ACTIVE,
        "kind": "task",
        "jobId": task.job_id,
        "taskId": task.id,
        "node": task.node,
        "nodes": [s[0] for s in seats],
        "hosts": seats,
        "attempt": task.attempt,
        "runtimeLimitS": task.runtime_limit_s,
        "since": None if since is None else micros(since),
        # only when set: a pointer of any other task stays as it was before the field
        **({"jobExclusive": True} if task.job_exclusive else {}),
        **({"memoryMb": task.min_memory_mb} if task.min_memory_mb is not None else {}),
    }


def task_pointers(task: Task) -> dict[str, dict]:
    """The pointers a task in its state needs, by partition (none when it is done)."""
    if task.state is TaskState.QUEUED:
        sub = micros(task.submit_time)
        return {QUEUE: queue_pointer(task.job_id, task.id, task.priority, sub, task.attempt)}
    if task.state in TASK_ACTIVE:
        return {ACTIVE: active_pointer(task)}
    return {}


def range_pointer(r: TaskRange, gen: str) -> dict:
    return {
        "id": range_id(r.job_id, r.first_id),
        "pk": QUEUE,
        "kind": "range",
        "jobId": r.job_id,
        "taskId": r.first_id,
        "priority": r.priority,
        "submitTime": micros(r.template.submit_time),
        "gen": gen,
    }


def summary(pointers: dict[str, dict]) -> dict[str, str]:
    """What a version's pointers say, compact (a commit compares it with the next version's
    to upsert only pointers that change)."""
    return {pk: json.dumps(p, sort_keys=True) for pk, p in pointers.items()}


def holding(pointer: dict) -> Holding:
    """An active pointer's Holding (the same facts ``holding_of`` takes from the task)."""
    since = pointer.get("since")
    return Holding(
        int(pointer["jobId"]),
        int(pointer["taskId"]),
        tuple(Seat(n, c, i) for n, c, i in pointer["hosts"]),
        pointer.get("runtimeLimitS"),
        None if since is None else _EPOCH + timedelta(microseconds=int(since)),
        bool(pointer.get("jobExclusive", False)),
        pointer.get("memoryMb"),  # an older pointer has none: it holds no memory
    )


# --- verdicts ------------------------------------------------------------------


def judge_task(pk: str, pointer: dict, task: Task | None) -> Verdict:
    """A task pointer against the task as stored now (None: missing). Attempts only grow,
    and within one attempt a task goes Queued, then active, then done, never back: so
    "over" stays over, and a delete of an over pointer never removes a needed one."""
    if task is None:
        return AHEAD  # add_job or a range's commit has not written it yet (or was purged)
    attempt = int(pointer["gen"] if pk == QUEUE else pointer["attempt"])
    if task.attempt != attempt:
        return AHEAD if task.attempt < attempt else OVER
    if pk == QUEUE:
        return CURRENT if task.state is TaskState.QUEUED else OVER
    if task.state in TASK_ACTIVE:
        return CURRENT
    return AHEAD if task.state is TaskState.QUEUED else OVER


def judge_range(pointer: dict, r: TaskRange | None) -> Verdict:
    """A range pointer against the range as stored now: open is current; closed and still
    at the etag the pointer's writer read is ahead (its commit is in flight, or failed);
    closed at another etag is over (that writer's period began and ended, or never will)."""
    if r is None:
        return AHEAD
    if r.open:
        return CURRENT
    return AHEAD if r.etag == pointer["gen"] else OVER


def later(stored: dict, new: dict) -> bool:
    """The stored pointer is of a later period than the one a writer is about to write
    (a task's attempt; a range's periods have no order, and its pointer is current whenever
    the range is open, so a range pointer is never later)."""
    if new["kind"] == "range":
        return False
    field = "gen" if new["pk"] == QUEUE else "attempt"
    return int(stored.get(field, -1)) > int(new[field])


def order_key(record: Task | TaskRange) -> tuple[int, int, int, int]:
    """The scheduling order: priority high first, submit time, job id, task id."""
    if isinstance(record, TaskRange):
        return (-record.priority, micros(record.template.submit_time), record.job_id, record.id)
    return (-record.priority, micros(record.submit_time), record.job_id, record.id)


# --- queries --------------------------------------------------------------------


def queue(kind: str, top: int, exclude_jobs: Collection[int] = ()) -> Query:
    """The first pointers of the queue (tasks or ranges) in scheduling order: one partition."""
    skip = " AND NOT ARRAY_CONTAINS(@exclude, c.jobId)" if exclude_jobs else ""
    return Query(
        f"SELECT TOP @top * FROM c WHERE c.pk = @pk AND c.kind = @kind{skip}"
        " ORDER BY c.kind ASC, c.priority DESC, c.submitTime ASC, c.jobId ASC, c.taskId ASC",
        [
            {"name": "@top", "value": top},
            {"name": "@pk", "value": QUEUE},
            {"name": "@kind", "value": kind},
            *([{"name": "@exclude", "value": sorted(exclude_jobs)}] if exclude_jobs else []),
        ],
        QUEUE,
    )


def active(node: str | None) -> Query:
    """The active pointers, of every task or of those holding one node: one partition."""
    if node is None:
        return Query("SELECT * FROM c WHERE c.pk = @pk", [{"name": "@pk", "value": ACTIVE}], ACTIVE)
    return Query(
        "SELECT * FROM c WHERE c.pk = @pk AND ARRAY_CONTAINS(c.nodes, @node)",
        [{"name": "@pk", "value": ACTIVE}, {"name": "@node", "value": node}],
        ACTIVE,
    )


def pointers(pk: str, ids: list[str] | None = None) -> Query:
    """Pointers of one partition: all (the repair) or some ids (a commit's removals)."""
    if ids is None:
        return Query("SELECT * FROM c WHERE c.pk = @pk", [{"name": "@pk", "value": pk}], pk)
    return Query(
        "SELECT * FROM c WHERE c.pk = @pk AND ARRAY_CONTAINS(@ids, c.id)",
        [{"name": "@pk", "value": pk}, {"name": "@ids", "value": ids}],
        pk,
    )


def pointers_of_job(pk: str, job_id: int) -> Query:
    """The pointers of one job in one partition (the purge of a job a crash left)."""
    return Query(
        "SELECT c.id, c._etag FROM c WHERE c.pk = @pk AND c.jobId = @jobId",
        [{"name": "@pk", "value": pk}, {"name": "@jobId", "value": job_id}],
        pk,
    )


def scan_queued() -> Query:
    """Every Queued task's order keys and attempt, across partitions: the repair only."""
    return Query(
        "SELECT c.jobId, c.taskId, c.priority, c.submitTime, c.body.attempt AS attempt"
        " FROM c WHERE c.type = @type AND c.state = @state",
        [{"name": "@type", "value": "task"}, {"name": "@state", "value": TaskState.QUEUED.value}],
    )


def scan_active() -> Query:
    """Every active task's document, across partitions: the repair only."""
    return Query(
        "SELECT * FROM c WHERE c.type = @type AND c.state IN (@state0, @state1)",
        [
            {"name": "@type", "value": "task"},
            {"name": "@state0", "value": TaskState.DISPATCHING.value},
            {"name": "@state1", "value": TaskState.RUNNING.value},
        ],
    )


def scan_open_ranges() -> Query:
    """Every open range's document, across partitions: the repair only."""
    return Query(
        "SELECT * FROM c WHERE c.type = @type AND c.open = true",
        [{"name": "@type", "value": "range"}],
    )


CROSS_PARTITION = ("scan_queued", "scan_active", "scan_open_ranges")
"""The index's queries that read every partition of ``jobs``: the repair's, never a hot path."""
