"""The tasks one request names in a job: ids and ``FIRST-LAST`` ranges, as ``hpc task
cancel 39 10 12 20-30`` takes them (Slurm's ``scancel 39_[10,12,20-30]``), checked and
merged into ascending, disjoint spans (:func:`spans`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from shared.domain.messages import MAX_ID
from shared.domain.specvalues import cut, quoted, shown_json
from shared.errors import InvalidRequest

MAX_ENTRIES = 1000
"""Ids and ranges one request gives at most (more: several requests)."""

MAX_TASKS = 10_000
"""Tasks one request names at most: its answer says each one's state (more: several
requests, or the job's cancel)."""

SHAPE = '{"tasks": [12, "20-30", ...]}'
"""What the routes that take task ids read."""

_ENTRY = re.compile(r"([0-9]+)(?:-([0-9]+))?")

Span = tuple[int, int]


def spans(body: Any) -> list[Span]:
    """The body's ``tasks`` as ascending, disjoint spans (a task named twice is named once);
    InvalidRequest (422) saying what to fix for anything else."""
    if not isinstance(body, dict) or set(body) != {"tasks"}:
        raise InvalidRequest(f"the body is {SHAPE}: the task ids and FIRST-LAST ranges")
    entries = body["tasks"]
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest(f"tasks: give a list of task ids and FIRST-LAST ranges, {SHAPE}")
    if len(entries) > MAX_ENTRIES:
        raise InvalidRequest(
            f"tasks: {len(entries):,} ids and ranges; one request takes at most "
            f"{MAX_ENTRIES:,}: join consecutive ids into ranges, or send several requests"
        )
    joined = merged(_entry(e) for e in entries)
    total = sum(last - first + 1 for first, last in joined)
    if total > MAX_TASKS:
        raise InvalidRequest(
            f"tasks: {total:,} tasks; one request names at most {MAX_TASKS:,}: send several "
            "requests, or cancel the whole job"
        )
    return joined


def merged(spans: Iterable[Span]) -> list[Span]:
    """``spans`` ascending, those that overlap or touch joined: each number once, in runs
    (``(i, i)`` of single numbers gives their runs of consecutive ones)."""
    out: list[Span] = []
    for first, last in sorted(spans):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _entry(entry: Any) -> Span:
    """One id (a number, or its digits as text) or ``"FIRST-LAST"``."""
    if isinstance(entry, int) and not isinstance(entry, bool):
        return _ids(entry, entry, str(entry))
    text = entry.strip() if isinstance(entry, str) else None
    found = _ENTRY.fullmatch(text) if text is not None else None
    if found is None:
        raise InvalidRequest(
            f"tasks: {cut(shown_json(entry))} is neither a task id (12) nor a range of them "
            '("20-30")'
        )
    first = _number(found.group(1), entry)
    last = first if found.group(2) is None else _number(found.group(2), entry)
    return _ids(first, last, str(text))


def _number(digits: str, entry: Any) -> int:
    if len(digits.lstrip("0")) > len(str(MAX_ID)):
        return MAX_ID + 1
    return int(digits)


def _ids(first: int, last: int, text: str) -> Span:
    if first < 1 or last < 1:
        raise InvalidRequest(f"tasks: {quoted(cut(text))}: task ids are whole numbers from 1")
    if first > MAX_ID or last > MAX_ID:
        raise InvalidRequest(f"tasks: {quoted(cut(text))}: task ids end at {MAX_ID}")
    if last < first:
        raise InvalidRequest(
            f"tasks: {quoted(cut(text))}: a range goes from its first task to its last (e.g. 20-30)"
        )
    return first, last
