"""Slurm-style file names for a task's stdout and stderr (``--stdout`` / ``--stderr``).

A path may hold placeholders, expanded when the task is dispatched (its ids are
known then):

====== ===========================================================
``%j`` the job id
``%A`` the job id too (Slurm's array job id: a sweep is one job here)
``%t`` the task id
``%a`` the sweep index (only in a sweep: refused at submit otherwise)
``%x`` the job's name (as at dispatch)
``%u`` the job's owner (its API user name)
``%N`` the name of the node the task runs on (its first)
``%%`` a literal ``%``
====== ===========================================================

Any other ``%`` is refused at submit with a message that names it, so a typo
never becomes a file named after it. A relative path is relative to the task's
working directory; the agent resolves it, as only the node knows that directory.
"""

from __future__ import annotations

from dataclasses import dataclass

PLACEHOLDERS: dict[str, str] = {
    "j": "the job id",
    "A": "the job id (Slurm's array job id)",
    "t": "the task id",
    "a": "the sweep index",
    "x": "the job name",
    "u": "the job's owner",
    "N": "the node name",
    "%": "a literal %",
}
"""The letter after ``%`` -> what it stands for (as the messages and README say)."""


def _parts(path: str) -> list[str]:
    """The path split into literal text and two-character ``%`` tokens (``"%j"``, ``"%x"``;
    a ``%`` that ends the path is the token ``"%"``)."""
    parts: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(path):
        if path[i] != "%":
            literal.append(path[i])
            i += 1
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(path[i : i + 2])
        i += 2
    if literal:
        parts.append("".join(literal))
    return parts


def check_output_path(path: str, *, sweep: bool) -> None:
    """Refuse (ValueError, saying what to fix) a path the cluster cannot expand: empty, with
    a NUL, with an unknown placeholder or a lone ``%`` at its end, or with ``%a`` in a task
    that is not a sweep."""
    if not path.strip():
        raise ValueError("the path is empty: give a file name, e.g. out-%j.txt")
    if "\0" in path:
        raise ValueError(f"{path!r} holds a NUL character")
    for part in _parts(path):
        if part == "%":
            raise ValueError(
                f"{path!r} ends with a lone %: write %% for a literal %, "
                "or a placeholder %j, %t, %a"
            )
        if part.startswith("%") and part[1] not in PLACEHOLDERS:
            known = ", ".join(f"%{k} ({v})" for k, v in PLACEHOLDERS.items())
            raise ValueError(f"{path!r}: unknown placeholder {part}; the known ones are {known}")
        if part == "%a" and not sweep:
            raise ValueError(
                f"{path!r}: %a is the sweep index and this task is not a sweep "
                "(give a sweep, or use %j / %t)"
            )


@dataclass(frozen=True)
class OutputIds:
    """What the placeholders stand for in one task."""

    job_id: int
    task_id: int
    sweep_index: int | None = None
    job_name: str = ""
    """``%x``: Slurm's job name (a probe's Slurm user reached for it)."""
    owner: str = ""
    node: str = ""


def expand_output_path(path: str, ids: OutputIds) -> str:
    """The path with its placeholders replaced. Total, so that dispatch never fails on it: what
    :func:`check_output_path` refuses at submit (an unknown placeholder, ``%a`` of a task that
    is not a sweep step) is left as written."""
    values = {
        "%j": str(ids.job_id),
        "%A": str(ids.job_id),
        "%t": str(ids.task_id),
        "%x": ids.job_name,
        "%u": ids.owner,
        "%N": ids.node,
        "%%": "%",
    }
    if ids.sweep_index is not None:
        values["%a"] = str(ids.sweep_index)
    return "".join(values.get(part, part) for part in _parts(path))


WIDEST: dict[str, int] = {"%x": 256, "%u": 32, "%N": 128}
"""Characters a placeholder may stand for at most (a job name, an API user name, a node
name); the ids, at most 20."""


def widest_expansion(path: str, per_char: int) -> int:
    """An upper bound of the expanded path's bytes, each character taking ``per_char``: a
    path of many ``%x`` grows far past its own length (tasksize's check reads this)."""
    return sum(
        per_char * (WIDEST.get(part, 20) if part.startswith("%") else len(part))
        for part in _parts(path)
    )


def expand_optional(path: str | None, ids: OutputIds) -> str | None:
    """:func:`expand_output_path` of a path that may be absent."""
    return None if path is None else expand_output_path(path, ids)
