"""The Store port: where jobs, tasks, nodes, node groups and tokens live.

The model is Cosmos DB's: documents with etags. A job and its tasks share
one partition (the job id), so :meth:`Store.commit` can write a job and some
of its tasks atomically (a Cosmos transactional batch; one SQLite
transaction). Nodes are separate documents written one at a time.

Guarantees every adapter gives (the contract suite in
``tests/contract/test_store_contract.py`` checks them):

- Writes are optimistic: an object carries the etag it was read with; a
  write whose etag no longer matches raises :class:`shared.errors.Conflict`
  and changes nothing. On success each written object gets its new etag.
- ``commit`` is all-or-nothing.
- Reads return copies: changing a returned object changes nothing stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence

from shared.domain.models import Job, Meta, Node, NodeGroup, Principal, Task
from shared.domain.states import JobState, TaskState

MAX_BATCH = 100
"""Most documents one ``commit`` writes (Cosmos's transactional batch limit)."""


class Store(ABC):
    # --- jobs and tasks -------------------------------------------------

    @abstractmethod
    def next_job_id(self) -> int:
        """A new job id, unique and increasing (1, 2, 3, ...)."""

    @abstractmethod
    def add_job(self, job: Job, tasks: Sequence[Task]) -> None:
        """Store a new job with all its tasks, atomically: on any error nothing is stored.

        Raises Conflict if the job id exists, ValueError if a task belongs to
        another job or a task id repeats. Any number of tasks (adapters
        that batch in 100s write the job document last, so a partial write
        is never visible as a job).
        """

    @abstractmethod
    def get_job(self, job_id: int) -> Job:
        """Raises NotFound."""

    @abstractmethod
    def list_jobs(
        self, *, states: Collection[JobState] | None = None, limit: int = 100
    ) -> list[Job]:
        """Newest (highest id) first."""

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
    ) -> list[Task]:
        """Tasks of one job in task-id order."""

    @abstractmethod
    def queued_tasks(self, *, limit: int) -> list[Task]:
        """Queued tasks of all jobs in scheduling order: priority (high first), then
        submit time, then job id, then task id."""

    @abstractmethod
    def active_tasks(self, *, node: str | None = None) -> list[Task]:
        """Tasks that hold cores (Dispatching or Running), of one node or all."""

    @abstractmethod
    def commit(self, *, job: Job | None = None, tasks: Sequence[Task] = ()) -> None:
        """Write one job and/or some of its tasks atomically, checking every etag.

        All tasks must belong to ``job`` (when given) or to one job, each task
        at most once, at most MAX_BATCH documents in all (ValueError otherwise).
        Raises Conflict (nothing written) if any etag is stale or any document
        is missing.
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
        """Create or replace (same etag rules as put_node)."""

    # --- meta -------------------------------------------------------------

    @abstractmethod
    def get_meta(self, key: str) -> Meta:
        """A named document of the control plane's own state. Raises NotFound."""

    @abstractmethod
    def put_meta(self, meta: Meta) -> None:
        """Create (etag None; Conflict if it exists) or replace (etag must match)."""

    # --- tokens -----------------------------------------------------------

    @abstractmethod
    def add_token(self, token_sha256: str, principal: Principal) -> None:
        """Remember a token by its SHA-256 hex digest (never the token itself)."""

    @abstractmethod
    def find_token(self, token_sha256: str) -> Principal | None:
        """The principal of a token digest, or None."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def check_batch(job: Job | None, tasks: Sequence[Task]) -> None:
    """``commit``'s preconditions: one job's documents, each once, at most MAX_BATCH."""
    size = len(tasks) + (job is not None)
    if size > MAX_BATCH:
        raise ValueError(f"commit writes at most {MAX_BATCH} documents, got {size}")
    job_ids = {t.job_id for t in tasks} | ({job.id} if job is not None else set())
    if len(job_ids) > 1:
        raise ValueError(f"commit writes one job's documents, got jobs {sorted(job_ids)}")
    if len({t.id for t in tasks}) != len(tasks):
        raise ValueError("commit got the same task twice")
