"""The embedded Store's jobs, tasks and task ranges: their reads and their writes.

``add_job`` and ``commit`` are each one transaction, so they are all-or-nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime

from shared.adapters.sqlite_connection import SqliteConnection
from shared.adapters.sqlite_rows import (
    _doc,
    _load,
    _marks,
    _micros,
    _new_etag,
    _range_row,
    _sized_doc,
    _stale,
    _task_row,
)
from shared.adapters.sqlite_schema import (
    _ACTIVE_WHERE,
    _EXCLUDE,
    _INSERT_JOB,
    _INSERT_RANGE,
    _INSERT_TASK,
    _QUEUED_WHERE,
    _UPDATE_JOB,
    _UPDATE_RANGE,
    _UPDATE_TASK,
    JOB_OWNER,
)
from shared.domain.hosts import Holding, Seat
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict, NotFound
from shared.ports.store import check_batch


class SqliteJobs(SqliteConnection):
    """Jobs, tasks and ranges on one SQLite file (the job half of :class:`SqliteStore`)."""

    add_job_fault: Callable[[int], None] | None  # the Store port's test hook (None there)

    # --- jobs and tasks -------------------------------------------------

    def next_job_id(self) -> int:
        with self._transaction() as con:
            rows = con.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'job_id' RETURNING value"
            ).fetchall()
        return int(rows[0][0])

    def add_job(self, job: Job, tasks: Sequence[Task], ranges: Sequence[TaskRange] = ()) -> None:
        if len({t.id for t in tasks}) != len(tasks):
            raise ValueError(f"job {job.id}: task ids must be unique")
        if len({r.first_id for r in ranges}) != len(ranges):
            raise ValueError(f"job {job.id}: range ids must be unique")
        for r in ranges:
            if r.job_id != job.id:
                raise ValueError(f"range {r.key} does not belong to job {job.id}")
        etag = _new_etag()
        job_doc = _sized_doc(job)
        range_rows = [_range_row(r, etag) for r in ranges]
        fault = self.add_job_fault

        def task_rows() -> Iterator[tuple]:
            for task in tasks:
                if task.job_id != job.id:
                    raise ValueError(f"task {task.key} does not belong to job {job.id}")
                yield _task_row(task, etag)

        try:
            with self._transaction() as con:
                con.executemany(_INSERT_TASK, task_rows())
                if fault is not None:
                    fault(len(tasks))
                con.executemany(_INSERT_RANGE, range_rows)
                if fault is not None:
                    fault(len(tasks) + len(ranges))
                # The job last, as the port asks (no difference inside one transaction).
                con.execute(
                    _INSERT_JOB,
                    (job.id, job.state.value, _micros(job.submit_time), job_doc, etag),
                )
        except sqlite3.IntegrityError:
            if self._exists("SELECT 1 FROM jobs WHERE id = ?", (job.id,)):
                raise Conflict(f"job {job.id} already exists") from None
            raise Conflict(f"tasks of job {job.id} are already stored") from None
        job.etag = etag
        job.stored()
        for task in tasks:
            task.etag = etag
        for r in ranges:
            r.etag = etag

    def purge_unfinished_jobs(self, older_than: datetime) -> int:
        return 0  # add_job is one transaction: a crash leaves nothing to purge

    def get_job(self, job_id: int) -> Job:
        row = self._con().execute("SELECT doc, etag FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id} does not exist")
        return _loaded_job(row)

    def list_jobs(
        self,
        *,
        states: Collection[JobState] | None = None,
        limit: int = 100,
        before: int | None = None,
        owner: str | None = None,
    ) -> list[Job]:
        if limit <= 0 or (states is not None and not states):
            return []
        where = "id < ?"
        params: list[object] = [before if before is not None else 1 << 62]
        if states is not None:
            where += f" AND state IN ({_marks(states)})"
            params += [JobState(s).value for s in states]
        if owner is not None:  # the jobs_by_owner index: its expression, spelled once
            where += f" AND {JOB_OWNER} = ?"
            params.append(owner)
        sql = f"SELECT doc, etag FROM jobs WHERE {where} ORDER BY id DESC LIMIT ?"
        return [_loaded_job(row) for row in self._con().execute(sql, [*params, limit])]

    def get_task(self, job_id: int, task_id: int) -> Task:
        row = (
            self._con()
            .execute("SELECT doc, etag FROM tasks WHERE job_id = ? AND id = ?", (job_id, task_id))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"task {job_id}.{task_id} does not exist")
        return _load(Task, row)

    def get_tasks(self, job_id: int, task_ids: Collection[int]) -> list[Task]:
        ids = sorted(set(task_ids))
        out: list[Task] = []
        for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[i : i + 500]
            rows = self._con().execute(
                f"SELECT doc, etag FROM tasks WHERE job_id = ? AND id IN ({_marks(chunk)}) ORDER BY id",
                [job_id, *chunk],
            )
            out += [_load(Task, row) for row in rows]
        return out

    def list_tasks(
        self,
        job_id: int,
        *,
        states: Collection[TaskState] | None = None,
        offset: int = 0,
        limit: int = 1000,
        after: int = 0,
    ) -> list[Task]:
        if limit <= 0 or (states is not None and not states):
            return []
        where = "job_id = ? AND id > ?"
        params: list[object] = [job_id, after]
        if states is not None:
            where += f" AND state IN ({_marks(states)})"
            params += [TaskState(s).value for s in states]
        sql = f"SELECT doc, etag FROM tasks WHERE {where} ORDER BY id LIMIT ? OFFSET ?"
        rows = self._con().execute(sql, [*params, limit, max(offset, 0)])
        return [_load(Task, row) for row in rows]

    def get_ranges(self, job_id: int) -> list[TaskRange]:
        rows = self._con().execute(
            "SELECT doc, etag FROM ranges WHERE job_id = ? ORDER BY first_id", (job_id,)
        )
        return [_load(TaskRange, row) for row in rows]

    def open_ranges(self, *, limit: int, exclude_jobs: Collection[int] = ()) -> list[TaskRange]:
        if limit <= 0:
            return []
        rows = self._con().execute(
            f"SELECT doc, etag FROM ranges WHERE open = 1 {_EXCLUDE} "
            "ORDER BY priority DESC, submit_time, job_id, first_id LIMIT ?",
            (json.dumps(sorted(exclude_jobs)), limit),
        )
        return [_load(TaskRange, row) for row in rows]

    def queued_tasks(self, *, limit: int, exclude_jobs: Collection[int] = ()) -> list[Task]:
        if limit <= 0:
            return []
        rows = self._con().execute(
            f"SELECT doc, etag FROM tasks WHERE {_QUEUED_WHERE} {_EXCLUDE} "
            "ORDER BY priority DESC, submit_time, job_id, id LIMIT ?",
            (json.dumps(sorted(exclude_jobs)), limit),
        )
        return [_load(Task, row) for row in rows]

    def active_tasks(self, *, node: str | None = None) -> list[Task]:
        sql = f"SELECT doc, etag FROM tasks WHERE {_ACTIVE_WHERE}"
        params: tuple = ()
        if node is not None:
            sql, params = sql + " AND node = ?", (node,)
        rows = self._con().execute(sql + " ORDER BY node, job_id, id", params)
        return [_load(Task, row) for row in rows]

    def holdings(self) -> list[Holding]:
        """The active tasks' holdings from a few JSON fields (SQLite's json_extract), not
        whole documents: a pass with 8,000 running tasks reads them ~3x faster."""
        rows = self._con().execute(
            "SELECT job_id, id, node, json_extract(doc, '$.hosts'), json_extract(doc, '$.cores'),"
            " json_extract(doc, '$.incarnation'), json_extract(doc, '$.runtimeLimitS'),"
            " coalesce(json_extract(doc, '$.startTime'), json_extract(doc, '$.dispatchTime')),"
            " json_extract(doc, '$.jobExclusive'), json_extract(doc, '$.minMemoryMb')"
            f" FROM tasks WHERE {_ACTIVE_WHERE} ORDER BY node, job_id, id"
        )
        out = []
        for job_id, task_id, node, hosts, cores, incarnation, limit, since, alone, mb in rows:
            held = tuple(
                Seat(h["node"], h["cores"], h.get("incarnation")) for h in json.loads(hosts or "[]")
            )
            if not held and node is not None:
                held = (Seat(node, cores, incarnation),)
            start = datetime.fromisoformat(since) if since else None
            out.append(Holding(job_id, task_id, held, limit, start, bool(alone), mb))
        return out

    def commit(
        self,
        *,
        job: Job | None = None,
        tasks: Sequence[Task] = (),
        ranges: Sequence[TaskRange] = (),
    ) -> None:
        if job is None and not tasks and not ranges:
            return
        check_batch(job, tasks, ranges)
        etag = _new_etag()
        counts_only = job is not None and job.counts_only()
        with self._transaction() as con:
            if job is not None:
                _write_job(con, job, etag, counts_only=counts_only)
            for r in ranges:
                if r.etag is None:  # a range split off another (shared.domain.rangecut)
                    _insert(con, _INSERT_RANGE, _range_row(r, etag), f"range {r.key}")
                    continue
                cur = con.execute(
                    _UPDATE_RANGE, (*_range_row(r, etag)[2:], r.job_id, r.first_id, r.etag)
                )
                if cur.rowcount != 1:
                    raise _stale(
                        con,
                        f"range {r.key}",
                        "ranges WHERE job_id = ? AND first_id = ?",
                        (r.job_id, r.first_id),
                        r.etag,
                    )
            for task in tasks:
                if task.etag is None:
                    _insert(con, _INSERT_TASK, _task_row(task, etag), f"task {task.key}")
                    continue
                cur = con.execute(
                    _UPDATE_TASK,
                    (
                        task.state.value,
                        task.priority,
                        _micros(task.submit_time),
                        task.node,
                        _doc(task),
                        etag,
                        task.job_id,
                        task.id,
                        task.etag,
                    ),
                )
                if cur.rowcount != 1:
                    raise _stale(
                        con,
                        f"task {task.key}",
                        "tasks WHERE job_id = ? AND id = ?",
                        (task.job_id, task.id),
                        task.etag,
                    )
        if job is not None:
            if not counts_only:
                job.etag = etag
            job.stored()
        for task in tasks:
            task.etag = etag
        for r in ranges:
            r.etag = etag


def _write_job(con: sqlite3.Connection, job: Job, etag: str, *, counts_only: bool) -> None:
    """The job's part of a commit. Counts only: its delta added to the stored counts, the
    etag neither checked nor changed. Otherwise: its fields written under its etag, with
    the stored counts plus its delta (keeping the deltas others committed meanwhile)."""
    delta = job.counts_delta()
    if counts_only and delta.empty:
        return
    row = con.execute("SELECT doc, etag FROM jobs WHERE id = ?", (job.id,)).fetchone()
    if row is None or (not counts_only and row[1] != job.etag):
        raise _stale(con, f"job {job.id}", "jobs WHERE id = ?", (job.id,), job.etag)
    stored = json.loads(row[0])
    if counts_only:
        doc = json.dumps(delta.apply(stored), separators=(",", ":"))
        con.execute("UPDATE jobs SET doc = ? WHERE id = ?", (doc, job.id))
        return
    body = json.loads(_doc(job))
    body["taskCounts"], body["steps"] = stored.get("taskCounts"), stored.get("steps")
    doc = json.dumps(delta.apply(body), separators=(",", ":"))
    cur = con.execute(
        _UPDATE_JOB, (job.state.value, _micros(job.submit_time), doc, etag, job.id, job.etag)
    )
    if cur.rowcount != 1:  # (cannot happen inside the transaction; kept as the guard)
        raise _stale(con, f"job {job.id}", "jobs WHERE id = ?", (job.id,), job.etag)


def _loaded_job(row: tuple[str, str]) -> Job:
    job = _load(Job, row)
    job.loaded(row[0])
    return job


def _insert(con: sqlite3.Connection, sql: str, row: tuple, what: str) -> None:
    """A commit's new document (its etag None): a Conflict, as Cosmos DB's create, if one of
    its key exists already (the whole transaction is then rolled back)."""
    try:
        con.execute(sql, row)
    except sqlite3.IntegrityError:
        raise Conflict(f"{what} already exists; nothing was written") from None
