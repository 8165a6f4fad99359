"""The work's records: Job and Task (a sweep's tasks not created yet:
:mod:`shared.domain.taskrange`; nodes and groups: :mod:`shared.domain.cluster`; the record
base: :mod:`shared.domain.records`).

They are documents (as in Cosmos DB): every record carries an ``etag`` that
the store sets on each write and checks on the next one (optimistic
concurrency). JSON uses camelCase field names, as the HTTP API does.
State changes go through :meth:`Job.move_to` / :meth:`Task.move_to` /
:meth:`Node.move_to`, which consult the one transition table in
:mod:`shared.domain.states`.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel

from shared.domain import counts
from shared.domain.counts import CountsDelta
from shared.domain.records import Record, UtcTime, utcnow
from shared.domain.states import JobState, TaskState, check_transition

PRIORITY_NAMES: dict[str, int] = {
    "Lowest": 0,
    "BelowNormal": 1000,
    "Normal": 2000,
    "AboveNormal": 3000,
    "Highest": 4000,
}
"""HPC Pack's named priorities; any integer 0-4000 is accepted too."""


def _stored_priority(value: Any) -> Any:
    """A fractional priority stored before the API refused it (``PATCH {"priority": 1.5}``
    was once taken) loads rounded, so such a store can be read again."""
    return round(value) if isinstance(value, float) and math.isfinite(value) else value


Priority = Annotated[int, BeforeValidator(_stored_priority)]


class Step(BaseModel):
    """The tasks of one name that others depend on (shared.domain.taskgraph)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    left: int = 0
    """Tasks of the name that have not ended."""
    failed: int = 0
    """Tasks of the name that ended Failed or Canceled."""


class Job(Record):
    id: int
    name: str = ""
    owner: str = "admin"
    state: JobState = JobState.CONFIGURING
    priority: Priority = PRIORITY_NAMES["Normal"]
    node_groups: list[str] = Field(default_factory=list)
    """Nodes of any of these groups may run its tasks; empty means any node."""
    max_retries: int = 3
    """How often a task is requeued after losing its node before it is Failed."""
    max_concurrent: int | None = None
    """At most this many of its tasks run at once (Slurm's --array ...%N)."""
    held: bool = False
    """Held by a user (hpc job hold) until released."""
    exclusive: bool = False
    """Job-level exclusive (HPC Pack's job /exclusive): no other job's task runs on a node
    while one of its tasks does (its own tasks share nodes; shared.domain.jobexclusive).
    Fixed at submit."""
    hold_until: UtcTime | None = None
    """Not scheduled before this time."""
    depends_on: list[int] = Field(default_factory=list)
    """Jobs that must Finish before any of its tasks starts."""
    run_dependents_on_failure: bool = False
    """Run even if a prerequisite Failed or was Canceled (else it is Canceled too)."""
    canceled_for: int | None = None
    """The prerequisite job whose end (Failed or Canceled) canceled this one, so that a
    requeue of that job can name it (:func:`shared.domain.eligibility.left_canceled`);
    cleared when the job is queued again."""
    template: str | None = None
    """The job template whose defaults and limits it was submitted under (None: none)."""
    max_priority: int | None = None
    """Its template's maxPriority at submit: the limit a change of priority keeps if the
    template is deleted (deleting a template does not change jobs already submitted)."""
    task_count: int = 0
    task_counts: dict[TaskState, int] = Field(default_factory=dict)
    """Task state -> number of tasks; moved in the same transaction as the task."""
    steps: dict[str, Step] = Field(default_factory=dict)
    """Per task name that other tasks depend on: how many have not ended, how many failed."""
    runtime_limit: int | None = None
    """Seconds each task may run unless it sets its own (the spec's job-level runtimeLimit,
    after its template's default): kept so that ``hpc job view`` shows it."""
    job_runtime_limit: int | None = None
    """Seconds the whole job may run, from its first task's start (HPC Pack's job RunTime,
    Slurm's --time for a job): past it the reconciler cancels the job with that reason
    (:func:`shared.domain.eligibility.over_time`)."""
    submit_time: UtcTime = Field(default_factory=utcnow)
    start_time: UtcTime | None = None
    end_time: UtcTime | None = None
    error: str | None = None

    _delta: CountsDelta = PrivateAttr(default_factory=CountsDelta)
    """What :meth:`count` moved since the store last loaded or wrote this copy."""
    _read_digest: str | None = PrivateAttr(default=None)
    """:meth:`fields_digest` when the store wrote this copy, or (lazily) when it loaded it."""
    _read_source: str | dict[str, Any] | None = PrivateAttr(default=None)
    """What the store loaded this copy from (JSON text or document body), kept so that the
    digest of the loaded fields is taken only if a commit asks for it, not on every read."""

    def move_to(self, target: JobState, *, now: datetime | None = None) -> None:
        """Change state through the transition table (raises IllegalTransition)."""
        check_transition(self.state, target)
        self.state = target
        now = now or utcnow()
        if target is JobState.RUNNING and self.start_time is None:
            self.start_time = now
        if target in (JobState.FINISHED, JobState.FAILED, JobState.CANCELED):
            self.end_time = now
        if target is JobState.QUEUED:
            self.end_time = None

    def count(self, old: TaskState | None, new: TaskState, n: int = 1, name: str = "") -> None:
        """Move ``n`` tasks (named ``name``) from ``old`` to ``new`` in :attr:`task_counts`,
        and in :attr:`steps` if something depends on that name; the move is also recorded
        as a delta, which is what the store writes (:mod:`shared.domain.counts`)."""
        if n <= 0:
            return
        if old is not None:
            self.task_counts[old] = self.task_counts.get(old, 0) - n
            if self.task_counts[old] <= 0:
                del self.task_counts[old]
        self.task_counts[new] = self.task_counts.get(new, 0) + n
        step = self.steps.get(name)
        if step is not None and old is not None:
            step.left += n * (counts.ended(old) - counts.ended(new))
            step.failed += n * (counts.failed(new) - counts.failed(old))
        self._delta.move(old, new, n, name if step is not None else None)

    # --- for the stores: counts move as deltas (shared.domain.counts) ---------

    def counts_delta(self) -> CountsDelta:
        """What :meth:`count` moved since this copy was loaded or last written."""
        return self._delta

    def fields_digest(self) -> str:
        """A digest of every field but the etag and the counts (task_counts, steps)."""
        text = self.model_dump_json(exclude={"etag", "task_counts", "steps"})
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def stored(self) -> None:
        """The store calls this when it has written this copy: from here on,
        :meth:`counts_only` compares against it and the delta starts empty."""
        self._delta = CountsDelta()
        self._read_digest = self.fields_digest()
        self._read_source = None

    def loaded(self, source: str | dict[str, Any]) -> None:
        """The store calls this when it has read this copy from ``source`` (the JSON text or
        document body it validated): :meth:`counts_only` compares against that. Reads are
        many and commits few, so the digest of ``source`` waits for a commit to ask."""
        self._delta = CountsDelta()
        self._read_digest = None
        self._read_source = source

    def _baseline(self) -> str | None:
        if self._read_digest is None and self._read_source is not None:
            source = self._read_source
            read = (
                Job.model_validate_json(source)
                if isinstance(source, str)
                else Job.model_validate(source)
            )
            self._read_digest = read.fields_digest()
        return self._read_digest

    def counts_only(self) -> bool:
        """Only the counts changed since the store loaded this copy, and no task left an
        ended state: the store may add the delta without checking the job's etag. A copy
        the store never loaded is never counts-only (its write checks the etag)."""
        if self._delta.reopened:
            return False
        baseline = self._baseline()
        return baseline is not None and baseline == self.fields_digest()


class Host(BaseModel):
    """One node a dispatched task holds, and the cores it holds there (granted at dispatch)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    node: str
    cores: int
    incarnation: int | None = None
    """The node's incarnation at dispatch: a later one means the node lost what ran there."""


class LostAttempt(BaseModel):
    """An attempt whose node was lost (unreachable, restarted, stopped) before it reported."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    attempt: int
    node: str
    hosts: list[Host] = Field(default_factory=list)
    """What the attempt held: if its end turns out to be the task's result, the task says
    these hosts again (empty in records from before it was kept: its node's alone)."""
    until: UtcTime | None = None
    """It may still run until then (given up while its agent lives on: a node taken offline
    whose agent has yet to kill it), so the task's next attempt is not started elsewhere
    before, or before this attempt's end is reported (None: it is known not to run)."""
    result: bool = True
    """Its late end may still be the task's result (False: the user asked for a new run
    since, ``hpc task requeue``; its end only lets that run start)."""


class Task(Record):
    job_id: int
    id: int
    """1-based, unique within its job."""
    name: str = ""
    depends_on: list[str] = Field(default_factory=list)
    """Names of tasks of its job that must Finish before it starts (shared.domain.taskgraph)."""
    command: str
    cores: int = 1
    """Cores it needs on each of its nodes (the minimum when it may grow to ``max_cores``)."""
    max_cores: int | None = None
    """It may grow up to this many cores per node when they are free at dispatch."""
    exclusive: bool = False
    """Runs alone on its node(s): placed only on an idle node, and holds all of its cores."""
    nodes: int = 1
    """How many nodes it runs on (all reserved together); the command runs on the first."""
    min_memory_mb: int | None = None
    """Memory (MB) it holds on each of its nodes while active (``minMemoryMb``): consumable,
    as Slurm's ``--mem`` under CR_Core_Memory (shared.domain.memoryfit). None: none, any node."""
    sweep_index: int | None = None
    runtime_limit_s: int | None = None
    """The agent kills it past this many seconds (Failed: "runtime limit H:MM:SS exceeded")."""
    valid_exit_codes: list[int] | None = None
    """Exit codes that count as success (None: only 0)."""
    work_dir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    stdout: str | None = None
    """A file stdout is written to as well, placeholders unexpanded (shared/domain/outputpaths.py)."""
    stderr: str | None = None
    """The same for stderr."""
    state: TaskState = TaskState.QUEUED
    priority: Priority = PRIORITY_NAMES["Normal"]
    """Copied from the job so that the scheduler reads tasks alone."""
    node_groups: list[str] = Field(default_factory=list)
    """Copied from the job."""
    job_exclusive: bool = False
    """Its job's ``exclusive``, copied so that the scheduler reads tasks alone."""
    submit_time: UtcTime = Field(default_factory=utcnow)
    node: str | None = None
    hosts: list[Host] = Field(default_factory=list)
    """Every node the current attempt holds and its granted cores (the first is ``node``)."""
    attempt: int = 0
    """0 on first placement; +1 every time it is requeued. Events name it, so stale ones are ignored."""
    incarnation: int | None = None
    """The node incarnation the current attempt was dispatched to."""
    lost: list[LostAttempt] = Field(default_factory=list)
    """Attempts given up because their node was lost. If one of them turns out to have run to
    its end (its TaskEnded arrives late), that result is kept and the task does not run again."""
    result_attempt: int | None = None
    """The attempt whose ending the task's state, exit code and output come from."""
    requeue_count: int = 0
    """Requeues caused by node loss (bounded by the job's max_retries)."""
    cancel_requested: bool = False
    """A user canceled this task while it ran (``hpc task cancel``): its agent was told to kill
    the attempt, and if the attempt is given up first (its node lost, restarted, taken
    offline) the task ends Canceled rather than running again. A requeue clears it."""
    canceled_for: str | None = None
    """The prerequisite task name whose failure canceled it (it was doomed:
    :func:`shared.domain.taskgraph.failed_prerequisite`); None for any other end. A requeue
    of that prerequisite brings it back (:mod:`shared.domain.lifecycle.dependents`); a task
    a user canceled, or that ended on its own, has none and stays as it is."""
    exit_code: int | None = None
    output: str | None = None
    """The tail of stdout (at most 4,000 characters, as HPC Pack keeps); full output is in the Output store."""
    error: str | None = None
    dispatch_time: UtcTime | None = None
    start_time: UtcTime | None = None
    end_time: UtcTime | None = None

    @property
    def key(self) -> str:
        return f"{self.job_id}.{self.id}"

    def move_to(self, target: TaskState, *, now: datetime | None = None) -> None:
        check_transition(self.state, target)
        self.state = target
        now = now or utcnow()
        if target is TaskState.DISPATCHING:
            self.dispatch_time = now
        elif target is TaskState.RUNNING:
            self.start_time = now
        elif target in (TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELED):
            self.end_time = now
        elif target is TaskState.QUEUED:
            self.node = None
            self.hosts = []
            self.dispatch_time = self.start_time = self.end_time = None
            self.exit_code = None
