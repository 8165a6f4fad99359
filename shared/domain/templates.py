"""Job templates, as in HPC Pack: named defaults and limits that admins keep.

A job names a template (``"template": "Short"``); with none, the ``Default``
template applies if an admin created one. :func:`apply_template` fills what
the job left out with the template's defaults and then checks its limits; it
is pure, so the rule is one table of tests.

A limit with no matching default also acts as the default, so a job that
says nothing never breaks its template: no priority under ``maxPriority``
BelowNormal gets BelowNormal (not Normal), no node group under
``allowedNodeGroups`` gets those groups (not "any node"), no runtime limit
under ``maxRuntimeLimit`` gets that limit (not "unlimited").
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.domain.durations import MAX_LIMIT_S, format_duration
from shared.domain.jobspec import MAX_CONCURRENT, JobSpec, Seconds, TaskSpec, priority_value
from shared.domain.models import PRIORITY_NAMES
from shared.domain.specerrors import describe, known_fields
from shared.domain.specmemory import MemoryMb
from shared.domain.specvalues import MAX_GROUP_NAME, StrictInt, cut, quoted
from shared.domain.usernames import NAME_RULE, USER_NAME
from shared.errors import InvalidRequest

DEFAULT_TEMPLATE = "Default"
"""Applied to jobs that name no template, when it exists (HPC Pack's rule)."""

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_ALLOWED_USERS = 1000
"""Most names in ``allowedUsers``: a template document stays small (a group of users is the
real answer, when there are groups)."""
_NEW = {"new": True}
"""Validation context of a template as sent (:meth:`JobTemplate.parse`): checks that a template
stored before they existed need not pass again to load."""


def check_template_name(name: str) -> str:
    """A template name: letters, digits, ``_ . -``, 64 at most (it is part of a URL and a key)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = quoted(name) if isinstance(name, str) else repr(name)
        raise InvalidRequest(
            f"template name {shown}: use letters, digits, _ . - "
            "(starting with a letter or digit, 64 at most)"
        )
    return name


def priority_label(value: int) -> str:
    """``3000 (AboveNormal)`` for a named level, else the number."""
    names = {v: k for k, v in PRIORITY_NAMES.items()}
    return f"{value} ({names[value]})" if value in names else str(value)


class JobTemplate(BaseModel):
    """A named set of job defaults and limits. JSON is camelCase, as in the HTTP API.

    Every field but ``name`` is optional: a template may hold only defaults,
    only limits, or both. ``maxCores`` limits the cores of each task.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: str
    description: str = Field(default="", max_length=1024)
    # defaults: used where the job gives no value
    priority: int | None = None
    node_groups: list[str] | None = Field(default=None, max_length=32)
    runtime_limit: Seconds | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds."""
    max_retries: StrictInt | None = Field(default=None, ge=0, le=100)
    max_concurrent: StrictInt | None = Field(default=None, ge=1, le=MAX_CONCURRENT)
    job_runtime_limit: Seconds | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds the whole job may run (HPC Pack's template RunTime)."""
    memory_per_core_mb: MemoryMb = None
    """Memory per core of the tasks of a job that asks for none (MB or "2G"; Slurm's
    DefMemPerCPU): the job's ``memoryPerCoreMb`` when it gives neither it nor
    ``minMemoryMb``. A task giving its own ``minMemoryMb`` keeps it."""
    # limits: a job beyond them is refused
    max_priority: int | None = None
    max_cores: StrictInt | None = Field(default=None, ge=1, le=4096)
    allowed_node_groups: list[str] | None = Field(default=None, max_length=32)
    """Empty or missing: any group."""
    max_runtime_limit: Seconds | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds."""
    max_job_runtime_limit: Seconds | None = Field(default=None, ge=1, le=MAX_LIMIT_S)
    """Seconds: the longest jobRuntimeLimit, at submit and in a later hpc job modify."""
    # who: HPC Pack's template permissions (shared.domain.access.template_refusal)
    allowed_users: list[str] | None = Field(default=None, max_length=MAX_ALLOWED_USERS)
    """User names that may submit with it (exact, as ``hpc user list`` shows them); missing or
    empty: every user. Admins always may."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.fullmatch(v):
            raise ValueError(
                "use letters, digits, _ . - (starting with a letter or digit, 64 at most)"
            )
        return v

    @field_validator("node_groups", "allowed_node_groups")
    @classmethod
    def _group_names(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        """No group has a longer name; a template saved before this check still loads."""
        if info.context == _NEW:
            for name in v or []:
                if len(name) > MAX_GROUP_NAME:
                    raise ValueError(
                        f"node group name {quoted(name)} is longer than any group's "
                        f"({MAX_GROUP_NAME} characters at most)"
                    )
        return v

    @field_validator("allowed_users")
    @classmethod
    def _user_names(cls, v: list[str] | None) -> list[str] | None:
        """Names a user could have, each once; empty is stored as missing (every user), so
        clearing the list leaves no trace in the JSON."""
        for name in v or []:
            if not USER_NAME.fullmatch(name):
                raise ValueError(f"user name {quoted(name)}: {NAME_RULE}")
        return list(dict.fromkeys(v)) if v else None

    @field_validator("priority", "max_priority", mode="before")
    @classmethod
    def _priority(cls, v: Any) -> Any:
        return None if v is None else priority_value(v)  # a bool or 2.0 is refused, as in a job

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> JobTemplate:
        """Its own defaults must pass its limits, else every job that relies on them fails."""
        if (
            self.priority is not None
            and self.max_priority is not None
            and self.priority > self.max_priority
        ):
            raise ValueError(
                f"default priority {priority_label(self.priority)} is above maxPriority "
                f"{priority_label(self.max_priority)}"
            )
        if (
            self.runtime_limit is not None
            and self.max_runtime_limit is not None
            and self.runtime_limit > self.max_runtime_limit
        ):
            raise ValueError(
                f"default runtimeLimit {self.runtime_limit} is above maxRuntimeLimit "
                f"{self.max_runtime_limit}"
            )
        if (
            self.job_runtime_limit is not None
            and self.max_job_runtime_limit is not None
            and self.job_runtime_limit > self.max_job_runtime_limit
        ):
            raise ValueError(
                f"default jobRuntimeLimit {self.job_runtime_limit} is above "
                f"maxJobRuntimeLimit {self.max_job_runtime_limit}"
            )
        outside = _outside(self.node_groups or [], self.allowed_node_groups)
        if outside:
            raise ValueError(
                f"default nodeGroups {_names(outside)} are not in allowedNodeGroups "
                f"{_names(self.allowed_node_groups or [])}"
            )
        return self

    @classmethod
    def parse(cls, data: Any) -> JobTemplate:
        """Validate, turning pydantic's errors into one InvalidRequest that says what to fix."""
        try:
            return cls.model_validate(data, context=_NEW)
        except ValidationError as e:
            raise InvalidRequest(
                "invalid template: " + describe(e, known_fields(JobTemplate))
            ) from None

    @property
    def key(self) -> str:
        """Names match case-insensitively: this is what they are compared and stored by."""
        return self.name.lower()

    def to_dict(self) -> dict[str, Any]:
        """The API's JSON: camelCase, fields that are not set left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _names(groups: list[str]) -> str:
    """Group names as a message lists them, each cut (a name a job sent may be long)."""
    return ", ".join(cut(g) for g in groups)


def _outside(groups: list[str], allowed: list[str] | None) -> list[str]:
    """The groups not among ``allowed`` (compared case-insensitively); none if any group goes."""
    if not allowed:
        return []
    ok = {g.lower() for g in allowed}
    return [g for g in groups if g.lower() not in ok]


def apply_template(spec: JobSpec, template: JobTemplate | None) -> JobSpec:
    """The spec with the template's defaults filled in where the job gave no value, checked
    against its limits (InvalidRequest naming the template, the field and what is allowed).

    "Gave no value" means the field was absent from what the user sent (pydantic's
    ``model_fields_set``), so a job that asks for Normal priority explicitly keeps it.
    The returned spec's ``template`` is the template's own spelling of its name (None
    without a template). The input spec is not changed.
    """
    if template is None:
        return spec.model_copy(update={"template": None})
    given = spec.model_fields_set
    update: dict[str, Any] = {"template": template.name}

    def default(field: str, value: Any) -> None:
        if field not in given and value is not None:
            update[field] = value

    default("max_retries", template.max_retries)
    default("max_concurrent", template.max_concurrent)
    default("runtime_limit", template.runtime_limit or template.max_runtime_limit)
    default("job_runtime_limit", template.job_runtime_limit or template.max_job_runtime_limit)
    if not spec.node_groups:  # none, or [] ("any node"), which an allowed list must narrow
        given = given - {"node_groups"}
    default("node_groups", template.node_groups or template.allowed_node_groups or None)
    fallback = template.priority
    if fallback is None and template.max_priority is not None:
        fallback = min(PRIORITY_NAMES["Normal"], template.max_priority)
    default("priority", fallback)
    if "min_memory_mb" not in given:  # a job's --mem and --mem-per-cpu exclude each other
        default("memory_per_core_mb", template.memory_per_core_mb)
    result = spec.model_copy(update=update)
    check_limits(result, template)
    return result


def _task_cores(task: TaskSpec) -> tuple[int, str]:
    """The most cores a task may hold in all (a core range at its max, on each of its nodes),
    and how to say it."""
    per_node = task.max_cores or task.min_cores
    if task.nodes == 1:
        return per_node, str(per_node)
    return (
        per_node * task.nodes,
        f"{per_node * task.nodes} ({per_node} on each of {task.nodes} nodes)",
    )


def check_limits(spec: JobSpec, template: JobTemplate) -> None:
    """Refuse a spec beyond the template's limits, saying which and what is allowed."""
    where = f"template {quoted(template.name)}"
    if template.max_priority is not None and spec.priority > template.max_priority:
        raise InvalidRequest(
            f"{where} allows priority at most {priority_label(template.max_priority)}; "
            f"the job asks for {priority_label(spec.priority)}"
        )
    outside = _outside(spec.node_groups or ["any node"], template.allowed_node_groups)
    if outside:
        raise InvalidRequest(
            f"{where} allows nodeGroups {_names(template.allowed_node_groups or [])} only; "
            f"the job asks for {_names(outside)}"
        )
    refusal = job_limit_refusal(template, spec.job_runtime_limit)
    if refusal:
        raise InvalidRequest(refusal)
    for number, task in enumerate(spec.tasks):
        label = f"tasks.{number}" + (f" ({cut(task.name)})" if task.name else "")
        if template.max_cores is not None and task.exclusive:
            raise InvalidRequest(
                f"{where} allows at most {template.max_cores} cores per task (maxCores); "
                f"{label} is exclusive, which takes its nodes' every core: leave exclusive "
                "out and ask for the cores it needs"
            )
        if template.max_cores is not None:
            wanted, how = _task_cores(task)
            if wanted > template.max_cores:
                raise InvalidRequest(
                    f"{where} allows at most {template.max_cores} cores per task (maxCores); "
                    f"{label} asks for {how}"
                )
        limit = task.runtime_limit or spec.runtime_limit
        cap = template.max_runtime_limit
        if cap is not None and (limit is None or limit > cap):
            asked = "no runtime limit" if limit is None else f"{limit} s ({format_duration(limit)})"
            raise InvalidRequest(
                f"{where} allows runtimeLimit at most {cap} s ({format_duration(cap)}) "
                f"(maxRuntimeLimit); {label} asks for {asked}"
            )


def job_limit_refusal(template: JobTemplate, limit: int | None) -> str | None:
    """Why a whole-job runtime limit (None: none) is beyond the template's
    maxJobRuntimeLimit, at submit or in a later change; None if it is within."""
    cap = template.max_job_runtime_limit
    if cap is None or (limit is not None and limit <= cap):
        return None
    asked = "no job runtime limit" if limit is None else f"{limit} s ({format_duration(limit)})"
    return (
        f"template {quoted(template.name)} allows jobRuntimeLimit at most {cap} s "
        f"({format_duration(cap)}) (maxJobRuntimeLimit); the job asks for {asked}"
    )
