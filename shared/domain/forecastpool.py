"""The ``forecast`` idle policy: ``value``'s warm pool, on a forecast that anticipates demand.

Pure (no clock, no I/O). ``value`` (:mod:`shared.domain.waitvalue`) keeps the pool of m
idle nodes that maximises ``jobs expected per second of width <= m x boot delay x W - m``
from an hour's rate and the last few hundred widths. Both are the past, averaged: what
was missing is forecast (README, "The simulator": with the next 10 minutes' arrivals
known, the same rule gives 1.029x / 56 s on KTH-SP2). Here the same rule runs on

- the rate of :class:`shared.domain.rateparts.RateMix`: the hour's rate, this hour of the
  week over the past weeks, and the bursts of the last quarter hour, weighted by EM;
- the widths of :class:`shared.domain.userwidths.UserWidths`: the global histogram
  blended with the recently active users' own widths (who submits next asks for what
  they asked for), the blend also learnt by EM.

Starting a node bills its boot before it serves, so each part's rate is divided by its
own start margin (:func:`shared.domain.waitvalue.served_margin` of that part's time
constant: a burst that fades in 15 min must be 2.16x a node's break-even to pay a boot
and the idle seconds until it fades, the hour's rate 1.42x) for the nodes *started*;
nodes already up are kept to the pool at W. And no node is started for the pool that
running jobs free within a boot delay, for sure by their runtime limits
(:mod:`shared.domain.releases`) or likely by their run times so far
(:mod:`shared.domain.likelyends`, :class:`shared.domain.endchance.EndChance`): their nodes
refill the pool no later than the started node would.

It needs each job's user and end (``SessionAware``) and the running jobs' starts and limits
(``LimitAware``): the cluster's timer tells it all of them (:mod:`shared.usecases.idle_policy`:
the running jobs afresh each run, from the active tasks) and keeps its learnt state between
runs (:meth:`to_dict`, :meth:`restore`), so a node group runs the same object the simulator
does.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from shared.domain.endchance import EndChance
from shared.domain.likelyends import Release, freed_by, sure_nodes
from shared.domain.rateparts import HOUR_S, PARTS, RateMix, WeekProfile
from shared.domain.releases import LimitReleases
from shared.domain.userwidths import UserWidths
from shared.domain.waitvalue import (
    VALUE_WAIT_WEIGHT,
    best_of,
    served_margin,
    shrink_rate,
    slopes,
    spared,
)
from shared.domain.warmpool import Plan, min_nodes


@dataclass(frozen=True)
class _Run:
    """A running job as the end forecast needs it."""

    start: float
    limit_s: float
    nodes: int
    user: str | None


BURST_S = 900.0
"""The burst part's time constant: a quarter hour, as a user's activity (userwidths)."""


@dataclass
class ForecastPool:
    """The ``forecast`` policy (see the module): one per group and replay."""

    boot_delay_s: float
    max_nodes: int
    wait_weight: float = VALUE_WAIT_WEIGHT
    burst_s: float = BURST_S
    idle_s: int = 0

    def __post_init__(self) -> None:
        self.rates = RateMix(burst_s=self.burst_s)
        self.widths = UserWidths()
        self.releases = LimitReleases()
        self.ends = EndChance()
        self.running: dict[Hashable, _Run] = {}
        self._likely: tuple[float, list[Release]] | None = None
        """:meth:`likely_ends` at a time, until the running jobs or the runs learnt change
        (the deferral and the plan ask for it at the same time)."""
        hour = served_margin(self.boot_delay_s, HOUR_S)
        self.margins = {"hour": hour, "week": hour,
                        "burst": served_margin(self.boot_delay_s, self.burst_s)}  # fmt: skip

    # -- its memory (the cluster's timer keeps it between runs)
    def to_dict(self) -> dict[str, Any]:
        """The learnt state as JSON: the rates' and the widths' (not the parameters)."""
        return {
            "rates": self.rates.to_dict(),
            "widths": self.widths.to_dict(),
            "ends": self.ends.to_dict(),
        }

    def restore(self, data: Mapping[str, Any] | None) -> None:
        """Take up the state :meth:`to_dict` stored (None: start afresh)."""
        data = data or {}
        self.rates = RateMix.from_dict(data.get("rates"), burst_s=self.burst_s)
        self.widths = UserWidths.from_dict(data.get("widths"))
        self.ends = EndChance.from_dict(data.get("ends"))
        self._likely = None

    # -- what it is told
    def arrived(self, now: float, nodes: int, user: str | None = None) -> None:
        self.rates.observe(now)
        self.widths.submitted(now, nodes, user)

    def ended(
        self, now: float, nodes: int, user: str | None = None, ran_s: float | None = None
    ) -> None:
        self.widths.ended(now, user)

    def job_started(
        self, key: Hashable, now: float, nodes: int, limit_s: float | None, user: str | None = None
    ) -> None:
        self.releases.started(key, now, nodes, limit_s)
        if limit_s is not None and limit_s > 0:
            self.running[key] = _Run(now, float(limit_s), nodes, user)
            self._likely = None

    def job_ended(self, key: Hashable, now: float | None = None) -> None:
        """Job ``key`` ended (at ``now``: its run time is learnt, :meth:`ran`)."""
        self.releases.ended(key)
        run = self.running.pop(key, None)
        self._likely = None
        if run is not None and now is not None:
            self.ran(run.user, run.limit_s, now - run.start)

    def ran(self, user: str | None, limit_s: float, ran_s: float) -> None:
        """A job of ``user`` with ``limit_s`` ran ``ran_s`` to its end (the cluster's timer
        tells the ends it reads, :mod:`shared.domain.jobevents`)."""
        self.ends.ended(user, limit_s, ran_s)
        self._likely = None

    def likely_ends(self, now: float) -> list[Release]:
        """Each running job's nodes and its chance to end within a boot delay."""
        if self._likely is None or self._likely[0] != now:
            likely = [
                Release(
                    key,
                    r.nodes,
                    self.ends.chance(r.user, r.limit_s, now - r.start, self.boot_delay_s),
                )
                for key, r in self.running.items()
            ]
            self._likely = (now, likely)
        return self._likely[1]

    def idle_gap(self, seconds: float) -> None:
        return None

    # -- the plan
    def rate(self, now: float, start: bool) -> float:
        """Jobs expected per second; for starts, each part divided by its margin."""
        rates = self.rates.rates(now)
        w = self.rates.weights
        return sum(w[k] * rates[k] / (self.margins[k] if start else 1.0) for k in PARTS)

    def _candidates(self, now: float) -> list[tuple[int, float]]:
        return slopes(self.widths.shares(now), self.boot_delay_s, self.wait_weight)

    def pool(self, now: float) -> int:
        return best_of(self.rate(now, False), self._candidates(now), self.max_nodes)

    def start_pool(self, now: float) -> int:
        return best_of(self.rate(now, True), self._candidates(now), self.max_nodes)

    def plan(self, now: float, in_use: int, waiting: int, up: int, deferred: int = 0) -> Plan:
        """``deferred``: boots the queued work does not start for the releases it counts on
        (:func:`shared.domain.likelyends.deferrals`): those nodes are not the pool's."""
        idle = max(0, up - in_use - waiting)
        freed = max(0, self.releases.within(now, self.boot_delay_s) - deferred)
        start_pool = self.start_pool(now)
        if start_pool > freed:
            freed = max(freed, sure_nodes(self.likely_ends(now)) - deferred)
        start = max(0, start_pool - freed)
        keep = self.pool(now)
        if keep > start and self.running:  # idle nodes kept: valued with the likely releases
            taken = max(0, waiting - (up - in_use)) + deferred  # the queued work's, first
            times = self._freed_times(now)[taken:]
            if times:
                shares = self.widths.shares(now)
                valued = spared(shares, times, self.boot_delay_s, self.wait_weight)
                keep = max(start, best_of(self.rate(now, False), valued, self.max_nodes))
        pool = max(start, min(keep, idle))
        return Plan(min_nodes(in_use, waiting, pool, self.max_nodes), self.idle_s)

    def _freed_times(self, now: float) -> list[float]:
        """When the running jobs likely free their nodes (:func:`likelyends.freed_by`)."""
        jobs = []
        for release in self.likely_ends(now):
            if release.chance >= 0.05:
                r = self.running[release.key]
                jobs.append((r.nodes, partial(self.ends.chance, r.user, r.limit_s, now - r.start)))
        return freed_by(jobs, self.boot_delay_s)

    def changes_at(self, now: float) -> float:
        """When the plan next changes if nothing arrives: a pool shrinking as the rates
        decay, the next hour (the week part's rate changes), or a job outliving its limit
        (its nodes no longer count as freed)."""
        until = WeekProfile.next_hour(now)
        candidates = self._candidates(now)
        shrinks = min(self._shrinks(now, until, candidates, s) for s in (False, True))
        return min(shrinks, self.releases.next_end(now))

    def _shrinks(
        self, now: float, until: float, candidates: list[tuple[int, float]], start: bool
    ) -> float:
        crossing = shrink_rate(self.rate(now, start), candidates, self.max_nodes)
        if crossing is None or self.rate(until - 1e-3, start) > crossing:
            return until
        if self.rate(now, start) <= crossing:
            return now
        lo, hi = now, until - 1e-3  # the rates only fall within the hour: bisect
        while hi - lo > 1e-3:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.rate(mid, start) > crossing else (lo, mid)
        return hi + 1e-6
