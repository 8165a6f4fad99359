"""Nodes that running jobs' runtime limits free within a boot delay: supply known for sure.

Pure (no clock, no I/O). A node started for the warm pool is up one boot delay after its
start order. A running job whose runtime limit ends before then frees its nodes sooner
(it ends by its limit at the latest), so they refill the pool at least as early as the
started node would: starting it bills a boot for a node that comes up surplus. (KTH-SP2,
``forecast``: of the 26,694 pool nodes stopped unused, 22,006 saw a job end within the
boot delay after their start; the job ends a limit foretells are the part known in advance.)

Only the limit is certain: a job's end predicted from run times (how long jobs ran before
it, or its user's jobs) is not, and such predictions taken off the pool's starts moved
along the wait/cost curve, not below it (README, "The simulator"). A job past its limit
still runs (some traces let it): its end is no longer known, so it frees nothing here.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from shared.domain.models import Task


@runtime_checkable
class LimitAware(Protocol):
    """An idle policy told when each job starts, on how many nodes, with what limit."""

    def job_started(self, key: Hashable, now: float, nodes: int, limit_s: float | None) -> None: ...

    def job_ended(self, key: Hashable) -> None: ...


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


def node_limits(tasks: Iterable[Task], members: Collection[str]) -> list[tuple[str, float, float]]:
    """For the cluster's timer: each of ``members`` (a group's nodes) that running tasks hold,
    as ``(node, start, limit_s)`` of the task whose limit ends last there (a node is free only
    once all of its tasks end), told to :meth:`LimitReleases.started` with one node. A node
    running a task without a limit (or not started yet) frees nothing known: left out."""
    last: dict[str, tuple[float, float] | None] = {}
    for task in tasks:
        held = {h.node for h in task.hosts} or ({task.node} if task.node else set())
        for node in held & set(members):
            if last.get(node, ()) is None:
                continue  # already unknown
            if task.runtime_limit_s is None or task.start_time is None:
                last[node] = None
                continue
            start = task.start_time.timestamp()
            seen = last.get(node)
            if seen is None or start + task.runtime_limit_s > sum(seen):
                last[node] = (start, float(task.runtime_limit_s))
    return [(n, s, lim) for n, v in sorted(last.items()) if v is not None for s, lim in [v]]
