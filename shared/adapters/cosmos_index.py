"""The index of the Cosmos DB Store's hot paths: keeping its pointers, and reading through them.

Pointers and verdicts are in :mod:`shared.adapters.cosmos_index_docs`; docs/cosmos.md
("How the hot paths are found") says what each read costs. The ``jobs`` container stays
the truth; a pointer may be extra (readers skip it) but is never missing for a task that
is Queued or active or a range that is open, because of the order of the writes:

- **add before**: a commit or ``add_job`` writes the pointers its new states need before
  its batch (so a crash between the two leaves an extra pointer, never a missing one),
  never over the pointer of a later period (a writer whose read is stale must not undo
  the pointer of the version that beat it: :meth:`Pointers._upsert`);
- **remove after, conditionally**: after a commit that took a task out of Queued or out
  of active (or closed a range), its old pointer is deleted only if it still describes the
  period that ended (:func:`~shared.adapters.cosmos_index_docs.judge_task`), under the
  etag it was read with: a writer that re-queued or re-dispatched the task upserted a newer
  pointer first, which that delete can never remove;
- **repair** (:meth:`CosmosIndex.repair`, from each reconciler run's purge): one scan of
  ``jobs`` across partitions, level-triggered: creates missing pointers, deletes over
  ones and ahead ones older than :data:`AHEAD_GRACE_S`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosHttpResponseError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_index_docs as ix
from shared.adapters.cosmos_pointers import Connection, Pointers, Taken
from shared.domain.hosts import Holding
from shared.domain.models import Task
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict

log = logging.getLogger(__name__)

AHEAD_GRACE_S = 600.0
"""Age after which the repair deletes an ahead pointer (its writer's commit failed or
crashed): far longer than any writer takes between its upsert and its batch."""

REPAIR_INTERVAL_S = 600.0
"""The repair scans every Queued task's order keys: at most this often, from the purge."""

ROUNDS = 4
"""Queries at most of one queue read that keeps finding pointers it cannot use."""

MEMO_SIZE = 100_000
"""Versions remembered (what pointers a task or range version implied), about 30 MB."""

PER_JOB_QUERY = 2
"""More tasks of one job than this in a read are fetched by one query in its partition."""


@dataclass
class Plan:
    """What a commit must do to the index after its batch succeeded (and undo if not)."""

    removals: list[tuple[str, Task]] = field(default_factory=list)
    closed: list[TaskRange] = field(default_factory=list)
    new_active: list[tuple[Task, str]] = field(default_factory=list)
    """Active pointers this commit created (its task had none): (task, pointer etag)."""


class CosmosIndex(Pointers):
    """The ``index`` container of one store: which pointers to keep, and reads through them."""

    def __init__(self, conn: Connection, container: ContainerProxy) -> None:
        super().__init__(conn, container)
        self._memo: dict[tuple[Any, ...], dict[str, str]] = {}
        self._last_repair = float("-inf")
        self.grace_s = AHEAD_GRACE_S
        self.repair_interval_s = REPAIR_INTERVAL_S
        self.fault: Callable[[str], None] | None = None
        """Test switch: called after a commit's pointers are upserted, before its batch."""

    # --- what each version read implied ---------------------------------------------

    def _remember(self, key: tuple[Any, ...], value: dict[str, str]) -> None:
        with self._lock:
            if len(self._memo) >= MEMO_SIZE:
                for old in list(self._memo)[: MEMO_SIZE // 2]:
                    del self._memo[old]
            self._memo[key] = value

    def _recalled(self, key: tuple[Any, ...]) -> dict[str, str] | None:
        with self._lock:
            return self._memo.get(key)

    def load_task(self, doc: dict[str, Any]) -> Task:
        """A task from its document, remembering which pointers that version implied."""
        task = docs.load(Task, doc)
        self.remember([task])
        return task

    def load_range(self, doc: dict[str, Any]) -> TaskRange:
        r = docs.load(TaskRange, doc)
        self.remember([], [r])
        return r

    def remember(self, tasks: Iterable[Task], ranges: Iterable[TaskRange] = ()) -> None:
        for t in tasks:
            self._remember(("t", t.job_id, t.id, t.etag), ix.summary(ix.task_pointers(t)))
        for r in ranges:
            self._remember(("r", r.job_id, r.first_id, r.etag), _range_summary(r))

    # --- writes -------------------------------------------------------------------

    def before_add_job(self, tasks: Sequence[Task], ranges: Sequence[TaskRange]) -> list[dict]:
        """Add before: create the pointers of a new job's Queued or active tasks and open
        ranges (created, not upserted: a pointer already there means the job id is taken,
        and another job's pointers must not be overwritten). The pointers, with etags."""
        unique = {(p["pk"], p["id"]): p for t in tasks for p in ix.task_pointers(t).values()}
        unique |= {("r", p["id"]): p for p in (ix.range_pointer(r, "") for r in ranges if r.open)}
        new = list(unique.values())  # (a repeated id is add_job's ValueError, raised next)
        made: list[dict] = []
        try:
            for key, etag in self._create_all(new).items():
                made.append({"pk": key[0], "id": key[1], "_etag": etag})
        except Taken as taken:
            made = [{"pk": k[0], "id": k[1], "_etag": e} for k, e in taken.written.items()]
            self.undo_add_job(made)
            raise Conflict(
                f"job {tasks[0].job_id if tasks else ranges[0].job_id}, or tasks of it, "
                "already stored"
            ) from None
        return made

    def forget_job(self, job_id: int) -> None:
        """Delete every pointer of a job the purge claimed (a crashed ``add_job`` left them;
        no writer can show that job any more, so they go unconditionally)."""
        for pk in (ix.QUEUE, ix.ACTIVE):
            for p in self._query(ix.pointers_of_job(pk, job_id)):
                self._drop(pk, {"id": p["id"], "_etag": p["_etag"]})

    def undo_add_job(self, made: list[dict]) -> None:
        """Delete the pointers an ``add_job`` that failed created (those still unchanged)."""
        for p in made:
            try:
                self._drop(p["pk"], p)
            except CosmosHttpResponseError:
                log.exception("index: could not delete pointer %s/%s", p["pk"], p["id"])

    def before_commit(self, tasks: Sequence[Task], ranges: Sequence[TaskRange]) -> Plan:
        """Add before: upsert the pointers the new versions need and the old ones lacked (or
        had otherwise); say what to remove once the batch succeeded."""
        plan = Plan()
        ups: list[dict] = []
        for t in tasks:
            new = ix.task_pointers(t)
            old = self._recalled(("t", t.job_id, t.id, t.etag)) if t.etag is not None else {}
            now = ix.summary(new)
            changed = [pk for pk in new if old is None or old.get(pk) != now[pk]]
            ups += [new[pk] for pk in changed]
            if ix.ACTIVE in changed and (old is None or ix.ACTIVE not in old):
                plan.new_active.append((t, ""))
            had = set(old) if old is not None else {ix.QUEUE, ix.ACTIVE}
            plan.removals += [(pk, t) for pk in sorted(had - set(new))]
        for r in ranges:
            old_r = self._recalled(("r", r.job_id, r.first_id, r.etag))
            if r.open and old_r != _range_summary(r):
                ups.append(ix.range_pointer(r, r.etag or ""))
            elif not r.open and r.etag is not None and (old_r is None or json.loads(old_r["open"])):
                plan.closed.append(r)
        etags = self._upsert(ups)
        plan.new_active = [
            (t, etags.get((ix.ACTIVE, ix.task_id(t.job_id, t.id)), "")) for t, _ in plan.new_active
        ]
        if self.fault is not None:
            self.fault("commit")
        return plan

    def after_commit(self, plan: Plan, tasks: Sequence[Task], ranges: Sequence[TaskRange]) -> None:
        """Remove after: the pointers of periods this commit ended, if still theirs. Best
        effort: the commit stands; a pointer left over is skipped by readers and repaired."""
        try:
            by_pk: dict[str, list[Task]] = defaultdict(list)
            for pk, t in plan.removals:
                by_pk[pk].append(t)
            for pk, some in by_pk.items():
                ids = {ix.task_id(t.job_id, t.id): t for t in some}
                for p in self._query(ix.pointers(pk, sorted(ids))):
                    if ix.judge_task(pk, p, ids[p["id"]]) == ix.OVER:
                        self._drop(pk, p)
            for r in plan.closed:
                self._drop_if_over_range(r.job_id, r.first_id)
        except Exception:
            log.exception("index: could not remove the pointers of a commit (repair will)")
        self.remember(tasks, ranges)

    def after_failure(self, plan: Plan) -> None:
        """A commit refused after its upserts: delete the active pointers it created, unless
        the task is now active in that attempt anyway (so a scheduler's lost race does not
        leave cores counted busy by :meth:`holdings` until the repair)."""
        for t, etag in plan.new_active:
            if not etag:
                continue
            try:
                task = self._task(t.job_id, t.id)
                if ix.judge_task(ix.ACTIVE, {"attempt": t.attempt}, task) != ix.CURRENT:
                    self._drop(ix.ACTIVE, {"id": ix.task_id(t.job_id, t.id), "_etag": etag})
            except Exception:
                log.exception("index: could not undo the active pointer of task %s", t.key)

    def _drop_if_over_range(self, job_id: int, first_id: int) -> None:
        pointer = self._conn._read(self._container, ix.range_id(job_id, first_id), ix.QUEUE)
        if (
            pointer is not None
            and ix.judge_range(pointer, self._range(job_id, first_id)) == ix.OVER
        ):
            self._drop(ix.QUEUE, pointer)

    # --- reads ---------------------------------------------------------------------

    def _task(self, job_id: int, tid: int) -> Task | None:
        doc = self._conn._read(self._conn._jobs, docs.task_doc_id(tid), job_id)
        return None if doc is None else self.load_task(doc)

    def _range(self, job_id: int, first_id: int) -> TaskRange | None:
        doc = self._conn._read(self._conn._jobs, docs.range_doc_id(first_id), job_id)
        return None if doc is None else self.load_range(doc)

    def _fetch(self, kind: str, pointers: Sequence[dict]) -> list[Any]:
        """The tasks (ranges) the pointers name, in parallel: by point reads (1 RU each), or
        for a job with more than :data:`PER_JOB_QUERY` tasks named, one query in its
        partition (one request instead of many; a window often holds a sweep's tasks)."""
        if kind == "range":
            return self._map(lambda p: self._range(int(p["jobId"]), int(p["taskId"])), pointers)
        by_job: dict[int, list[int]] = defaultdict(list)
        for p in pointers:
            by_job[int(p["jobId"])].append(int(p["taskId"]))
        groups = [
            (job, ids[i : i + 1000])  # (a query names at most 1,000 ids: docs.get_tasks)
            for job, ids in by_job.items()
            if len(ids) > PER_JOB_QUERY
            for i in range(0, len(ids), 1000)
        ]
        groups += [
            (job, [i]) for job, ids in by_job.items() if len(ids) <= PER_JOB_QUERY for i in ids
        ]

        def get(group: tuple[int, list[int]]) -> list[Task]:
            job, ids = group
            if len(ids) == 1:
                task = self._task(job, ids[0])
                return [] if task is None else [task]
            found = self._conn._query(self._conn._jobs, docs.get_tasks(job, sorted(ids)))
            return [self.load_task(d) for d in found]

        got = {(t.job_id, t.id): t for some in self._map(get, groups) for t in some}
        return [got.get((int(p["jobId"]), int(p["taskId"]))) for p in pointers]

    def queued(self, kind: str, limit: int, exclude_jobs: Collection[int]) -> list[Any]:
        """``queued_tasks`` / ``open_ranges``: the queue partition's first pointers in
        scheduling order, their records read by id, kept if really Queued (open) and visible.
        Pointers it cannot use widen the next query (at most :data:`ROUNDS`); over ones are
        deleted on the way."""
        if limit <= 0:
            return []
        skip, bad = set(exclude_jobs), 0
        seen: set[str] = set()
        kept: dict[str, Any] = {}
        for _ in range(ROUNDS):
            top = limit + bad
            found = self._query(ix.queue(kind, top, skip))
            fresh = [p for p in found if p["id"] not in seen]
            seen |= {p["id"] for p in fresh}
            shown = self._conn._visible.of({int(p["jobId"]) for p in fresh})
            hidden = {int(p["jobId"]) for p in fresh} - shown
            skip |= hidden  # jobs add_job has not shown (or a crash left): not even read
            usable = [p for p in fresh if int(p["jobId"]) in shown]
            unusable = bool(hidden)
            for p, record in zip(usable, self._fetch(kind, usable), strict=True):
                if kind == "task":
                    verdict = ix.judge_task(ix.QUEUE, p, record)
                else:
                    verdict = ix.judge_range(p, record)
                if verdict == ix.CURRENT:
                    kept[p["id"]] = record
                    continue
                bad, unusable = bad + 1, True
                if verdict == ix.OVER:
                    self._drop_quietly(ix.QUEUE, p)
            if not unusable or len(found) < top:
                break
        return sorted(kept.values(), key=ix.order_key)[:limit]

    def active_tasks(self, node: str | None) -> list[Task]:
        """The active partition's pointers (of one node: those whose task runs there), the
        tasks read by id, kept if active in the pointer's attempt and visible."""
        found = self._query(ix.active(node))
        if node is not None:
            found = [p for p in found if p.get("node") == node]
        shown = self._conn._visible.of({int(p["jobId"]) for p in found})
        found = [p for p in found if int(p["jobId"]) in shown]
        out: list[Task] = []
        for p, task in zip(found, self._fetch("task", found), strict=True):
            verdict = ix.judge_task(ix.ACTIVE, p, task)
            if verdict == ix.OVER:
                self._drop_quietly(ix.ACTIVE, p)
            elif verdict == ix.CURRENT and task is not None:
                out.append(task)  # (its node is the pointer's: one attempt, one placement)
        return sorted(out, key=lambda t: (t.node or "", t.job_id, t.id))

    def holdings(self) -> list[Holding]:
        """From the active pointers alone (no point reads): a pointer whose task has ended
        but is not removed yet counts its cores busy until a read or the repair drops it."""
        found = self._query(ix.active(None))
        shown = self._conn._visible.of({int(p["jobId"]) for p in found})
        return [ix.holding(p) for p in found if int(p["jobId"]) in shown]

    # --- repair ----------------------------------------------------------------------

    def repair_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_repair >= self.repair_interval_s:
            self._last_repair = now
            self.repair()

    def repair(self) -> dict[str, int]:
        """Level-triggered: compare every pointer with one scan of the Queued and active
        tasks and open ranges (across partitions: not a hot path) and fix the difference.
        Creates a missing pointer (``create``: one written meanwhile wins), deletes over
        pointers and ahead ones older than ``grace_s``; how many of each."""
        have = {
            (p["pk"], p["id"]): p
            for pk in (ix.QUEUE, ix.ACTIVE)
            for p in self._query(ix.pointers(pk))
        }
        jobs = self._conn._jobs
        want: dict[tuple[str, str], dict] = {}
        for q in self._conn._query(jobs, ix.scan_queued()):
            job, tid = int(q["jobId"]), int(q["taskId"])
            p = ix.queue_pointer(
                job, tid, int(q["priority"]), int(q["submitTime"]), int(q.get("attempt") or 0)
            )
            want[(ix.QUEUE, p["id"])] = p
        for d in self._conn._query(jobs, ix.scan_active()):
            p = ix.active_pointer(docs.load(Task, d))
            want[(ix.ACTIVE, p["id"])] = p
        for d in self._conn._query(jobs, ix.scan_open_ranges()):
            p = ix.range_pointer(docs.load(TaskRange, d), str(d["_etag"]))
            want[(ix.QUEUE, p["id"])] = p
        shown = self._conn._visible.of({int(p["jobId"]) for p in want.values()})
        counts = {"created": 0, "deleted": 0}
        for key, p in want.items():
            if key not in have and int(p["jobId"]) in shown and self._create(p):
                counts["created"] += 1
        oldest = time.time() - self.grace_s
        for key, p in have.items():
            if key in want and _content(p) == _content(want[key]):
                continue
            verdict = self._judge_now(p)
            old_ahead = verdict == ix.AHEAD and float(p.get("_ts", 0)) <= oldest
            if not (verdict == ix.OVER or old_ahead):
                continue
            if key in want:  # another period's pointer where the scanned one is due
                if self._replace(p, want[key]):
                    counts["created"] += 1
            elif self._drop(p["pk"], p):
                counts["deleted"] += 1
        if counts["created"] or counts["deleted"]:
            log.warning("index repaired: %(created)d pointers created, %(deleted)d deleted", counts)
        return counts

    def _judge_now(self, p: dict) -> str:
        """A pointer against its record read now (the scan may be behind it)."""
        job, tid = int(p["jobId"]), int(p["taskId"])
        if p["kind"] == "range":
            return ix.judge_range(p, self._range(job, tid))
        return ix.judge_task(p["pk"], p, self._task(job, tid))


def _content(pointer: dict) -> dict:
    return {k: v for k, v in pointer.items() if not k.startswith("_")}


def _range_summary(r: TaskRange) -> dict[str, str]:
    return {"open": json.dumps(r.open), "order": json.dumps(ix.order_key(r))}
