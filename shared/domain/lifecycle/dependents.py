"""The dependents a task's requeue brings back: the tasks canceled only because it failed.

Part of :mod:`shared.domain.lifecycle` (its docstring states the guarantees). Pure.

A task whose prerequisite Failed or was Canceled is canceled as doomed and keeps the
prerequisite's name (``canceled_for``; a sweep's tasks not created yet keep it on their range).
When a user requeues the prerequisite (``hpc task requeue``), what HPC Pack users expect is
that its dependents run once it Finishes: so the requeue also requeues, transitively down the
dependency graph, every task canceled as doomed whose prerequisites then no longer hold a
failure. A task a user canceled, or that Failed or was canceled with its job, has no
``canceled_for`` and stays as it is; and so does a doomed task one of whose prerequisites
still holds a failure the requeue does not undo (another task of that name failed, or a user
canceled one): it would be canceled again at once.

The rule reads counts alone: the job's steps and the doomed tasks grouped by name and
prerequisites (a :class:`Doomed` group: a sweep's canceled range is one group of its size), so a
million-task sweep is decided without making its tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.domain.models import Step


@dataclass(frozen=True)
class Doomed:
    """Tasks canceled as doomed that share a name and prerequisites (they come back together)."""

    name: str
    depends_on: tuple[str, ...]


def revived(
    steps: Mapping[str, Step],
    requeued: str,
    doomed: Mapping[Doomed, int],
    *,
    run_dependents_on_failure: bool = False,
) -> set[Doomed]:
    """The groups of ``doomed`` (each with how many tasks it has) that come back when one task
    named ``requeued`` goes from Failed or Canceled to Queued. ``steps``: the job's steps
    before the requeue (not changed). A group comes back if one of its prerequisites is the
    requeued name or a group come back (it is downstream), and none of its prerequisites
    still has a task that Failed or was Canceled once those come back."""
    return revived_after(
        failed_after(steps, requeued),
        [requeued],
        doomed,
        run_dependents_on_failure=run_dependents_on_failure,
    )


def failed_after(steps: Mapping[str, Step], requeued: str) -> dict[str, int]:
    """Each name's tasks that Failed or were Canceled once one task named ``requeued`` is
    Queued again (``steps``: the job's before that requeue)."""
    failed = {name: step.failed for name, step in steps.items()}
    if requeued in failed:
        failed[requeued] -= 1
    return failed


def revived_after(
    failed: Mapping[str, int],
    requeued: Iterable[str],
    doomed: Mapping[Doomed, int],
    *,
    run_dependents_on_failure: bool = False,
) -> set[Doomed]:
    """:func:`revived` for many tasks requeued at once (``hpc task requeue 39 1-500``): the
    groups that come back when tasks of the names ``requeued`` went from Failed or Canceled
    to Queued; ``failed``: each name's tasks that Failed or were Canceled, those requeues
    counted (the job's steps after them)."""
    if run_dependents_on_failure:  # nothing was doomed: its dependents ran anyway
        return set()
    failed = dict(failed)
    reached = set(requeued)
    back: set[Doomed] = set()
    changed = True
    while changed:
        changed = False
        for group, n in doomed.items():
            if group in back or n <= 0 or not reached & set(group.depends_on):
                continue
            if any(failed.get(name, 0) > 0 for name in group.depends_on):
                continue
            back.add(group)
            reached.add(group.name)
            if group.name in failed:
                failed[group.name] -= n
            changed = True
    return back


def group_of(name: str, depends_on: Iterable[str]) -> Doomed:
    """The group of a doomed task (or range template) with this name and prerequisites."""
    return Doomed(name=name, depends_on=tuple(depends_on))
