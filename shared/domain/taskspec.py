"""A task's part of the job spec (each entry of ``tasks``, or the fields beside a one-task
job's top-level command): its command, cores, nodes, sweep, files and limits, each checked
on its own. The job's part, and the expansion into tasks, are :mod:`shared.domain.jobspec`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.domain.durations import MAX_LIMIT_S
from shared.domain.outputpaths import check_output_path
from shared.domain.specerrors import describe
from shared.domain.specmemory import MemoryMb
from shared.domain.specvalues import (
    StrictBool,
    StrictInt,
    Sweep,
    check_env_name,
    quoted,
    shown_json,
    sweep_command,
)
from shared.domain.tasksize import check_assignment, check_env_size


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
    """Memory each of its nodes must have: MB or a size, "4G" (a node filter; the job's, if
    not given; ``null`` given: any node, whatever the job asks)."""
    runtime_limit: StrictInt | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
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
                # the whole spec's fields, to say where one given inside cores goes
                from shared.domain.jobspec import spec_fields, spec_homes

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
