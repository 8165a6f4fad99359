"""Ski rental for idle nodes: how long an idle node stays up, from the idle gaps seen.

Pure (no clock, no I/O). An idle node either stays up (rent: one node-second per second)
or stops, and the next request that would have used it then pays a boot (buy: the boot
delay's node-seconds, and as many seconds of wait for the job). Knowing the recent
distribution of idle gaps G (how long a node stayed idle before work needed it again),
the keep time s that costs least on average is

    argmin_s  mean( min(G, s) + buy x [G > s] )

and it is one of the observed gaps (or 0): the cost is piecewise linear in s with its
kinks there. It is re-estimated from the last ``window`` gaps of the group, so it follows
the workload (short when idle nodes are seldom reused in time, up to the longest gap that
pays when they are), with nothing fitted to a trace. A stopped node's gap is measured up
to the next start the group needed: it would have been reused then, had it been kept.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

from shared.domain.warmpool import AdaptivePool, Plan


@dataclass
class SkiRental:
    """The keep time that minimises rent + buy over the last ``window`` idle gaps."""

    buy_s: float
    """What a boot costs, in node-seconds (boot delay x (1 + the weight of a wait))."""
    window: int = 300
    max_keep_s: float = 3600.0
    default_s: float = 0.0
    """The keep time before any gap is seen."""
    _recent: deque[float] = field(default_factory=deque, init=False, repr=False)
    _sorted: list[float] = field(default_factory=list, init=False, repr=False)
    _keep: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.buy_s < 0 or self.window < 1:
            raise ValueError("buy_s must be >= 0 and window >= 1")

    def observe(self, gap_s: float) -> None:
        """One idle gap (seconds; negative ones are ignored)."""
        if gap_s < 0:
            return
        gap = min(gap_s, self.max_keep_s + 1.0)
        self._recent.append(gap)
        bisect.insort(self._sorted, gap)
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._keep = None

    def keep_s(self) -> float:
        """The keep time (seconds) of least mean cost on the gaps in the window."""
        if self._keep is None:
            self._keep = self._best()
        return self._keep

    def _best(self) -> float:
        gaps = self._sorted
        n = len(gaps)
        if n == 0:
            return self.default_s
        # keep s = 0: every gap pays a boot; s = gaps[k]: gaps[:k+1] pay their length,
        # the rest pay s + buy each
        best_s, best = 0.0, self.buy_s * sum(1 for g in gaps if g > 0)
        below = 0.0
        for k, g in enumerate(gaps):
            below += g
            if g > self.max_keep_s:
                break
            if k + 1 < n and gaps[k + 1] == g:
                continue
            cost = below + (n - k - 1) * (g + self.buy_s)
            if cost < best:
                best_s, best = g, cost
        return best_s


@dataclass
class SkiKeep:
    """``keep``'s warm pool (kept from nodes already up, never started for), and beyond
    it each idle node stops after the ski-rental keep time of the group's recent gaps."""

    boot_delay_s: float
    max_nodes: int
    headroom: float = 2.0
    tau_s: float = 3600.0
    wait_weight: float = 1.0
    """A second of a job's wait for a boot, in node-seconds (buy = boot x (1 + it))."""
    window: int = 300
    keep: AdaptivePool = field(init=False, repr=False)
    rental: SkiRental = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.keep = AdaptivePool(
            self.boot_delay_s,
            self.max_nodes,
            0,
            headroom=self.headroom,
            tau_s=self.tau_s,
            boots=False,
        )
        self.rental = SkiRental(self.boot_delay_s * (1 + self.wait_weight), window=self.window)

    def arrived(self, now: float, nodes: int) -> None:
        self.keep.arrived(now, nodes)

    def idle_gap(self, seconds: float) -> None:
        self.rental.observe(seconds)

    def plan(self, now: float, in_use: int, waiting: int, up: int) -> Plan:
        base = self.keep.plan(now, in_use, waiting, up)
        return Plan(base.min_nodes, math.ceil(self.rental.keep_s()))

    def changes_at(self, now: float) -> float:
        return self.keep.changes_at(now)
