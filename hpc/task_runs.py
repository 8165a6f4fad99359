"""What ``hpc task cancel | requeue`` prints of the tasks done: one line per run of
consecutive tasks with the same outcome, ``tasks 11.4000-4999 (sweep index 4000-4999):
Canceled (1,000)`` (a probe's 1,000-task cancel printed 1,000 lines; Slurm's scancel prints
none), the ids as the CLI takes them back (``hpc task requeue 11.4000-4999``). A task alone
keeps its line as it always was, ``task 7.1: Canceled``, which scripts read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Words = Callable[[dict[str, Any], int], str]
"""What is said of tasks done, after the colon: (the first's answer, how many) -> the words
(``Canceled`` for one, ``Canceled (1,000)`` for a run)."""


@dataclass
class _Run:
    """Consecutive tasks of a job said alike, their sweep indices one step apart (a job of
    several sweeps changes step between them: a new run, so no index is misstated)."""

    job: int
    first: int
    last: int
    answer: dict[str, Any]
    said: str
    index: int | None
    last_index: int | None
    step: int | None = None

    def takes(self, job: int, task: int, said: str, index: int | None) -> bool:
        if (job, task, said) != (self.job, self.last + 1, self.said):
            return False
        if index is None or self.last_index is None:
            return index is None and self.last_index is None
        step = index - self.last_index
        return step > 0 and self.step in (None, step)

    def add(self, task: int, index: int | None) -> None:
        if index is not None and self.last_index is not None:
            self.step, self.last_index = index - self.last_index, index
        self.last = task


def run_lines(done: Iterable[tuple[int, int, dict[str, Any]]], words: Words) -> list[str]:
    """A line per run of ``done`` (job, task, its answer) in the order given: consecutive
    ids of one job whose ``words`` for one task are the same."""
    runs: list[_Run] = []
    for job, task, answer in done:
        said = words(answer, 1)
        found = answer.get("sweepIndex")
        index = found if isinstance(found, int) and not isinstance(found, bool) else None
        if runs and runs[-1].takes(job, task, said, index):
            runs[-1].add(task, index)
        else:
            runs.append(_Run(job, task, task, answer, said, index, index))
    return [_line(run, words) for run in runs]


def _line(run: _Run, words: Words) -> str:
    """``task 58.3 (sweep index 20): ...``: the index said beside the id, which differ when
    a sweep does not count from 1 by 1 (a probe canceled the index it did not mean); a run's
    as its sweep was given (``0-18:2``)."""
    if run.first == run.last:
        at = f" (sweep index {run.index})" if run.index is not None else ""
        return f"task {run.job}.{run.first}{at}: {run.said}"
    at = ""
    if run.index is not None and run.last_index is not None:
        step = f":{run.step}" if run.step != 1 else ""
        at = f" (sweep index {run.index}-{run.last_index}{step})"
    count = run.last - run.first + 1
    return f"tasks {run.job}.{run.first}-{run.last}{at}: {words(run.answer, count)}"


def refusal_lines(refused: Iterable[tuple[int, int, str]], done: str) -> list[str]:
    """A line per run of consecutive tasks of a job refused alike (``refused``: job, task,
    the API's words, which name the task): ``tasks 15.1-3000: not canceled: each is already
    Canceled; nothing to cancel (3,000)`` (a probe's second cancel of 3,000 tasks printed
    3,001 lines). A task alone keeps its line, ``task 15.7: not canceled: task 15.7 is ...``."""
    runs: list[tuple[int, int, int, str, str]] = []  # job, first, last, words, as a run says
    for job, task, words in refused:
        alike = words.replace(f"task {job}.{task} ", "each ", 1)
        if runs and runs[-1][0] == job and runs[-1][2] == task - 1 and runs[-1][4] == alike:
            runs[-1] = (job, runs[-1][1], task, runs[-1][3], alike)
        else:
            runs.append((job, task, task, words, alike))
    lines = []
    for job, first, last, words, alike in runs:
        if first == last:
            lines.append(f"task {job}.{first}: not {done}: {words}")
        else:
            lines.append(f"tasks {job}.{first}-{last}: not {done}: {alike} ({last - first + 1:,})")
    return lines
