"""When a managed group's grow check is due (HPC Pack's GrowInterval), and which of its
overflow that check looks at; which queued tasks its last run found nodes for. Pure; read by the autoscaler (:mod:`shared.domain.autoscaler`)
and the pending reasons (:mod:`shared.domain.pending_scaling`), so that both say the same.

GrowInterval paces growth for new work: from a check that saw queued work the group's free
nodes could not take, the next regular check is at least an interval later. Two things
make a run's check due whatever the interval:

- The last check was quiet (it saw no such work: :attr:`GroupMemory.quiet`): the first job
  after a quiet spell is grown for at the next run, not up to a whole interval later.
- Work that lost its node (:func:`lost_its_node`: requeued after a Spot eviction, a node
  that went silent, a VM stopped under it). That replaces capacity the group had; it is no
  growth to pace (a probe: after an eviction the requeued tasks read "GrowInterval: next in
  33 s" while four VMs sat Offline). Such a check between regular ones looks at those tasks
  alone, and neither restarts the interval nor is held by GrowThreshold (they ran already).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from shared.domain.demand import may_run_in
from shared.domain.growshrink import GroupMemory, GroupPolicy
from shared.domain.models import Task
from shared.domain.notescope import covers, scope


def lost_its_node(task: Task) -> bool:
    """``task`` is queued again because its last attempt was given up with its node (evicted,
    unreachable, stopped or taken offline under it), not by a user's requeue."""
    if not task.lost:
        return False
    last = task.lost[-1]
    return last.result and last.attempt == task.attempt - 1


def next_check_in(memory: GroupMemory | None, gp_interval_s: float, now: datetime) -> float:
    """Seconds until the group's next regular grow check (0 or less: the next run checks)."""
    if memory is None or memory.last_grow_check is None or memory.quiet:
        return 0.0
    return (memory.last_grow_check - now).total_seconds() + gp_interval_s


@dataclass(frozen=True)
class Check:
    """One run's grow check of a group."""

    tasks: list[Task]
    """The overflow it looks at (a check not due looks at none)."""
    memory: GroupMemory
    paced: bool
    """A regular check (GrowThreshold applies); False: a replacement check, or none."""


def grow_check(memory: GroupMemory, gp: GroupPolicy, mine: Sequence[Task], now: datetime) -> Check:
    """The check of a group whose overflow (tasks no node up or starting takes) is ``mine``:
    all of it when GrowInterval makes the check due (remembered: the interval starts again,
    unless the check is quiet), else the tasks that lost their node, unremembered."""
    if next_check_in(memory, gp.grow_interval.total_seconds(), now) <= 0:
        return Check(list(mine), replace(memory, last_grow_check=now, quiet=not mine), True)
    return Check([t for t in mine if lost_its_node(t)], memory, False)


def with_covered(
    memory: GroupMemory,
    group: str,
    queued: Sequence[Task],
    overflow: Iterable[Task],
    claimed: Collection[tuple[int, int]],
    starting: bool,
) -> GroupMemory:
    """``memory`` with the queued tasks of ``group`` a run found nodes for (up, starting, or
    started by it: all but the ``overflow`` it started none for, ``claimed`` those it did),
    as a :mod:`shared.domain.notescope` scope. Kept only while nodes of it are ``starting``:
    a task counts as covered by VMs that come (:func:`is_covered`), and the scope is not
    worked out on runs that have none (the replay makes ~100k runs)."""
    if not starting:
        return memory if memory.covered is None else replace(memory, covered=None)
    left = {k for t in overflow if may_run_in(t, group) and (k := (t.job_id, t.id)) not in claimed}
    mine = (k for t in queued if may_run_in(t, group) and (k := (t.job_id, t.id)) not in left)
    return replace(memory, covered=scope(mine))


def is_covered(memory: GroupMemory | None, task: tuple[int, int]) -> bool:
    """The group's last run found nodes for ``task`` (up, or starting: it waits for those, not
    for a grow check). None in the scope (too many ranges, or no VM starting): unknown, not covered."""
    return memory is not None and memory.covered is not None and covers(memory.covered, *task)
