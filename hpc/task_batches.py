"""``hpc task cancel`` and ``hpc task requeue``: many tasks of a job in one request (``POST
/api/jobs/{id}/tasks/cancel`` or ``.../requeue``, as Slurm's ``scancel 39_[100-1100]`` is one
call; a command naming more is sent as several, at most MAX_ENTRIES ids and ranges and
MAX_TASKS tasks each, a long range cut between them), said in the order given: a line per run
of consecutive tasks done alike (:mod:`hpc.task_runs`; a task alone its own line, as before),
each refusal a line on stderr, exit 1 if any was refused.

A control plane older than those routes (its answer: 405 here, 404 without an API error in
Azure) gets one request per task, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from hpc.client import ApiClient, ApiError
from hpc.common import REFUSED, api_client, counted, stderr_console
from hpc.errors import CliError
from hpc.plaintable import print_lines
from hpc.task_runs import Words, refusal_lines, run_lines
from hpc.text import one_line
from shared.domain.taskspans import MAX_ENTRIES, MAX_TASKS, merged

Answer = dict[str, Any] | ApiError
"""A task's state as the API shows it (``id``, ``state``, ``sweepIndex``), or its refusal."""


@dataclass(frozen=True)
class Action:
    """Cancel or requeue: the route for many, the route for one (an older control plane)."""

    done: str
    many: Callable[[ApiClient, int, list[int | str]], dict[str, Any]]
    one: Callable[[ApiClient, int, int], dict[str, Any]]


CANCEL = Action("canceled", ApiClient.cancel_tasks, ApiClient.cancel_task)
REQUEUE = Action("requeued", ApiClient.requeue_tasks, ApiClient.requeue_task)


@dataclass
class Said:
    """What a job's answers said beside its tasks (a requeue's): the dependents that came
    back with several tasks of one request, summed (one task's own answer carries its
    own, as the one-task route's does), and the dependent jobs left Canceled."""

    dependents: int = 0
    jobs_left: list[Any] = field(default_factory=list)

    def add(self, answer: dict[str, Any], *, several: bool) -> None:
        back = answer.get("requeuedDependents")
        if several and isinstance(back, int):
            self.dependents += back
        self.jobs_left = answer.get("dependentJobsCanceled") or self.jobs_left


def cancel_each(tasks: list[tuple[int, int]], words: Words) -> None:
    """Cancel ``tasks`` (job, task), a request per job (more: :func:`_requests`)."""
    act_each(tasks, CANCEL, words)


def act_each(
    tasks: list[tuple[int, int]],
    action: Action,
    words: Words,
    after: Callable[[int, Said], list[str]] | None = None,
) -> None:
    """``action`` on ``tasks`` (job, task), a request per job (more for over MAX_ENTRIES
    runs of ids or MAX_TASKS tasks); ``words`` say the tasks done, a line per run (printed
    at once: rich's print of 10,000 lines takes 3.6 s). One task alone refused fails with
    the API's error as the one line, as before; any error that is not a refusal stops at
    once. ``after``: the lines that follow a job's tasks (what its answers said beside
    them). CliError once all is printed if any was refused."""
    answers: dict[tuple[int, int], Answer] = {}
    said: dict[int, Said] = {}
    with api_client() as client:
        for job, ids in _by_job(tasks).items():
            said[job] = Said()
            found = _act_in(client, action, job, ids, said[job])
            answers.update(((job, i), a) for i, a in found.items())
    refusals: list[tuple[int, int, str]] = []
    done: list[tuple[int, int, dict[str, Any]]] = []
    for job, task in tasks:
        answer = answers[(job, task)]
        if isinstance(answer, ApiError):
            if len(tasks) == 1:
                raise answer
            refusals.append((job, task, one_line(answer.message)))
        else:
            done.append((job, task, answer))
    refused = len(refusals)
    for line in refusal_lines(refusals, action.done):  # a line per run refused alike
        stderr_console().print(Text(line), soft_wrap=True)
    lines = run_lines(done, words)
    if after is not None:
        for job, what in said.items():
            lines += after(job, what)
    print_lines(lines)
    if refused:
        raise CliError(f"{refused} of {counted(len(tasks), 'task')} not {action.done}")


def _by_job(tasks: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for job, task in tasks:
        out.setdefault(job, []).append(task)
    return out


def _act_in(
    client: ApiClient, action: Action, job: int, ids: list[int], said: Said
) -> dict[int, Answer]:
    """Each task's answer, from the route for many (a request per :func:`_requests`)."""
    out: dict[int, Answer] = {}
    for entries, named in _requests(ids):
        try:
            answer = action.many(client, job, entries)
        except ApiError as exc:
            if exc.status == 405 or (exc.status == 404 and "error" not in exc.body):
                older = {i: _one(client, action, job, i) for i in ids if i not in out}
                for one in older.values():
                    if not isinstance(one, ApiError):
                        said.add(one, several=False)  # (each line says its own)
                return out | older
            if exc.status == 404 and isinstance(exc.body.get("taskCount"), int):
                out |= _outside(client, action, job, named, exc.body["taskCount"], said)
                continue
            if exc.status not in REFUSED:
                raise
            out |= dict.fromkeys(named, exc)  # (the job's: said for each, as before)
            continue
        done = answer.get("tasks", [])
        said.add(answer, several=len(done) > 1)
        if len(done) == 1:  # its line says its dependents, as the one-task route's
            done = [{**done[0], "requeuedDependents": answer.get("requeuedDependents")}]
        out |= {int(t["id"]): t for t in done}
        for r in answer.get("refused", []):
            out[int(r["id"])] = ApiError(int(r.get("status") or 409), str(r.get("error")), r)
    return out


def _outside(
    client: ApiClient, action: Action, job: int, ids: list[int], count: int, said: Said
) -> dict[int, Answer]:
    """The job has only ``count`` tasks: those beyond are refused as each alone would be,
    the rest sent again."""
    out: dict[int, Answer] = {
        i: ApiError(404, f"task {job}.{i} does not exist; job {job} has tasks 1 to {count}")
        for i in ids
        if i > count
    }
    inside = [i for i in ids if i <= count]
    return out | (_act_in(client, action, job, inside, said) if inside else {})


def _one(client: ApiClient, action: Action, job: int, task: int) -> Answer:
    try:
        return action.one(client, job, task)
    except ApiError as exc:
        if exc.status not in REFUSED:
            raise
        return exc


def _requests(ids: list[int]) -> Iterator[tuple[list[int | str], list[int]]]:
    """The ids as runs (``"100-1100"``), at most MAX_ENTRIES runs and MAX_TASKS tasks a
    request, a run longer than what is left of one cut there (``1-10001`` is two requests,
    as ``1-5000 6000-12000`` is); with the ids each names."""
    entries: list[int | str] = []
    named: list[int] = []
    for first, last in merged((i, i) for i in ids):
        while first <= last:
            if len(entries) >= MAX_ENTRIES or len(named) >= MAX_TASKS:
                yield entries, named
                entries, named = [], []
            end = min(last, first + MAX_TASKS - len(named) - 1)
            entries.append(first if first == end else f"{first}-{end}")
            named += range(first, end + 1)
            first = end + 1
    if entries:
        yield entries, named
