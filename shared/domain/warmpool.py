"""A warm pool sized from forecast demand: the knob the ``adaptive`` idle policy turns.

Pure (no clock, no I/O). The autoscaler (:mod:`shared.domain.autoscaler`) is left as it
is: this module only computes, before each of its runs, the group's ``min_nodes``:

    min_nodes = nodes in use + nodes the queue waits for + pool

where *pool* is the number of spare nodes expected to be asked for within one boot delay,
from an exponentially weighted arrival rate of node demand (nodes requested per second,
time constant ``tau``). The autoscaler then keeps that many idle nodes (its shrink never
goes below ``min_nodes``) and starts nodes ahead of demand to refill the pool (its grow
keeps ``min_nodes`` up), while every idle node beyond the pool stops after the short idle
time. The pool grows when work arrives faster (daytime, bursts) and shrinks by itself when
arrivals stop (nights, weekends), so no idle time is tuned to one trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class DemandForecast:
    """Exponentially weighted rate of node demand (nodes asked for per second)."""

    tau_s: float = 3600.0
    rate: float = 0.0
    at: float = 0.0

    def rate_at(self, now: float) -> float:
        if now <= self.at:
            return self.rate
        return self.rate * math.exp(-(now - self.at) / self.tau_s)

    def observe(self, now: float, nodes: float) -> None:
        """A request of ``nodes`` nodes arrived at ``now``."""
        self.rate = self.rate_at(now) + nodes / self.tau_s
        self.at = max(now, self.at)


@dataclass(frozen=True)
class WarmPool:
    """The pool: ``ceil(headroom x rate x boot_delay)`` spare nodes (less a hundredth), at most ``max_pool``."""

    boot_delay_s: float
    headroom: float = 2.0
    """Multiplies the expected demand within one boot delay (arrivals come in bursts)."""
    max_pool: int = 100

    def size(self, rate: float) -> int:
        """Spare nodes to keep; an expectation under a hundredth of a node keeps none."""
        expected = self.headroom * rate * self.boot_delay_s
        return max(0, min(self.max_pool, math.ceil(expected - _SLACK)))

    def shrinks_at(self, forecast: DemandForecast, now: float) -> float:
        """When the pool will next be one node smaller if nothing arrives (inf: never)."""
        size = self.size(forecast.rate_at(now))
        if size <= 0:
            return math.inf
        # size(r) <= size - 1  <=>  headroom * r * boot <= size - 1 + slack
        limit = (size - 1 + _SLACK) / (self.headroom * self.boot_delay_s)
        rate = forecast.rate_at(now)
        if rate <= limit:
            return now
        return now + forecast.tau_s * math.log(rate / limit) + 1e-6


_SLACK = 0.01


def min_nodes(in_use: int, queued_nodes: int, pool: int, max_nodes: int) -> int:
    """The group's ``min_nodes`` for this run: what runs, what waits, and the pool."""
    return max(0, min(max_nodes, in_use + queued_nodes + pool))
