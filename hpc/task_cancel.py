"""``hpc task cancel``: many tasks of a job in one request (``POST /api/jobs/{id}/tasks/cancel``,
as Slurm's ``scancel 39_[100-1100]`` is one call), said as before: one line per task in the
order given, each refusal a line on stderr, exit 1 if any was refused.

A control plane older than that route (its answer: 405 here, 404 without an API error in
Azure) gets one request per task, as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.text import Text

from hpc.client import ApiClient, ApiError
from hpc.common import REFUSED, api_client, counted, stderr_console, stdout_console
from hpc.errors import CliError
from hpc.text import one_line
from shared.domain.taskspans import MAX_ENTRIES, MAX_TASKS

Answer = dict[str, Any] | ApiError
"""A task's state as the API shows it (``id``, ``state``, ``sweepIndex``), or its refusal."""


def cancel_each(
    tasks: list[tuple[int, int]], line: Callable[[dict[str, Any], int, int], str]
) -> None:
    """Cancel ``tasks`` (job, task), a request per job (more for over MAX_ENTRIES runs of
    ids); ``line`` says each one canceled (printed at once: rich's print of 10,000 lines takes 3.6 s). One task alone refused fails with the API's
    error as the one line, as before; any error that is not a refusal stops at once."""
    answers: dict[tuple[int, int], Answer] = {}
    with api_client() as client:
        for job, ids in _by_job(tasks).items():
            answers.update(((job, i), a) for i, a in _cancel_in(client, job, ids).items())
    refused = 0
    said: list[str] = []
    for job, task in tasks:
        answer = answers[(job, task)]
        if isinstance(answer, ApiError):
            if len(tasks) == 1:
                raise answer
            why = Text(f"task {job}.{task}: not canceled: {one_line(answer.message)}")
            stderr_console().print(why, soft_wrap=True)
            refused += 1
        else:
            said.append(line(answer, job, task))
    console = stdout_console()
    if said and console.is_terminal:
        console.print("\n".join(said), markup=False)
    elif said:  # piped: the same bytes (lines far shorter than its 160 columns), 100x faster
        sys.stdout.write("".join(f"{s}\n" for s in said))
        sys.stdout.flush()
    if refused:
        raise CliError(f"{refused} of {counted(len(tasks), 'task')} not canceled")


def _by_job(tasks: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for job, task in tasks:
        out.setdefault(job, []).append(task)
    return out


def _cancel_in(client: ApiClient, job: int, ids: list[int]) -> dict[int, Answer]:
    """Each task's answer, from the route for many (a request per :func:`_requests`)."""
    out: dict[int, Answer] = {}
    for entries, named in _requests(ids):
        try:
            answer = client.cancel_tasks(job, entries)
        except ApiError as exc:
            if exc.status == 405 or (exc.status == 404 and "error" not in exc.body):
                return out | {i: _one(client, job, i) for i in ids if i not in out}  # older
            if exc.status == 404 and isinstance(exc.body.get("taskCount"), int):
                out |= _outside(client, job, named, exc.body["taskCount"])
                continue
            if exc.status not in REFUSED:
                raise
            out |= dict.fromkeys(named, exc)  # (the job's: said for each, as before)
            continue
        out |= {int(t["id"]): t for t in answer.get("tasks", [])}
        for r in answer.get("refused", []):
            out[int(r["id"])] = ApiError(int(r.get("status") or 409), str(r.get("error")), r)
    return out


def _outside(client: ApiClient, job: int, ids: list[int], count: int) -> dict[int, Answer]:
    """The job has only ``count`` tasks: those beyond are refused as each alone would be,
    the rest sent again."""
    out: dict[int, Answer] = {
        i: ApiError(404, f"task {job}.{i} does not exist; job {job} has tasks 1 to {count}")
        for i in ids
        if i > count
    }
    inside = [i for i in ids if i <= count]
    return out | (_cancel_in(client, job, inside) if inside else {})


def _one(client: ApiClient, job: int, task: int) -> Answer:
    try:
        return client.cancel_task(job, task)
    except ApiError as exc:
        if exc.status not in REFUSED:
            raise
        return exc


def _requests(ids: list[int]) -> Iterator[tuple[list[int | str], list[int]]]:
    """The ids as runs (``"100-1100"``), at most MAX_ENTRIES runs and MAX_TASKS tasks a
    request; with the ids each names."""
    entries: list[int | str] = []
    named: list[int] = []
    for first, last in _runs(sorted(set(ids))):
        size = last - first + 1
        if entries and (len(entries) >= MAX_ENTRIES or len(named) + size > MAX_TASKS):
            yield entries, named
            entries, named = [], []
        entries.append(first if first == last else f"{first}-{last}")
        named += range(first, last + 1)
    if entries:
        yield entries, named


def _runs(ids: list[int]) -> Iterator[tuple[int, int]]:
    """Ascending ids as runs of consecutive ones."""
    start = prev = None
    for i in ids:
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None and prev is not None:
            yield start, prev
        start = prev = i
    if start is not None and prev is not None:
        yield start, prev
