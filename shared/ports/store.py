"""The Store port: where jobs, tasks, nodes, node groups and tokens live.

The model is Cosmos DB's: documents with etags. A job and its tasks share
one partition (the job id), so :meth:`Store.commit` can write a job and some
of its tasks atomically (a Cosmos transactional batch; one SQLite
transaction). Nodes are separate documents written one at a time.

Guarantees every adapter gives (the contract suite in
``tests/contract/test_store_*.py`` checks them):

- Writes are optimistic: an object carries the etag it was read with; a
  write whose etag no longer matches raises :class:`shared.errors.Conflict`
  and changes nothing. On success each written object gets its new etag.
- ``commit`` is all-or-nothing.
- ``add_job`` may write a job in parts (Cosmos: batches of one partition, 100 documents
  and 2 MB each), but the job is *visible* only after one final write: until then, and
  forever if a crash stops it half-way, nothing of it is returned by ``get_job``,
  ``list_jobs``, ``queued_tasks``, ``open_ranges`` or ``active_tasks``, and
  :meth:`Store.purge_unfinished_jobs` deletes what a crash left.
- Sizes: no stored document is over :data:`MAX_DOCUMENT_BYTES` and no ``commit`` over
  :data:`MAX_BATCH_BYTES` (Cosmos's limits, measured by :func:`stored_size`; :mod:`shared.ports.storelimits`); both are
  refused with ValueError before anything is written, by every adapter.
- Reads return copies: changing a returned object changes nothing stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from datetime import datetime

from shared.domain.cluster import Meta, Node, NodeGroup, Principal
from shared.domain.hosts import Holding, holding_of
from shared.domain.idempotency import KeyRecord
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.domain.taskrange import TaskRange
from shared.ports.storelimits import (  # the limits every adapter enforces; names kept here
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_DOCUMENT_BYTES,
    BatchTooLarge,
    check_batch,
    check_size,
    json_size,
    size_bound,
    stored_size,
)

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_BYTES",
    "MAX_DOCUMENT_BYTES",
    "BatchTooLarge",
    "Store",
    "check_batch",
    "check_size",
    "json_size",
    "size_bound",
    "stored_size",
]


class Store(ABC):
    add_job_fault: Callable[[int], None] | None = None
    """Fault switch for the contract suite: ``add_job`` calls it after each part it has
    written, with the number of documents written so far. A test raises from it to crash
    ``add_job`` between its parts (a BaseException that is not an Exception runs no
    clean-up, like a killed process)."""

    # --- jobs and tasks -------------------------------------------------

    @abstractmethod
    def next_job_id(self) -> int:
        """A new job id, unique and increasing (1, 2, 3, ...)."""

    @abstractmethod
    def add_job(self, job: Job, tasks: Sequence[Task], ranges: Sequence[TaskRange] = ()) -> None:
        """Store a new job with its single tasks and its sweeps' ranges, any number of them.

        All or nothing *as seen by readers*: an adapter may write the parts in several
        requests, but the job becomes visible in one final write, and on an error it
        deletes what it wrote. A crash between the parts leaves an invisible job that no
        read returns and :meth:`purge_unfinished_jobs` deletes.

        Raises Conflict if the job id exists (visible or not), ValueError if a task or
        range belongs to another job, an id repeats, or a document is over
        :data:`MAX_DOCUMENT_BYTES` (nothing is written then).
        """

    @abstractmethod
    def purge_unfinished_jobs(self, older_than: datetime) -> int:
        """Delete the jobs whose ``add_job`` never made them visible (it crashed half-way)
        submitted before ``older_than``, with all their parts; the number of jobs deleted.

        Pass a time well before any ``add_job`` still running could have started: an
        ``add_job`` whose job is purged under it fails with Conflict, never half-stored.
        """

    def purge_unfinished_job(self, job_id: int) -> bool:
        """:meth:`purge_unfinished_jobs` of one job of any age (False: visible or absent), for
        the owner of its id (a taken-over idempotency key); SQLite never has one."""
        return False

    @abstractmethod
    def get_job(self, job_id: int) -> Job:
        """The job with its counts (task_counts, steps) summing every committed delta
        (see :meth:`commit`); the copy remembers what it was read as (Job.stored), so a
        commit can tell a counts-only change. Raises NotFound."""

    def fold_counts(self) -> int:
        """Fold the count deltas that counts-only commits left beside job documents into
        them (Cosmos: tally documents); the number of jobs folded. Run by the reconciler;
        a fold that meets another writer is skipped. Adapters that apply deltas in place
        (SQLite) have nothing to fold."""
        return 0

    @abstractmethod
    def list_jobs(
        self,
        *,
        states: Collection[JobState] | None = None,
        limit: int = 100,
        before: int | None = None,
        owner: str | None = None,
    ) -> list[Job]:
        """Newest (highest id) first; with ``before``, only ids below it (the next page
        starts before the last id of the previous one: no OFFSET). ``owner``: only that
        user's jobs (exact name), found through an index, never by reading every job."""

    @abstractmethod
    def get_task(self, job_id: int, task_id: int) -> Task:
        """Raises NotFound."""

    @abstractmethod
    def get_tasks(self, job_id: int, task_ids: Collection[int]) -> list[Task]:
        """The tasks of one job with these ids that exist, in id order (one partition read)."""

    @abstractmethod
    def list_tasks(
        self,
        job_id: int,
        *,
        states: Collection[TaskState] | None = None,
        offset: int = 0,
        limit: int = 1000,
        after: int = 0,
    ) -> list[Task]:
        """Stored tasks of one job in task-id order, ids above ``after``, skipping ``offset``."""

    @abstractmethod
    def get_ranges(self, job_id: int) -> list[TaskRange]:
        """The task ranges (sweeps) of one job, by first task id (one partition read)."""

    @abstractmethod
    def open_ranges(self, *, limit: int, exclude_jobs: Collection[int] = ()) -> list[TaskRange]:
        """Ranges with tasks still to create and not canceled, in the scheduling order of
        :meth:`queued_tasks` (priority high first, submit time, job id, first task id),
        leaving out the ranges of ``exclude_jobs``."""

    @abstractmethod
    def queued_tasks(self, *, limit: int, exclude_jobs: Collection[int] = ()) -> list[Task]:
        """Queued tasks of all jobs in scheduling order: priority (high first), then
        submit time, then job id, then task id; leaving out the tasks of ``exclude_jobs``."""

    @abstractmethod
    def active_tasks(self, *, node: str | None = None) -> list[Task]:
        """Tasks that hold cores (Dispatching or Running), of one node or all."""

    def holdings(self) -> list[Holding]:
        """What every active task holds and until when (:class:`Holding`), for the scheduler
        pass: the same facts as :meth:`active_tasks`, without whole documents. Adapters may
        read them more cheaply; this default derives them from the documents."""
        return [holding_of(t) for t in self.active_tasks()]

    @abstractmethod
    def commit(
        self,
        *,
        job: Job | None = None,
        tasks: Sequence[Task] = (),
        ranges: Sequence[TaskRange] = (),
    ) -> None:
        """Write one job and/or some of its tasks and ranges atomically, checking every etag.

        A task or range whose etag is None is created (a task of a range coming into being, a
        range cut off another: shared.domain.rangecut; Conflict if it exists); every other
        document is replaced and must exist. All documents
        must belong to one job, each at most once, at most MAX_BATCH in all and
        MAX_BATCH_BYTES together, none over MAX_DOCUMENT_BYTES (ValueError otherwise). Raises Conflict (nothing written) if any etag is stale or any document
        to replace is missing.

        **The job's counts move as deltas.** A job's task_counts and steps change with every
        task transition; the job document changes only when the job itself does:

        - A job that changed only in its counts since it was read (the adapter compares a
          digest of its other fields taken at the read, :meth:`Job.counts_only`; never the
          caller's word) has its delta (:meth:`Job.counts_delta`) *added* to the stored
          counts. The job's etag is neither checked nor changed; two commits made from the
          same read, for different tasks, both succeed and their counts add up (the tasks'
          own etags still guard the tasks). Cosmos DB writes the delta as a tally document
          in the batch; SQLite adds it in the transaction.
        - A job whose other fields changed (state, priority, hold, error, times...), or
          whose delta takes tasks out of an ended state (a rerun), is written under its
          etag (Conflict if stale), with the stored counts plus its delta: deltas others
          committed meanwhile are kept.

        Why decisions that the job's etag used to serialize are still right (a stale
        read's counts can only make a decision more conservative, never wrong):

        - Settling (all tasks ended -> Finished/Failed/Canceled): an ended task leaves its
          ended state only by a rerun, whose commit checks and changes the job's etag; so
          counts that said "all ended" at a read still do at the etag-checked settling
          write, or that write conflicts. Two last task ends committed side by side each
          see the other as not ended: each use case that ends tasks with a counts-only
          commit re-reads the job and settles it if due (etag-checked; a Conflict is
          retried), and the reconciler settles any Queued/Running job whose counts say
          every task ended (tests/test_job_counts.py).
        - Task dependencies (steps): a step's ``left`` only falls and ``failed`` only rises
          without a rerun, so a stale read keeps a dependent waiting a little longer, never
          starts it early. A failure is undone only by a rerun (etag-checked), committed
          before the dependents it brings back; the doom rule reads a chunk's tasks before
          its job, so a dependent read Queued again is judged by a job that shows its
          prerequisite rerun, and one read before is guarded by its own etag
          (shared/usecases/dependents.py, taskdeps.py).
        - maxConcurrent: counted from the active tasks' documents (holdings) by the one
          scheduler pass that may start tasks, never from the job's counts.
        - Cancel and hold: cancel_job writes Canceling under the etag, then cancels the
          queued tasks and ranges, then the active ones; a dispatch committed from a read
          taken before (counts-only, so not refused by the job's etag) either conflicts on
          its task's or range's etag or has made the task active before that last scan,
          which cancels it. The scheduler re-reads the job just before each commit and
          places nothing for a job held or not Queued/Running, so a hold is missed only by
          a commit already in flight (milliseconds), as it would be by any dispatch sent
          a moment earlier.
        """

    # --- nodes ----------------------------------------------------------

    @abstractmethod
    def get_node(self, name: str) -> Node:
        """Raises NotFound."""

    @abstractmethod
    def list_nodes(self) -> list[Node]:
        """By name."""

    @abstractmethod
    def put_node(self, node: Node) -> None:
        """Create (etag None; Conflict if the name exists) or replace (etag must match)."""

    @abstractmethod
    def delete_node(self, node: Node) -> None:
        """Delete (etag must match). Raises NotFound / Conflict."""

    # --- node groups ------------------------------------------------------

    @abstractmethod
    def list_groups(self) -> list[NodeGroup]:
        """By name."""

    @abstractmethod
    def put_group(self, group: NodeGroup) -> None:
        """Create or replace (same etag rules as put_node). Names match whatever the case:
        a create is a Conflict if a group of the name in any spelling exists, atomically (of
        concurrent creates of ``Rg0`` and ``rG0`` one wins, the others get Conflict)."""

    @abstractmethod
    def delete_group(self, group: NodeGroup) -> None:
        """Delete the group as read (etag must match: Conflict if it changed since, NotFound
        if it is gone). Its nodes and jobs are the caller's to check first; once deleted, a
        group of the name in any spelling may be created again."""

    # --- meta -------------------------------------------------------------

    @abstractmethod
    def get_meta(self, key: str) -> Meta:
        """A named document of the control plane's own state. Raises NotFound."""

    @abstractmethod
    def put_meta(self, meta: Meta) -> None:
        """Create (etag None; Conflict if it exists) or replace (etag must match).
        ValueError if it is over MAX_DOCUMENT_BYTES (like a node or a group)."""

    # --- tokens -----------------------------------------------------------

    @abstractmethod
    def add_token(self, token_sha256: str, principal: Principal) -> None:
        """Remember a token by its SHA-256 hex digest (never the token itself). A user's
        role is decided by its first token: Conflict if the name has tokens of another role,
        atomically (of concurrent adds of one name with different roles, one role wins and
        the others get Conflict; adds with the same role all succeed)."""

    @abstractmethod
    def find_token(self, token_sha256: str) -> Principal | None:
        """The principal of a token digest, or None."""

    @abstractmethod
    def list_tokens(self) -> list[tuple[str, Principal]]:
        """Every token digest and its principal (for ``hpc user list``; a few per user)."""

    @abstractmethod
    def remove_token(self, token_sha256: str) -> bool:
        """Forget a token digest (it no longer authenticates); False if it was unknown. Once
        a user's last token is gone, its name may be added again with another role."""

    # --- idempotency keys -------------------------------------------------

    @abstractmethod
    def get_idempotency_key(self, owner: str, key: str) -> KeyRecord | None:
        """``owner``'s ``key`` or None; one past ``expires`` may be returned (``decide`` forgets it)."""

    @abstractmethod
    def put_idempotency_key(self, record: KeyRecord) -> None:
        """Create (etag None: Conflict if the owner's key exists; one of concurrent creates
        wins) or replace (etag must match, else Conflict); ValueError over MAX_DOCUMENT_BYTES.
        Gone after ``expires`` (Cosmos: its ``ttl``; SQLite: later creates delete it)."""

    @abstractmethod
    def delete_idempotency_key(self, record: KeyRecord) -> None:
        """Delete as read (etag must match: Conflict if changed); one already gone is fine."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
