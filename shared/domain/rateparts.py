"""How many jobs to expect: three rate forecasts of the same submits, blended by weights
learnt online (EM).

Pure (no clock, no I/O). Each part is a whole estimate of the submit rate, from a
different view of the past:

- ``hour``: the exponentially weighted rate of the last hour (``value``'s);
- ``week``: the rate of this hour of the week over the past ``weeks`` weeks (work
  follows the working week: the same hour a week ago says more than the night before);
- ``burst``: the rate of the last ``burst_s`` seconds (users submit in bursts: after a
  submit the next comes sooner than an hour's rate says).

The forecast is ``sum_k weight_k x rate_k``; at each submit each part is credited with
its share of the forecast rate at that moment (its responsibility) and the weights move
toward the credits with a memory of ``memory`` submits: the online EM of a mixture of
intensities, which raises the weight of the part that named the submits best on this
workload and lowers the others; nothing is fitted offline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.domain.warmpool import DemandForecast

HOUR_S = 3600.0
WEEK_HOURS = 168
PARTS = ("hour", "week", "burst")


@dataclass
class WeekProfile:
    """Submits counted per hour (epoch hours); the rate of an hour is the mean count of the
    same hour of the week over the past ``weeks`` weeks that the counts cover."""

    weeks: int = 4
    counts: dict[int, int] = field(default_factory=dict)
    first: int | None = None
    """The first hour counted (weeks before it are not known)."""

    def observe(self, now: float) -> None:
        hour = int(now // HOUR_S)
        if self.first is None:
            self.first = hour
        self.counts[hour] = self.counts.get(hour, 0) + 1
        oldest = hour - self.weeks * WEEK_HOURS
        if len(self.counts) > (self.weeks + 1) * WEEK_HOURS:
            self.counts = {h: c for h, c in self.counts.items() if h >= oldest}

    def rate_at(self, now: float) -> float | None:
        """Submits per second expected this hour (None: no past week covers it yet)."""
        hour = int(now // HOUR_S)
        past = [hour - k * WEEK_HOURS for k in range(1, self.weeks + 1)]
        known = [h for h in past if self.first is not None and h >= self.first]
        if not known:
            return None
        return sum(self.counts.get(h, 0) for h in known) / len(known) / HOUR_S

    @staticmethod
    def next_hour(now: float) -> float:
        """When the hour (and so this rate) next changes."""
        return (math.floor(now / HOUR_S) + 1) * HOUR_S

    def to_dict(self) -> dict[str, Any]:
        """JSON (the cluster's timer stores it between runs): at most (weeks + 1) x 168
        hours of counts."""
        return {"first": self.first, "counts": {str(h): c for h, c in self.counts.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, weeks: int = 4) -> WeekProfile:
        data = data or {}
        first = data.get("first")
        counts = {int(h): int(c) for h, c in dict(data.get("counts") or {}).items()}
        return cls(weeks, counts, None if first is None else int(first))


@dataclass
class RateMix:
    """The three parts (see the module) and their learnt weights."""

    burst_s: float = 900.0
    memory: int = 500
    weeks: int = 4
    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 1 / 3))

    def __post_init__(self) -> None:
        self.hour = DemandForecast(tau_s=HOUR_S)
        self.burst = DemandForecast(tau_s=self.burst_s)
        self.week = WeekProfile(self.weeks)

    def rates(self, now: float) -> dict[str, float]:
        """Each part's rate (submits per second) at ``now``; the week part is the hour
        part's until a past week covers this hour."""
        hour = self.hour.rate_at(now)
        week = self.week.rate_at(now)
        return {"hour": hour, "week": hour if week is None else week,
                "burst": self.burst.rate_at(now)}  # fmt: skip

    def observe(self, now: float) -> None:
        """A submit at ``now``: one EM step on the weights, then count it."""
        rates = self.rates(now)
        total = sum(self.weights[k] * rates[k] for k in PARTS)
        if total > 0:
            for k in PARTS:
                credit = self.weights[k] * rates[k] / total
                self.weights[k] += (credit - self.weights[k]) / self.memory
        self.hour.observe(now, 1.0)
        self.burst.observe(now, 1.0)
        self.week.observe(now)

    def to_dict(self) -> dict[str, Any]:
        """The learnt state as JSON (the parameters are the policy's own)."""
        return {
            "weights": dict(self.weights),
            "hour": [self.hour.rate, self.hour.at],
            "burst": [self.burst.rate, self.burst.at],
            "week": self.week.to_dict(),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, burst_s: float = 900.0, memory: int = 500,
        weeks: int = 4,
    ) -> RateMix:  # fmt: skip
        """The mix :meth:`to_dict` stored (a fresh one from None), with these parameters."""
        mix = cls(burst_s, memory, weeks)
        if not data:
            return mix
        weights = dict(data.get("weights") or {})
        if set(weights) == set(PARTS):
            mix.weights = {k: float(weights[k]) for k in PARTS}
        mix.hour.rate, mix.hour.at = (float(x) for x in data.get("hour") or (0.0, 0.0))
        mix.burst.rate, mix.burst.at = (float(x) for x in data.get("burst") or (0.0, 0.0))
        mix.week = WeekProfile.from_dict(data.get("week"), weeks)
        return mix
