"""Dependencies between the tasks of one job (HPC Pack's task dependencies). Pure.

A task names its prerequisites by task name (``"dependsOn": ["prep"]``); a name may belong to
several tasks (every step of a named sweep carries the sweep's name), and a dependent waits
for all of them. The graph must be acyclic and name only tasks of the job: checked at submit
(422 naming the cycle or the unknown name).

Task ids follow a topological order that keeps the spec's order wherever the dependencies
allow: a prerequisite always has a lower id than its dependents, so it comes first in the
scheduling queue (same job, same priority) and can never be stuck behind them.

The job keeps, per name that something depends on, a :class:`~shared.domain.models.Step`:
how many of its tasks have not ended and how many ended other than Finished. Those counts
move with every task transition (:meth:`Job.count`), so deciding whether a dependent may
start reads the job document alone, however many tasks the job has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from shared.domain.models import Job, Step, Task


class Node(Protocol):
    """What the graph needs of a task spec."""

    name: str
    depends_on: list[str]

    def task_count(self) -> int: ...


def spec_order(specs: Sequence[Node]) -> list[int]:
    """The specs' indices in the order their tasks get ids: prerequisites first, else as
    given. Raises ValueError naming an unknown name, a self-dependency or a cycle."""
    named: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        if spec.name:
            named.setdefault(spec.name, []).append(i)
    needs: list[set[int]] = []
    for i, spec in enumerate(specs):
        wanted: set[int] = set()
        for name in spec.depends_on:
            if name not in named:
                raise ValueError(
                    f"tasks.{i}.dependsOn: no task of the job is named {name!r}; "
                    f"names: {', '.join(sorted(named)) or 'none (give tasks a name)'}"
                )
            if i in named[name]:
                raise ValueError(f"tasks.{i}.dependsOn: task {name!r} depends on itself")
            wanted.update(named[name])
        needs.append(wanted)
    placed: list[int] = []
    done: set[int] = set()
    waiting = list(range(len(specs)))
    while waiting:
        ready = next((i for i in waiting if needs[i] <= done), None)
        if ready is None:
            raise ValueError("tasks.dependsOn has a cycle: " + _cycle(specs, needs, waiting))
        waiting.remove(ready)
        placed.append(ready)
        done.add(ready)
    return placed


def _cycle(specs: Sequence[Node], needs: list[set[int]], waiting: list[int]) -> str:
    """One cycle among the waiting specs, as ``a -> b -> a``."""
    left = set(waiting)
    path: list[int] = []
    at = waiting[0]
    while at not in path:
        path.append(at)
        at = min(n for n in needs[at] if n in left)
    loop = path[path.index(at) :] + [at]
    return " -> ".join(repr(specs[i].name or f"tasks.{i}") for i in loop)


def steps(specs: Sequence[Node]) -> dict[str, Step]:
    """The job's step counts at submit: for each name something depends on, its task count."""
    wanted = {name for spec in specs for name in spec.depends_on}
    out: dict[str, Step] = {}
    for spec in specs:
        if spec.name in wanted:
            step = out.setdefault(spec.name, Step())
            step.left += spec.task_count()
    return out


def waiting_for(task: Task, job: Job) -> str | None:
    """Why the task may not start yet because of its prerequisites (None: it may)."""
    for name in task.depends_on:
        step = job.steps.get(name)
        if step is None:
            continue
        if step.left > 0:
            return f"dependency {name!r} not finished ({_tasks(step.left)} left)"
        if step.failed and not job.run_dependents_on_failure:
            return f"dependency {name!r} {_unfinished(step, None)}; this task will be canceled"
    return None


def doomed(
    depends_on: Sequence[str],
    steps: Mapping[str, Step],
    job: Job,
    failed: Mapping[str, int] | None = None,
) -> str | None:
    """Why a task with these prerequisites can never run (one of them Failed or was
    Canceled), so it is Canceled; None if it still can. ``failed``: how many tasks of each
    name ended Failed, where the caller counted them (a :class:`Step` counts Failed and
    Canceled together), so that the reason says which; a name not in it: words that fit both."""
    name = failed_prerequisite(depends_on, steps, job)
    if name is None:
        return None
    known = None if failed is None else failed.get(name)
    return f"dependency {name!r} {_unfinished(steps[name], known)}"


def failed_prerequisite(
    depends_on: Sequence[str], steps: Mapping[str, Step], job: Job
) -> str | None:
    """The first of these prerequisite names that Failed or was Canceled, which dooms a task
    that needs it (:func:`doomed`); None if none does, or the job runs dependents anyway. A
    task canceled for it keeps the name (``Task.canceled_for``), so that a requeue of the
    prerequisite brings it back (:mod:`shared.domain.lifecycle.dependents`)."""
    if job.run_dependents_on_failure:
        return None
    for name in depends_on:
        step = steps.get(name)
        if step is not None and step.failed:
            return name
    return None


def _unfinished(step: Step, failed: int | None) -> str:
    """How a step's tasks that did not finish ended: ``failed`` of them Failed, the rest
    Canceled (None: not known; a canceled prerequisite is no failure, as a probe found)."""
    n = step.failed
    if failed is None:
        were = "was" if n == 1 else "were"
        return f"did not finish ({_tasks(n)} failed or {were} canceled)"
    if failed <= 0:
        return f"did not finish ({_tasks(n)} canceled)"
    if failed >= n:
        return f"failed ({_tasks(n)} did not finish)"
    return f"did not finish ({failed} failed, {n - failed} canceled)"


def _tasks(n: int) -> str:
    return f"{n} task{'s' if n != 1 else ''}"
