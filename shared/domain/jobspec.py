"""The job spec users submit (HTTP body, ``hpc job submit --file``) and its expansion into tasks.

Validation here is about the spec alone (a command, a sane sweep range,
positive cores); checks against the cluster (does the node group exist, is
any node big enough) are in :mod:`shared.usecases.submit`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.domain.durations import MAX_LIMIT_S
from shared.domain.models import PRIORITY_NAMES, Job, Task
from shared.errors import InvalidRequest

_SWEEP = re.compile(r"^\s*(-?\d+)\s*-\s*(-?\d+)\s*(?::\s*(\d+))?\s*$")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env_name(key: str) -> None:
    """A task environment variable name: a shell name, and not one of the cluster's HPC_*."""
    if not _ENV_NAME.fullmatch(key):
        raise ValueError(
            f"environment variable name {key!r} is not a valid variable name "
            "(letters, digits, _; not starting with a digit)"
        )
    if key.startswith("HPC_"):
        raise ValueError(f"{key}: HPC_* variables are set by the cluster")


def priority_value(value: int | str) -> int:
    """An HPC Pack priority name or an integer 0-4000 (also as text), as the integer."""
    if isinstance(value, str):
        if value in PRIORITY_NAMES:
            return PRIORITY_NAMES[value]
        if not value.strip().lstrip("-").isdigit():
            names = ", ".join(PRIORITY_NAMES)
            raise ValueError(f"priority {value!r} is not one of {names} or an integer 0-4000")
        value = int(value)
    if not 0 <= value <= 4000:
        raise ValueError(f"priority {value} is outside 0-4000")
    return value


def sweep_command(command: str, index: int | None) -> str:
    """HPC Pack's sweep placeholder: each ``*`` becomes the sweep index, ``**`` a literal ``*``
    (so ``ls **.txt`` stays a glob). Commands of tasks that are not sweep steps are unchanged."""
    if index is None:
        return command
    return "*".join(part.replace("*", str(index)) for part in command.split("**"))


class Sweep(BaseModel):
    """A parametric sweep: one task per index START, START+STEP, ..., END (inclusive)."""

    start: int
    end: int
    step: int = 1

    @model_validator(mode="after")
    def _check(self) -> Sweep:
        if self.step < 1:
            raise ValueError(f"sweep step must be at least 1, got {self.step}")
        if self.end < self.start:
            raise ValueError(f"sweep end {self.end} is below its start {self.start}")
        return self

    @classmethod
    def parse(cls, text: str) -> Sweep:
        """``"1-20"`` or ``"0-100:5"``."""
        m = _SWEEP.match(text)
        if not m:
            raise ValueError(f"sweep {text!r} is not START-END[:STEP], e.g. 1-20 or 0-100:5")
        start, end, step = int(m[1]), int(m[2]), int(m[3] or 1)
        return cls(start=start, end=end, step=step)

    def __len__(self) -> int:
        return (self.end - self.start) // self.step + 1

    def indices(self) -> range:
        return range(self.start, self.end + 1, self.step)


class _Spec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


ExitCodes = Annotated[
    list[Annotated[int, Field(ge=-255, le=255)]], Field(min_length=1, max_length=64)
]


class TaskSpec(_Spec):
    name: str = Field(default="", max_length=256)
    command: Annotated[str, Field(max_length=32_768)]
    cores: int = Field(default=1, ge=1, le=4096)
    runtime_limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds; the agent kills the task past it (the job's, if not given)."""
    valid_exit_codes: ExitCodes | None = None
    """Exit codes that count as success (the job's, if not given; else [0])."""
    sweep: Sweep | None = None
    work_dir: str | None = Field(default=None, max_length=4096)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("command")
    @classmethod
    def _command(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("command is empty: give the shell command the task runs")
        return v

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep(cls, v: Any) -> Any:
        return Sweep.parse(v) if isinstance(v, str) else v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            check_env_name(key)
        return v

    def task_count(self) -> int:
        return len(self.sweep) if self.sweep else 1


class JobSpec(_Spec):
    name: str = Field(default="", max_length=256)
    node_groups: list[str] = Field(default_factory=list, max_length=32)
    priority: int = PRIORITY_NAMES["Normal"]
    max_retries: int = Field(default=3, ge=0, le=100)
    runtime_limit: int | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds each task may run (Slurm's --time); the agent kills a task past it."""
    max_concurrent: int | None = Field(default=None, ge=1, le=1_000_000)
    """At most this many of its tasks run at once."""
    hold_until: datetime | None = None
    """ISO 8601; not scheduled before then (UTC if no zone is given)."""
    depends_on: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, max_length=100)
    """Job ids that must Finish first."""
    run_dependents_on_failure: bool = False
    valid_exit_codes: ExitCodes | None = None
    """Exit codes that count as success for every task (default [0])."""
    tasks: list[TaskSpec] = Field(min_length=1, max_length=10_000)

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
        if "tasks" not in data and "command" in data:
            task = {
                k: data.pop(k) for k in ("command", "cores", "sweep", "workDir", "env") if k in data
            }
            data["tasks"] = [task]
        return data

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, v: Any) -> Any:
        return priority_value(v) if isinstance(v, str | int) else v

    def task_count(self) -> int:
        return sum(t.task_count() for t in self.tasks)

    @classmethod
    def parse(cls, data: Any) -> JobSpec:
        """Validate, turning pydantic's errors into one InvalidRequest that says what to fix."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise InvalidRequest("invalid job spec: " + describe(e)) from None

    def build(self, job_id: int, *, now: datetime, owner: str = "admin") -> tuple[Job, list[Task]]:
        """The job (state Queued) and its tasks, sweeps expanded, ids 1..n."""
        job = Job(
            id=job_id,
            name=self.name or f"job{job_id}",
            owner=owner,
            priority=self.priority,
            node_groups=list(self.node_groups),
            max_retries=self.max_retries,
            submit_time=now,
            max_concurrent=self.max_concurrent,
            hold_until=_utc(self.hold_until),
            depends_on=list(dict.fromkeys(self.depends_on)),
            run_dependents_on_failure=self.run_dependents_on_failure,
        )
        tasks: list[Task] = []
        for spec in self.tasks:
            indices: list[int | None] = list(spec.sweep.indices()) if spec.sweep else [None]
            for index in indices:
                tid = len(tasks) + 1
                tasks.append(
                    Task(
                        job_id=job_id,
                        id=tid,
                        name=spec.name
                        or (f"{job.name}[{index}]" if index is not None else job.name),
                        command=spec.command,
                        cores=spec.cores,
                        sweep_index=index,
                        work_dir=spec.work_dir,
                        env=dict(spec.env),
                        priority=self.priority,
                        node_groups=list(self.node_groups),
                        submit_time=now,
                        runtime_limit_s=spec.runtime_limit or self.runtime_limit,
                        valid_exit_codes=spec.valid_exit_codes or self.valid_exit_codes,
                    )
                )
        job.task_count = len(tasks)
        job.task_counts = {tasks[0].state: len(tasks)}
        return job, tasks


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def describe(error: ValidationError) -> str:
    """pydantic errors as ``field.path: message; ...`` with camelCase paths."""
    parts = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)
