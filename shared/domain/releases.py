"""Nodes that running jobs' runtime limits free within a boot delay: supply known for sure.

Pure (no clock, no I/O). A node started for the warm pool is up one boot delay after its
start order. A running job whose runtime limit ends before then frees its nodes sooner
(it ends by its limit at the latest), so they refill the pool at least as early as the
started node would: starting it bills a boot for a node that comes up surplus. (KTH-SP2,
``forecast``: of the 26,694 pool nodes stopped unused, 22,006 saw a job end within the
boot delay after their start; the job ends a limit foretells are the part known in advance.)

Only the limit is certain. A job's end forecast from run times is not: it is a chance
(:mod:`shared.domain.endchance`), and :mod:`shared.domain.likelyends` weighs it. A job past
its limit still runs (some traces let it): its end is no longer known, so it frees nothing
here.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from shared.domain.hosts import held
from shared.domain.models import Task


@runtime_checkable
class LimitAware(Protocol):
    """An idle policy told when each job starts, on how many nodes, with what limit (and
    whose it is), and when it ends."""

    def job_started(
        self, key: Hashable, now: float, nodes: int, limit_s: float | None, user: str | None = None
    ) -> None: ...

    def job_ended(self, key: Hashable, now: float | None = None) -> None: ...


@dataclass
class LimitReleases:
    """The running jobs' limit ends (when each must end at the latest, and its nodes)."""

    _ends: list[tuple[float, int, int]] = field(default_factory=list)
    """(limit end, sequence number, nodes), sorted."""
    _of: dict[Hashable, tuple[float, int, int]] = field(default_factory=dict)
    _seq: int = 0

    def started(self, key: Hashable, now: float, nodes: int, limit_s: float | None) -> None:
        """Job ``key`` started at ``now`` on ``nodes`` nodes; None: no limit (no known end)."""
        if limit_s is None or not math.isfinite(limit_s) or limit_s <= 0:
            return
        self._seq += 1
        entry = (now + limit_s, self._seq, nodes)
        bisect.insort(self._ends, entry)
        self._of[key] = entry

    def ended(self, key: Hashable) -> None:
        entry = self._of.pop(key, None)
        if entry is not None:
            del self._ends[bisect.bisect_left(self._ends, entry)]

    def within(self, now: float, horizon_s: float) -> int:
        """Nodes that jobs' limits free after ``now`` and at most ``horizon_s`` later."""
        lo = bisect.bisect_right(self._ends, (now, math.inf, 0))
        hi = bisect.bisect_right(self._ends, (now + horizon_s, math.inf, 0))
        return sum(nodes for _, _, nodes in self._ends[lo:hi])

    def next_end(self, now: float) -> float:
        """The first limit end after ``now`` (inf: none): a job still running then frees
        nothing known any more."""
        i = bisect.bisect_right(self._ends, (now, math.inf, 0))
        return self._ends[i][0] if i < len(self._ends) else math.inf


@dataclass(frozen=True)
class RunningLimit:
    """Nodes of a group that a running task frees by its limit (the last to end on them)."""

    key: str
    """The task (``job.task``)."""
    start: float
    limit_s: float
    nodes: int
    user: str | None = None
    """Its job's owner, when known (the end forecast weighs the owner's own run times)."""


def running_limits(
    tasks: Iterable[Task], members: Collection[str], owners: Mapping[int, str] | None = None
) -> list[RunningLimit]:
    """For the cluster's timer: the ``members`` (a group's nodes) that running tasks hold,
    by the task whose limit ends last on each (a node is free only once all of its tasks
    end), told to the policy as that task's nodes (:meth:`LimitAware.job_started`). A node
    running a task without a limit (or not started yet) frees nothing known: left out.
    ``owners``: job id -> owner."""
    last: dict[str, Task | None] = {}
    group = set(members)
    for task in tasks:
        for node in {h.node for h in held(task)} & group:
            if node in last and last[node] is None:
                continue  # already unknown
            if task.runtime_limit_s is None or task.start_time is None:
                last[node] = None
                continue
            seen = last.get(node)
            if seen is None or _limit_end(task) > _limit_end(seen):
                last[node] = task
    count: dict[str, int] = {}
    freeing: dict[str, Task] = {}
    for last_task in last.values():
        if last_task is not None:
            count[last_task.key] = count.get(last_task.key, 0) + 1
            freeing[last_task.key] = last_task
    owners = owners or {}
    return [
        RunningLimit(k, _start(t), float(t.runtime_limit_s or 0), count[k], owners.get(t.job_id))
        for k, t in sorted(freeing.items())
    ]


def _start(task: Task) -> float:
    assert task.start_time is not None
    return task.start_time.timestamp()


def _limit_end(task: Task) -> float:
    return _start(task) + float(task.runtime_limit_s or 0)
