"""pydantic's validation errors as users of the API read them: ``field.path: what to fix``,
with camelCase paths, what a strict field takes, and for an unknown field the known one it
was probably meant to be (a probe wrote ``workdir`` and ``nodegroups`` and was told only
"Extra inputs are not permitted"). Pure."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, ValidationError

from shared.domain.specvalues import cut, shown_json

_TAKES = {
    "int_type": "must be a whole number (a JSON integer, not text, true or 8.0)",
    "bool_type": "must be true or false",
    "string_type": "must be text (a JSON string)",
    "list_type": "must be a list (a JSON array)",
}
"""What a strict field takes, said with what it got (pydantic says only "a valid integer")."""

_DURATIONS = frozenset(
    {"runtimeLimit", "jobRuntimeLimit", "maxRuntimeLimit", "maxJobRuntimeLimit"}
)  # (camelCase: describe's paths are the JSON's)
_DURATION = 'must be whole seconds or a duration as text ("2:00:00", "1-12:00:00")'
"""What a limit takes: a third probe read "not text" of a field that takes text too."""

_OTHER_LEVEL = {
    ("dependsOn", "int_type"): (
        "the job's dependsOn takes job ids; task names go in a task's dependsOn, in each task"
    ),
    ("dependsOn", "string_type"): (
        "a task's dependsOn names tasks of its job; job ids go in the job's dependsOn, at the top"
    ),
}
"""A value of the type a field takes at its other level (task names in the job's
``dependsOn``, job ids in a task's): where it goes, beside the type error."""

_MEANT = dict.fromkeys(("memory", "mem", "minmem", "minmemory", "memorymb", "memmb"), "minMemoryMb")
"""Names other schedulers' users write (Slurm's --mem, HPC Pack's MinMemory), folded as
:func:`unknown_field` folds them, and the field they mean."""


def known_fields(*models: type[BaseModel]) -> list[str]:
    """The JSON names (aliases) of the models' fields, for :func:`describe`'s suggestions."""
    return sorted({f.alias or name for m in models for name, f in m.model_fields.items()})


def field_homes(levels: Sequence[tuple[type[BaseModel], str]]) -> dict[str, str]:
    """Each field of the ``(model, where it is)`` levels, and the levels that take it:
    ``{"priority": "is the job's (top level)"}``, for :func:`describe`'s ``homes``."""
    homes: dict[str, list[str]] = {}
    for model, where in levels:
        for name in known_fields(model):
            homes.setdefault(name, []).append(where)
    return {name: "is " + " or ".join(wheres) for name, wheres in homes.items()}


def describe(
    error: ValidationError,
    fields: Iterable[str] = (),
    homes: Mapping[str, str] | None = None,
    drop: tuple[str | int, ...] = (),
) -> str:
    """pydantic errors as ``field.path: message; ...`` with camelCase paths; an unknown
    field names the one of ``fields`` it is closest to, if any is close, or, when it is a
    field of another level (``homes``: field -> where it goes), where it goes (a probe's
    task-level ``priority`` was told "did you mean priority?"). ``drop``: a path prefix the
    sender did not write (a one-task job's ``tasks.0``), left out."""
    known = list(fields)
    parts = []
    for err in error.errors():
        if drop and err["loc"][: len(drop)] == drop:  # a path the sender did not write
            err["loc"] = err["loc"][len(drop) :]
        loc = cut(".".join(str(p) for p in err["loc"]) or "body")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in _TAKES:
            msg = f"{_TAKES[err['type']]}, got {shown_json(err['input'])}"
        bound = _bound(err)
        if bound:
            msg = bound
        named = [str(p) for p in err["loc"] if isinstance(p, str)]
        if err["type"] == "int_type" and named and named[-1] in _DURATIONS:  # text is taken
            msg = f"{_DURATION}, got {shown_json(err['input'])}"
        hint = _OTHER_LEVEL.get((named[-1] if named else "", err["type"]))
        if hint:
            msg += f" ({hint})"
        elif err["type"] == "extra_forbidden" and err["loc"]:
            name = str(err["loc"][-1])
            home = (homes or {}).get(name)
            msg = f"not taken here: {name} {home}" if home else unknown_field(name, known, homes)
        # a whole-object rule has no field path: its message stands alone (a probe read
        # "invalid template: body: default priority ...")
        parts.append(f"{loc}: {msg}" if err["loc"] else msg)
    return "; ".join(parts)


_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "above"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "below"),
}
"""pydantic's number bounds, said as a user writes them ("at least 1, got -5"), not as
"Input should be greater than or equal to 1", which a probe read as raw."""


def _bound(err: Mapping[str, object]) -> str | None:
    """A bound, an empty list or a body of the wrong shape in the user's words; None for
    the other errors (their own messages stand)."""
    kind, ctx, got = err["type"], err.get("ctx") or {}, shown_json(err.get("input"))
    assert isinstance(ctx, Mapping)
    if kind in _BOUNDS:
        key, words = _BOUNDS[str(kind)]
        return f"must be {words} {ctx.get(key)}, got {got}"
    if kind == "too_short" and isinstance(err.get("input"), list | tuple | dict):
        least = ctx.get("min_length", 1)
        return f"must have at least {least} item{'' if least == 1 else 's'}, got none"
    if kind == "too_long":
        most, got_n = ctx.get("max_length"), ctx.get("actual_length")
        return (
            f"must have at most {most:,} items, got {got_n:,}"
            if isinstance(most, int) and isinstance(got_n, int)
            else None
        )
    if kind == "string_too_long" and isinstance(err.get("input"), str):
        text = str(err.get("input"))
        return f"must be at most {ctx.get('max_length'):,} characters, got {len(text):,}"
    if kind == "string_unicode":
        return "must be text without lone surrogates (unpaired \\ud800-\\udfff escapes)"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        if not err.get("loc"):
            return f"the body must be a JSON object ({{...}}), got {got}"
        return f"must be a JSON object ({{...}}), got {got}"  # a task, env, sweep...
    if kind == "missing":
        return "is required"
    return None


def unknown_field(name: str, known: list[str], homes: Mapping[str, str] | None = None) -> str:
    """ "unknown field", and the known field meant: the same name in another case or with
    underscores (``workdir``, ``work_dir``: workDir), else a close spelling."""
    folded = {k.lower(): k for k in known}
    key = name.replace("_", "").replace("-", "").lower()
    meant = folded.get(key) or (_MEANT[key] if _MEANT.get(key) in known else None)
    if meant is None:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        meant = close[0] if close else None
    if meant is None:
        return "unknown field"
    home = (homes or {}).get(meant)  # where it goes: it may not be taken here either
    return f"unknown field; did you mean {meant}?" + (f" ({meant} {home})" if home else "")
