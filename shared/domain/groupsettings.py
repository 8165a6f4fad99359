"""What a node group's settings may be (``hpc nodegroup create | set``, ``PATCH
/api/nodegroups/{name}``): each setting's type and range, checked before anything is
stored.

Pure (no I/O). Why a table and not a bare ``setattr``: a stored group is read by every
scheduler pass, submit and autoscaler run, so one bad value (a null, NaN, a float where a
count goes) would make each of them fail until the document was mended by hand. So a value
is refused with a 422 that names the setting as the API spells it, and says what it may be.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel

from shared.domain.cluster import NodeGroup
from shared.domain.memory import MAX_MEMORY_MB
from shared.domain.specmemory import memory_value
from shared.domain.specvalues import cut, shown_json
from shared.errors import InvalidRequest

DAY_S = 86_400.0
MAX_COUNT = 100_000
"""Nodes in a group, tasks per unit of demand, grow threshold: far above any cluster's."""
PROVIDERS = ("local", "azure")
"""The compute providers (shared/wiring.py builds one from HPC_COMPUTE)."""
ONPREM = "onprem"
"""A group's provider for on-prem nodes as the CLI and the API also take it (any case): the
same as null, no provider (``Node.provider`` says ``onprem`` for such a node)."""
MAX_CORES = 1_000_000
"""The agent's own bound on a node's cores (shared.domain.messages.Cores)."""


@dataclass(frozen=True)
class Setting:
    kind: type
    low: float = 0
    high: float = MAX_COUNT
    nullable: bool = False
    """None is a value of its own (e.g. provider None: on-prem; a default to go back to)."""


GROUP_SETTINGS: dict[str, Setting] = {
    "description": Setting(str, high=1024),
    "min_nodes": Setting(int),
    "max_nodes": Setting(int),
    "node_cores": Setting(int, low=1, high=MAX_CORES),
    "node_memory_mb": Setting(int, low=1, high=MAX_MEMORY_MB, nullable=True),
    "size": Setting(str, high=128, nullable=True),
    "autoscale": Setting(bool),
    "grow_interval_s": Setting(float, high=DAY_S),
    "shrink_interval_s": Setting(float, high=DAY_S),
    "shrink_idle_times": Setting(int, low=1, high=10_000),
    "grow_threshold": Setting(int, low=1),
    "tasks_per_resource_unit": Setting(int, low=1),
    "extra_nodes_grow_ratio": Setting(int, high=10_000),
    "grow_by_min": Setting(bool),
    "provider": Setting(str, low=1, high=64, nullable=True),
    "idle_policy": Setting(str, high=64),
    "boot_delay_s": Setting(float, high=DAY_S),
    "scale_down_delay_s": Setting(float, high=7 * DAY_S, nullable=True),
}
"""What ``hpc nodegroup set`` may change: type, range (a str's: its length) and whether
null is allowed."""

MANAGED_ONLY = frozenset(GROUP_SETTINGS) - {"description", "provider"}
"""Settings only ``hpc node add`` and the autoscaler read: on an on-prem group (provider
None, nodes that join by their agents) they would be accepted and do nothing, so they are
refused there."""


def api_name(key: str) -> str:
    """A setting as the API and its errors spell it (``boot_delay_s`` -> ``bootDelayS``)."""
    return to_camel(key)


def apply_settings(group: NodeGroup, settings: dict[str, Any], provider: str | None) -> None:
    """Check each setting and set it on ``group``; InvalidRequest (422) naming the first bad
    one. ``provider``: this cluster's compute provider (None: none), named in the error for
    a provider that does not exist."""
    check_setting_names(settings)
    for key, value in settings.items():
        if key == "provider" and isinstance(value, str) and value.lower() == ONPREM:
            value = None  # the CLI's word for on-prem (hpc nodegroup create | set)
        elif key == "provider" and isinstance(value, str) and value.lower() in PROVIDERS:
            value = value.lower()  # any case, as the README says (a probe's LOCAL was refused)
        if key == "node_memory_mb" and value is not None:
            value = _memory(value)  # MB or a size ("16G"), as a task's minMemoryMb
        setattr(group, key, _checked(api_name(key), GROUP_SETTINGS[key], value))
    problem = vm_size_problem(group.size) if settings.get("size") is not None else None
    if problem:
        raise InvalidRequest(problem)
    named = group.provider if "provider" in settings else None
    if named is not None and (named not in PROVIDERS or (provider and named != provider)):
        hint = f"this cluster's is {provider!r}" if provider else "this cluster has none"
        raise InvalidRequest(
            f"provider {cut(repr(named))} is not this cluster's compute provider "
            f"({hint}; HPC_COMPUTE): give {provider or 'one of ' + ', '.join(PROVIDERS)}, "
            f"or {ONPREM} (JSON null) for on-prem nodes"
        )


VM_SIZE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,127}")
"""An Azure VM size's name (Standard_D4s_v5, Standard_M128-64ms): what ARM may accept."""


def vm_size_problem(size: object) -> str | None:
    """Why ``size`` cannot be a VM size's name, or None: one rule for a group's ``size`` and
    ``hpc node add --size`` (a NUL or a newline would reach ARM otherwise)."""
    if isinstance(size, str) and VM_SIZE.fullmatch(size):
        return None
    return (
        "size must be a VM size such as Standard_D4s_v5 (letters, digits, _ and -; at most "
        f"128), got {cut(repr(size))}"
    )


def check_bounds(
    group: NodeGroup, settings: Iterable[str], provider: str | None, *, creating: bool = False
) -> None:
    """One meaning of maxNodes everywhere: the most nodes a managed group may have, 0 being
    none (the autoscaler starts none, ``hpc node add`` adds none), never "no limit". So
    minNodes above it is refused whatever the values; an on-prem group takes no
    managed-only setting (``settings``: the keys given). Checked after each value's own
    check (:func:`apply_settings`), as a bad value is bad whatever the group."""
    if group.provider is None:
        given = sorted(api_name(k) for k in settings if k in MANAGED_ONLY)
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            kind = provider or "local"
            what = f"{', '.join(given)} {verb} only to managed groups (VMs that hpc node add creates and the autoscaler starts and stops)"
            if creating:  # no group to set yet (a probe was told to set one that did not exist)
                raise InvalidRequest(
                    f"{what}; {group.name} would be on-prem, its nodes joining by their "
                    f"agents: give --provider {kind} to make it managed, or leave "
                    f"{', '.join(given)} out"
                )
            raise InvalidRequest(
                f"{what}; {group.name} is on-prem, its nodes join by their agents: create a "
                f"managed group (hpc nodegroup create NAME --provider {kind} --max N), or make "
                f"this one managed while it has no nodes (hpc nodegroup set {group.name} "
                f"--provider {kind})"
            )
    elif group.min_nodes > group.max_nodes:
        raise InvalidRequest(
            f"min nodes {group.min_nodes} is above max nodes {group.max_nodes} (the most "
            f"nodes the group may have; 0: none): raise it with hpc nodegroup set "
            f"{group.name} --max N, N >= {group.min_nodes}"
        )


def check_setting_names(keys: Iterable[str]) -> None:
    """InvalidRequest (422) for the first key that is no setting."""
    for key in keys:
        if key not in GROUP_SETTINGS:
            known = ", ".join(api_name(k) for k in GROUP_SETTINGS)
            raise InvalidRequest(f"node group setting {cut(repr(key))} is unknown; known: {known}")


def _memory(value: Any) -> int | None:
    try:
        return memory_value(value, api_name("node_memory_mb"))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _checked(name: str, setting: Setting, value: Any) -> Any:
    if value is None:
        if setting.nullable:
            return None
        raise InvalidRequest(f"{name} cannot be null: give {_what(setting)}")
    kind = setting.kind
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise InvalidRequest(f"{name} must be {_what(setting)}, got {shown_json(value)}")
    if kind is float and not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a finite number of seconds, got {value!r}")
    size = len(value) if kind is str else value
    if kind is not bool and not setting.low <= size <= setting.high:
        shown = f"{value:g}" if kind is float else shown_json(value)
        raise InvalidRequest(f"{name} must be {_what(setting)}, got {shown}")
    return value


def _what(setting: Setting) -> str:
    low, high = f"{setting.low:g}", f"{int(setting.high):,}"
    if setting.kind is bool:
        return "true or false"
    if setting.kind is str:
        return f"text of at most {high} characters" + (" or null" if setting.nullable else "")
    noun = "a whole number" if setting.kind is int else "a number of seconds"
    return f"{noun} from {low} to {high}" + (" or null" if setting.nullable else "")
