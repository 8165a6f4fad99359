"""Which waiting tasks an autoscaler note is about, so that each task's pending reason
quotes only the notes that concern it.

Why: a group's notes were quoted by every task waiting for the group. A probe submitted 13
one-core tasks to a group of three 2-core VMs, all Offline: the ceiling rule
(:mod:`shared.domain.ceiling`) hid the last 7, and its note, "7 queued tasks of jobs 1, 3
wait for running work ... no node is started for it", was what task 1.1 read too, while
its nodes were merely waiting for the group's next grow check.

A scope is compact text, stored with the note: each job's task ids as ranges,
``"1:7-12 3:1"`` (job 1's tasks 7 to 12, job 3's task 1; ``"5:1-3,9"``). A scope of more
than :data:`MAX_RANGES` ranges is not kept (the note is then about every waiting task of
the group, as before), which bounds what the autoscaler's memory document holds.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_RANGES = 256
"""Ranges a scope may hold; beyond them the note concerns the whole group."""


def scope(keys: Iterable[tuple[int, int]]) -> str | None:
    """The scope of the tasks ``keys`` (``(job_id, task_id)``); None if it would hold more
    than :data:`MAX_RANGES` ranges, or no task."""
    jobs: dict[int, list[int]] = {}
    for job_id, task_id in keys:
        jobs.setdefault(job_id, []).append(task_id)
    parts: list[str] = []
    count = 0
    for job_id in sorted(jobs):
        ranges: list[str] = []
        ids = sorted(set(jobs[job_id]))
        first = last = ids[0]
        for i in [*ids[1:], None]:
            if i is not None and i == last + 1:
                last = i
                continue
            ranges.append(str(first) if first == last else f"{first}-{last}")
            if i is not None:
                first = last = i
        count += len(ranges)
        if count > MAX_RANGES:
            return None
        parts.append(f"{job_id}:{','.join(ranges)}")
    return " ".join(parts) or None


def covers(scope_text: str | None, job_id: int, task_id: int) -> bool:
    """Whether a note of ``scope_text`` (None: every task of its group) concerns the task.
    A scope that does not parse concerns every task (a note is never lost to it)."""
    if scope_text is None:
        return True
    try:
        for part in scope_text.split():
            job, _, ranges = part.partition(":")
            if int(job) != job_id:
                continue
            for r in ranges.split(","):
                low, _, high = r.partition("-")
                if int(low) <= task_id <= int(high or low):
                    return True
        return False
    except ValueError:
        return True
