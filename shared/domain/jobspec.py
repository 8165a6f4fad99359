"""The job spec users submit (HTTP body, ``hpc job submit --file``) and its expansion into tasks.

Validation here is about the spec alone (a command, a sane sweep range,
positive cores); checks against the cluster (does the node group exist, is
any node big enough) are in :mod:`shared.usecases.submit`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.domain import taskgraph
from shared.domain.durations import MAX_LIMIT_S
from shared.domain.models import PRIORITY_NAMES, Job, Task
from shared.domain.specerrors import describe, field_homes, known_fields
from shared.domain.specmemory import MemoryMb
from shared.domain.specvalues import (
    GroupName,
    JobRef,
    StrictBool,
    StrictInt,
    Sweep,
    check_env_name,
    iso_time,
    priority_value,
    sweep_command,
)
from shared.domain.states import TaskState
from shared.domain.taskrange import TaskRange
from shared.domain.taskspec import CoreRange, ExitCodes, Spec, TaskSpec
from shared.errors import InvalidRequest

__all__ = [
    "JobSpec",
    "describe",
    "Sweep",
    "TaskSpec",
    "check_env_name",
    "priority_value",
    "sweep_command",
]


MAX_JOB_NAME = 256
MAX_CONCURRENT = 1_000_000
"""A job's maxConcurrent at most (submit, templates, hpc job modify)."""
ONE_TASK_KEYS = ("command", "cores", "exclusive", "nodes", "sweep", "workDir", "env", "stdout", "stderr")  # fmt: skip
"""A one-task job's fields given at the top level, beside its command (the rest are the job's)."""


class JobSpec(Spec):
    name: str = Field(default="", max_length=MAX_JOB_NAME)
    template: str | None = Field(default=None, max_length=64)
    """A job template's name (shared.domain.templates); None: the Default one, if any."""
    node_groups: list[GroupName] = Field(default_factory=list, max_length=32)
    priority: int = PRIORITY_NAMES["Normal"]
    max_retries: StrictInt = Field(default=3, ge=0, le=100)
    min_memory_mb: MemoryMb = None
    """Memory (MB, or "4G") the nodes of every task that gives none must have."""
    runtime_limit: StrictInt | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds each task may run (Slurm's --time); the agent kills a task past it."""
    job_runtime_limit: StrictInt | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds the whole job may run, from its first task's start; then it is canceled."""
    max_concurrent: StrictInt | None = Field(default=None, ge=1, le=MAX_CONCURRENT)
    """At most this many of its tasks run at once."""
    hold_until: datetime | None = None
    """ISO 8601; not scheduled before then (UTC if no zone is given)."""
    held: StrictBool = False
    """Submitted held (Slurm's --hold): nothing of it starts until ``hpc job release``. Set
    at submit, so no task can start before the hold (a hold sent after the submit could
    come too late)."""
    depends_on: list[JobRef] = Field(default_factory=list, max_length=100)
    """Job ids that must Finish first."""
    run_dependents_on_failure: StrictBool = False
    valid_exit_codes: ExitCodes | None = None
    """Exit codes that count as success for every task (default [0])."""
    tasks: list[TaskSpec] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _graph(self) -> JobSpec:
        """Task dependencies name tasks of the job and have no cycle."""
        if any(t.depends_on for t in self.tasks):
            taskgraph.spec_order(self.tasks)
        return self

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        """Accept ``nodeGroup`` for one group, and a top-level command for a one-task job."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "nodeGroup" in data:
            group = data.pop("nodeGroup")
            data["nodeGroups"] = [group] if group else []
        if "tasks" in data and "command" in data:
            raise ValueError(
                "give a top-level command (a one-task job) or tasks, not both: move the "
                "command into one of the tasks"
            )
        if "tasks" not in data and "command" in data:
            data["tasks"] = [{k: data.pop(k) for k in ONE_TASK_KEYS if k in data}]
        return data

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, v: Any) -> int:
        return priority_value(v)

    @field_validator("hold_until", mode="before")
    @classmethod
    def _hold_until(cls, v: Any) -> datetime | None:
        """Read as hold's ``until`` is (one parser: specvalues.iso_time), in UTC."""
        return None if v is None else iso_time(v)

    def task_count(self) -> int:
        return sum(t.task_count() for t in self.tasks)

    @classmethod
    def parse(cls, data: Any, *, now: datetime | None = None) -> JobSpec:
        """Validate, turning pydantic's errors into one InvalidRequest that says what to fix.

        Given ``now`` (a submit's clock), a ``holdUntil`` already past is refused as hold's
        ``until`` is: asked to hold, the cluster must not start the job at once (a typo, a
        zone slip)."""
        try:
            spec = cls.model_validate(data)
        except ValidationError as e:
            raise InvalidRequest(
                "invalid job spec: " + describe(e, spec_fields(), spec_homes())
            ) from None
        if now is not None and spec.hold_until is not None and spec.hold_until <= now:
            raise InvalidRequest(
                f"invalid job spec: holdUntil {spec.hold_until:%Y-%m-%d %H:%M:%S} UTC is in "
                "the past: give a later time, or leave holdUntil out for a job that may "
                "start at once"
            )
        return spec

    def build(
        self, job_id: int, *, now: datetime, owner: str = "admin"
    ) -> tuple[Job, list[Task], list[TaskRange]]:
        """The job (state Queued), its single tasks and its sweeps as ranges (their tasks are
        created as they are dispatched); task ids 1..n in spec order, except that a task
        that others depend on comes before them (shared.domain.taskgraph)."""
        job = Job(
            id=job_id,
            name=self.name or f"job{job_id}",
            owner=owner,
            priority=self.priority,
            node_groups=list(self.node_groups),
            max_retries=self.max_retries,
            submit_time=now,
            max_concurrent=self.max_concurrent,
            hold_until=self.hold_until,  # UTC already (_hold_until)
            held=self.held,
            runtime_limit=self.runtime_limit,
            job_runtime_limit=self.job_runtime_limit,
            depends_on=list(dict.fromkeys(self.depends_on)),
            run_dependents_on_failure=self.run_dependents_on_failure,
        )
        job.steps = taskgraph.steps(self.tasks)
        tasks: list[Task] = []
        ranges: list[TaskRange] = []
        next_id = 1
        order = taskgraph.spec_order(self.tasks) if job.steps else range(len(self.tasks))
        for spec in (self.tasks[i] for i in order):
            index = spec.sweep.start if spec.sweep else None
            task = Task(
                job_id=job_id,
                id=next_id,
                depends_on=list(dict.fromkeys(spec.depends_on)),
                name=spec.name or (f"{job.name}[{index}]" if index is not None else job.name),
                command=spec.command,
                cores=spec.min_cores,
                max_cores=spec.max_cores,
                exclusive=spec.exclusive,
                nodes=spec.nodes,
                min_memory_mb=task_memory(spec, self.min_memory_mb),
                sweep_index=index,
                work_dir=spec.work_dir,
                env=dict(spec.env),
                stdout=spec.stdout,
                stderr=spec.stderr,
                priority=self.priority,
                node_groups=list(self.node_groups),
                submit_time=now,
                runtime_limit_s=spec.runtime_limit or self.runtime_limit,
                valid_exit_codes=spec.valid_exit_codes or self.valid_exit_codes,
            )
            if spec.sweep is None:
                tasks.append(task)
                next_id += 1
                continue
            ranges.append(
                TaskRange(
                    job_id=job_id,
                    first_id=next_id,
                    count=spec.sweep.count,
                    start=spec.sweep.start,
                    step=spec.sweep.step,
                    template=task,
                    name_prefix=None if spec.name else job.name,
                )
            )
            next_id += spec.sweep.count
        job.task_count = next_id - 1
        job.task_counts = {TaskState.QUEUED: job.task_count}
        return job, tasks, ranges

    def expand(self, job_id: int, *, now: datetime) -> list[Task]:
        """Every task of the job as a Task record, sweeps expanded (for tests and small jobs)."""
        _, tasks, ranges = self.build(job_id, now=now)
        for r in ranges:
            tasks += [r.task(r.first_id + k) for k in range(r.count)]
        return sorted(tasks, key=lambda t: t.id)


def spec_fields() -> list[str]:
    """Every field name a job spec takes, at any level (for "did you mean")."""
    return known_fields(JobSpec, TaskSpec, CoreRange)


def spec_homes() -> dict[str, str]:
    """Where each field of a job spec goes, said for one given at another level."""
    task = "a task's (in each task, or beside a top-level command)"
    levels: list[tuple[type[BaseModel], str]] = [
        (JobSpec, "the job's (top level)"),
        (TaskSpec, task),
        (CoreRange, "part of cores"),
    ]
    return field_homes(levels)


def task_memory(spec: TaskSpec, job_default: int | None) -> int | None:
    """A task's memory request: its own when it gave the field, even ``null`` (a task that
    runs anywhere in a job of big ones), else the job's."""
    return spec.min_memory_mb if "min_memory_mb" in spec.model_fields_set else job_default
