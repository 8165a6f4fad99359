"""Idle policies: how many nodes a managed group keeps up, and how long an idle node lives.

Pure (no clock, no I/O). The autoscaler (:mod:`shared.domain.autoscaler`) is left as it
is: a policy only sets, before each of its runs, two of the group's parameters (a
:class:`Plan`): ``min_nodes`` (the autoscaler starts nodes up to it and never stops below
it) and the idle time after which a node beyond it stops (ShrinkIdleTimes x
ShrinkInterval). The simulator (:mod:`shared.sim.elastic`) runs every policy here; a
timer in the cluster could ask the same object before its run.

- :class:`FixedIdle`: HPC Pack's plain rule: no floor, stop a node idle for S seconds.
- :class:`AdaptivePool`: a warm pool sized from an exponentially weighted arrival rate
  of node demand, ``min_nodes = nodes in use + nodes the queue waits for + pool``.
  With ``boots=False`` (``keep``) the pool is only kept from nodes already up;
  ``start_headroom`` > 0 (``anticipate``) also starts that many x the demand expected
  within one boot delay, but only while at least ``start_min_expected`` nodes are expected
  in it (a confident forecast: starting ahead then costs only the short idle before use).

Why ``keep`` is sound on any workload: a node released by an ended job costs nothing to
reuse, and keeping it idle for the next boot delay pays off when a request is likely to
come in that time (ski rental: idling one boot delay costs what a boot costs). The pool
is exactly the demand forecast for one boot delay, so released nodes within it stay and
those beyond it stop at once. It never starts a node for the pool: a node started ahead
of demand bills its boot for sure, and the job ends that follow make it surplus (the
``adaptive`` pool starts 225,497 nodes on KTH, more than its jobs ask for in all,
217,802; ``keep`` 168,102). Nothing in it
is fitted to a trace: the horizon is the boot delay, the rate's time constant an hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Plan:
    """The group's parameters for one autoscaler run."""

    min_nodes: int
    idle_s: int
    """Seconds idle before a node beyond ``min_nodes`` stops."""


class IdleSizing(Protocol):
    """A policy with memory of the arrivals it was told about (one per group and replay)."""

    def arrived(self, now: float, nodes: int) -> None:
        """A job asking for ``nodes`` nodes was submitted at ``now``."""

    def plan(self, now: float, in_use: int, waiting: int, up: int) -> Plan:
        """The parameters at ``now``: ``in_use`` nodes hold work, ``waiting`` more are
        what the queue asks for, ``up`` nodes are Starting or Online."""
        ...

    def changes_at(self, now: float) -> float:
        """When :meth:`plan` next changes if nothing arrives (inf: never)."""
        ...

    def idle_gap(self, seconds: float) -> None:
        """A node of the group was idle ``seconds`` before work needed it again (reused,
        or, for a node stopped while idle, until a node next had to be started)."""


@dataclass
class FixedIdle:
    """Start on demand, reuse idle nodes, stop a node idle for ``idle_s`` seconds."""

    idle_s: int

    def arrived(self, now: float, nodes: int) -> None:
        return None

    def plan(self, now: float, in_use: int, waiting: int, up: int) -> Plan:
        return Plan(0, self.idle_s)

    def changes_at(self, now: float) -> float:
        return math.inf

    def idle_gap(self, seconds: float) -> None:
        return None


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


@dataclass
class AdaptivePool:
    """A warm pool of the node demand expected within one boot delay (``headroom`` x the
    exponentially weighted rate, time constant ``tau_s``) kept idle on top of what runs and
    waits; nodes beyond it stop after ``idle_s``. The pool grows when work arrives faster
    and shrinks by itself when arrivals stop."""

    boot_delay_s: float
    max_nodes: int
    idle_s: int = 60
    headroom: float = 2.0
    tau_s: float = 3600.0
    boots: bool = True
    """False: the pool only keeps nodes already up (never starts one for it)."""
    start_headroom: float = 0.0
    """With ``boots=False``: nodes started ahead, as a multiple of the demand expected
    within one boot delay (0: none)."""
    start_min_expected: float = 1.0
    """Nodes are started ahead only while at least this many are expected per boot delay."""

    def __post_init__(self) -> None:
        self.forecast = DemandForecast(tau_s=self.tau_s)
        self.pool = WarmPool(self.boot_delay_s, headroom=self.headroom, max_pool=self.max_nodes)
        self.ahead = WarmPool(
            self.boot_delay_s, headroom=self.start_headroom, max_pool=self.max_nodes
        )

    def arrived(self, now: float, nodes: int) -> None:
        self.forecast.observe(now, nodes)

    def idle_gap(self, seconds: float) -> None:
        return None

    def plan(self, now: float, in_use: int, waiting: int, up: int) -> Plan:
        rate = self.forecast.rate_at(now)
        pool = self.pool.size(rate)
        if not self.boots:
            pool = min(pool, max(0, up - in_use - waiting))
            if self._confident(rate):
                pool = max(pool, self.ahead.size(rate))
        return Plan(min_nodes(in_use, waiting, pool, self.max_nodes), self.idle_s)

    def changes_at(self, now: float) -> float:
        at = self.pool.shrinks_at(self.forecast, now)
        rate = self.forecast.rate_at(now)
        if not self.boots and self._confident(rate):
            at = min(at, self.ahead.shrinks_at(self.forecast, now))
            # the forecast stops being confident when the rate decays to the threshold
            limit = self.start_min_expected / self.boot_delay_s
            if rate >= limit:
                at = min(at, now + self.forecast.tau_s * math.log(rate / limit) + 1e-6)
        return at

    def _confident(self, rate: float) -> bool:
        return (
            self.start_headroom > 0
            and self.start_min_expected > 0
            and rate * self.boot_delay_s >= self.start_min_expected
        )
