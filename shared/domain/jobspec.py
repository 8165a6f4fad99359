"""The job spec users submit (HTTP body, ``hpc job submit --file``); its expansion into tasks
is :mod:`shared.domain.jobbuild`.

Validation here is about the spec alone (a command, a sane sweep range,
positive cores); checks against the cluster (does the node group exist, is
any node big enough) are in :mod:`shared.usecases.submit`.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.domain import taskgraph
from shared.domain.durations import MAX_LIMIT_S, parse_duration
from shared.domain.models import PRIORITY_NAMES
from shared.domain.outputpaths import check_output_path
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
    quoted,
    shown_json,
    sweep_command,
)
from shared.domain.tasksize import check_assignment, check_env_size
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


def _duration(value: Any) -> Any:
    """A limit in seconds, or as text in the CLI's forms (``"2:00:00"``, ``"1-12:00:00"``,
    ``"90"``), as a hand-written job file gives HPC Pack's RunTime (a user probe's
    ``"runtimeLimit": "2:00:00"`` was refused, though ``--runtime-limit 2:00:00`` is not)."""
    return parse_duration(value) if isinstance(value, str) else value


Seconds = Annotated[StrictInt, BeforeValidator(_duration)]
"""A runtime limit field: whole seconds, or a duration as text."""

MAX_JOB_NAME = 256
MAX_CONCURRENT = 1_000_000
"""A job's maxConcurrent at most (submit, templates, hpc job modify)."""
ONE_TASK_KEYS = ("command", "cores", "exclusive", "nodes", "sweep", "workDir", "env", "stdout", "stderr")  # fmt: skip
"""A one-task job's fields given at the top level, beside its command (the rest are the job's)."""


def check_name(value: str) -> str:
    """A job's or task's name: any text a list can show, or empty (a default name); not
    blanks alone, nor control characters (NUL, escapes, bidi overrides), which listed an
    empty or garbled Name (a probe)."""
    if value and not value.strip():
        raise ValueError("is only blanks: give a name, or leave it out for the default")
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf")), None)
    if bad is not None:
        raise ValueError(f"holds the control character U+{ord(bad):04X}: names are plain text")
    return value


class Spec(BaseModel):
    """Every level of a job spec: camelCase JSON names, and no field it does not know."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


ExitCodes = Annotated[
    list[Annotated[int, Strict(), Field(ge=-255, le=255)]], Field(min_length=1, max_length=64)
]


Cores = Annotated[int, Strict(), Field(ge=1, le=4096)]


class CoreRange(Spec):
    """``"cores": {"min": 1, "max": 8}``: placed on ``min``, grown up to ``max`` per node
    when cores are free at dispatch (the task reads its grant in HPC_TASK_CORES)."""

    min: Cores
    max: Cores

    @model_validator(mode="after")
    def _check(self) -> CoreRange:
        if self.max < self.min:
            raise ValueError(f"cores max {self.max} is below its min {self.min}")
        return self


class TaskSpec(Spec):
    name: str = Field(default="", max_length=256)
    depends_on: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=100
    )
    """Names of tasks of the job that must Finish first (shared.domain.taskgraph)."""
    command: Annotated[str, Field(max_length=32_768)]
    cores: Cores | CoreRange = 1
    """Cores on each of its nodes: a number, or {"min": N, "max": M}."""
    exclusive: StrictBool = False
    """Nothing else runs on its node(s) while it runs; it holds all their cores."""
    nodes: StrictInt = Field(default=1, ge=1, le=1024)
    """Nodes it runs on, all reserved together; the command runs on the first (HPC_NODES)."""
    min_memory_mb: MemoryMb = None
    """Memory it holds on each of its nodes while it runs: MB or a size, "4G" (consumable; the
    job's, if not given; ``null`` given: none, whatever the job asks)."""
    runtime_limit: Seconds | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds; the agent kills the task past it (the job's, if not given)."""
    valid_exit_codes: ExitCodes | None = None
    """Exit codes that count as success (the job's, if not given; else [0])."""
    sweep: Sweep | None = None
    work_dir: str | None = Field(default=None, max_length=4096)
    env: dict[str, str] = Field(default_factory=dict)
    stdout: str | None = Field(default=None, max_length=4096)
    """A file the task's stdout goes to as well (placeholders: shared/domain/outputpaths.py)."""
    stderr: str | None = Field(default=None, max_length=4096)
    """The same for stderr; naming the stdout file puts both streams in it."""

    @field_validator("stdout", "stderr")
    @classmethod
    def _output_path(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None:
            check_output_path(v, sweep=info.data.get("sweep") is not None)
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("command")
    @classmethod
    def _command(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("command is empty: give the shell command the task runs")
        if "\0" in v:
            raise ValueError("command holds a NUL character, which no shell command can")
        return v

    @field_validator("work_dir")
    @classmethod
    def _work_dir(cls, v: str | None) -> str | None:
        if v is not None and "\0" in v:
            raise ValueError(f"{quoted(v)} holds a NUL character")
        if v is not None and not v.strip():
            raise ValueError("is empty: leave it out to run in the default directory")
        return v

    @field_validator("cores", mode="before")
    @classmethod
    def _cores(cls, v: Any) -> Any:
        """One clear message for either form (not one per branch of the union)."""
        if isinstance(v, dict):
            try:
                return CoreRange.model_validate(v)
            except ValidationError as e:
                raise ValueError(
                    describe(e, spec_fields(), spec_homes()).replace("body: ", "")
                ) from None
        if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096:
            return v
        raise ValueError(f'cores is a number 1-4096 or {{"min": N, "max": M}}, got {shown_json(v)}')

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep(cls, v: Any) -> Any:
        """Either form, or one message naming both (not pydantic's "a valid dictionary")."""
        if isinstance(v, str):
            return Sweep.parse(v)
        if v is None or isinstance(v, dict | Sweep):
            return v
        raise ValueError(
            f'sweep is "START-END[:STEP]" (e.g. "1-20" or "0-100:5") or '
            f'{{"start": S, "end": E, "step": N}}, got {shown_json(v)}'
        )

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            check_env_name(key)
            if "\0" in value:
                raise ValueError(f"{key}: the value holds a NUL character")
        check_env_size(v)
        return v

    @model_validator(mode="after")
    def _fits_assignment(self) -> TaskSpec:
        """Its assignment message fits on the bus, at the sweep index that makes it longest."""
        widest = None
        if self.sweep is not None:
            widest = max((self.sweep.start, self.sweep.last), key=lambda i: len(str(i)))
        check_assignment(
            command=sweep_command(self.command, widest),
            env=self.env,
            work_dir=self.work_dir,
            stdout=self.stdout,
            stderr=self.stderr,
            nodes=self.nodes,
            sweep_index=widest,
        )
        return self

    def task_count(self) -> int:
        return self.sweep.count if self.sweep else 1

    @property
    def min_cores(self) -> int:
        return self.cores.min if isinstance(self.cores, CoreRange) else self.cores

    @property
    def max_cores(self) -> int | None:
        """The most cores per node it may grow to (None: exactly ``min_cores``)."""
        if isinstance(self.cores, CoreRange) and self.cores.max > self.cores.min:
            return self.cores.max
        return None


class JobSpec(Spec):
    name: str = Field(default="", max_length=MAX_JOB_NAME)
    template: str | None = Field(default=None, max_length=64)
    """A job template's name (shared.domain.templates); None: the Default one, if any."""
    node_groups: list[GroupName] = Field(default_factory=list, max_length=32)
    priority: int = PRIORITY_NAMES["Normal"]
    max_retries: StrictInt = Field(default=3, ge=0, le=100)
    min_memory_mb: MemoryMb = None
    """Memory (MB, or "4G") the nodes of every task that gives none must have."""
    memory_per_core_mb: MemoryMb = None
    """Memory each core of a task that gives none holds (Slurm's --mem-per-cpu): on each of
    its nodes, its cores (a range's min) times this. A job gives this or ``minMemoryMb``, not
    both; a template's is the default of jobs that give neither (Slurm's DefMemPerCPU)."""
    runtime_limit: Seconds | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds each task may run (Slurm's --time); the agent kills a task past it."""
    job_runtime_limit: Seconds | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
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
    exclusive: StrictBool = False
    """Job-level exclusive (HPC Pack's job /exclusive): no other job's task on the nodes its
    tasks run on. Beside a top-level command (a one-task job) ``exclusive`` is the task's."""
    tasks: list[TaskSpec] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _one_memory_rule(self) -> JobSpec:
        if self.min_memory_mb is not None and self.memory_per_core_mb is not None:
            raise ValueError(
                "give minMemoryMb (per node) or memoryPerCoreMb (per core), not both (as "
                "Slurm's --mem and --mem-per-cpu)"
            )
        return self

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
        elif "tasks" not in data:  # pydantic's "tasks: Field required" named one form only
            raise ValueError(
                'give a command (a one-task job: {"command": "..."}) or tasks (a list of '
                '{"command": "..."} objects)'
            )
        return data

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, v: Any) -> int:
        return priority_value(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

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
            one_task = isinstance(data, dict) and "command" in data and "tasks" not in data
            drop = ("tasks", 0) if one_task else ()  # the one-task form's fields, as sent
            said = describe(e, spec_fields(), spec_homes(), drop)
            raise InvalidRequest("invalid job spec: " + said) from None
        if now is not None and spec.hold_until is not None and spec.hold_until <= now:
            raise InvalidRequest(
                f"invalid job spec: holdUntil {spec.hold_until:%Y-%m-%d %H:%M:%S} UTC is in "
                "the past: give a later time, or leave holdUntil out for a job that may "
                "start at once"
            )
        return spec


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


def task_memory(spec: TaskSpec, job: JobSpec) -> int | None:
    """A task's memory request on each of its nodes: its own when it gave the field, even
    ``null`` (a task that runs anywhere in a job of big ones), else the job's, else its
    cores (a range's min) times the job's memory per core, else none."""
    if "min_memory_mb" in spec.model_fields_set:
        return spec.min_memory_mb
    if job.min_memory_mb is not None:
        return job.min_memory_mb
    if job.memory_per_core_mb is not None:
        return spec.min_cores * job.memory_per_core_mb
    return None
