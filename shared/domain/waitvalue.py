"""The ``value`` idle policy: a warm pool sized by what a second of wait is worth.

Pure (no clock, no I/O). A mean wait counts jobs, not nodes: a warm pool of m idle nodes
spares the boot delay to every job that arrives needing at most m of them, and costs m
node-seconds every second. So the pool is the m that maximises

    expected jobs of width <= m per second x boot delay x W  -  m

where W (``wait_weight``) says what a second of a job's wait is worth in node-seconds,
the job rate is an exponentially weighted count of submits (time constant an hour, as
the other pools), and the widths are the recent submits' node counts (a histogram that
forgets at one part in ``width_memory`` per submit). Nodes beyond the pool stop at once;
the pool is started for when released nodes do not fill it (a started node bills its
boot, which the job it serves would have billed anyway).

Why this and not a pool of expected *nodes* (``keep``): a wide job's submit raised that
pool by a fraction of its width, which kept idle nodes that no job of its width could
use (it needs them all) and that narrow jobs did not need so many of. Here a width pays
its way only by how often jobs of at most that width come. Measured (README, simulator):
on KTH-SP2 ``value`` (W 30) is at 1.032x the oracle's node-hours with a 102 s mean wait,
where ``keep`` is at 1.044x with 100 s.

A node *started* for the pool must pay its boot too, so starts serve the pool at a lower
weight (W / :func:`start_margin`), and nodes already up are kept up to the pool at W.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shared.domain.warmpool import DemandForecast, Plan, min_nodes

VALUE_WAIT_WEIGHT = 30.0
"""Default W: a second of a job's wait is worth 30 node-seconds."""
WIDTH_MEMORY = 500
"""The width histogram forgets one part in this many per submit (about the last 500)."""
_FORGET_BELOW = 1e-6


@dataclass
class WidthMix:
    """How often each width (nodes per job) comes: a histogram of submits, each older one
    weighing ``1 - 1/memory`` times the next newer one."""

    memory: int = WIDTH_MEMORY
    weights: dict[int, float] = field(default_factory=dict)

    def observe(self, nodes: int) -> None:
        keep = 1.0 - 1.0 / self.memory
        for w in list(self.weights):
            self.weights[w] *= keep
            if self.weights[w] < _FORGET_BELOW:
                del self.weights[w]
        self.weights[nodes] = self.weights.get(nodes, 0.0) + 1.0

    def shares(self) -> list[tuple[int, float]]:
        """(width, share of submits) by width, ascending."""
        total = sum(self.weights.values())
        if total <= 0:
            return []
        return [(w, c / total) for w, c in sorted(self.weights.items())]

    def to_dict(self) -> dict[str, float]:
        return {str(w): c for w, c in self.weights.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, float] | None, memory: int = WIDTH_MEMORY) -> WidthMix:
        weights = {int(w): float(c) for w, c in (data or {}).items() if float(c) > 0}
        return cls(memory, weights)


def slopes(
    shares: list[tuple[int, float]], boot_delay_s: float, wait_weight: float
) -> list[tuple[int, float]]:
    """For each candidate pool size m (the widths seen): m and ``P(width <= m) x boot delay x
    W``, the pool's benefit per unit of job rate (its net value is ``rate x that - m``)."""
    out: list[tuple[int, float]] = []
    below = 0.0
    for width, share in shares:
        below += share
        out.append((width, below * boot_delay_s * wait_weight))
    return out


def spared(
    shares: list[tuple[int, float]], freed: Sequence[float], boot_delay_s: float, wait_weight: float
) -> list[tuple[int, float]]:
    """:func:`slopes` when running jobs free nodes within the boot delay (``freed``: the
    time each node comes free, ascending): without the pool a job of width w waits for
    the w-th of them or a boot, whichever is sooner, so the pool spares it only that."""
    out: list[tuple[int, float]] = []
    below = 0.0
    for width, share in shares:
        wait = min(boot_delay_s, freed[width - 1]) if width <= len(freed) else boot_delay_s
        below += share * wait
        out.append((width, below * wait_weight))
    return out


def best_of(rate: float, candidates: list[tuple[int, float]], max_pool: int) -> int:
    """The pool size of most net value among ``candidates`` (:func:`slopes`); 0 when none
    pays."""
    best, best_net = 0, 0.0
    for m, slope in candidates:
        if m > max_pool:
            break
        if rate * slope - m > best_net:
            best, best_net = m, rate * slope - m
    return best


def best_pool(
    rate: float,
    shares: list[tuple[int, float]],
    boot_delay_s: float,
    wait_weight: float,
    max_pool: int,
) -> int:
    """The pool size of most net value (0 when none pays)."""
    return best_of(rate, slopes(shares, boot_delay_s, wait_weight), max_pool)


def start_margin(boot_delay_s: float, tau_s: float) -> float:
    """How much the rate must exceed a pool node's break-even rate before the node is
    started for it: the x >= 1 where ``tau (x - 1 - ln x) = boot delay``.

    Why: keeping a node that is already up costs only its idle seconds, but a node started
    for the pool bills its boot first. With no further submit the rate decays (time
    constant tau) from x times break-even to break-even in ``tau ln x`` seconds, over
    which the node's net value adds up to ``tau (x - 1 - ln x)`` node-seconds: the start
    pays only if that covers the boot. (An hour's tau and a 3 min boot: x = 1.35.)"""
    if boot_delay_s <= 0 or tau_s <= 0:
        return 1.0
    target = boot_delay_s / tau_s
    lo, hi = 1.0, 2.0
    while hi - 1.0 - math.log(hi) < target:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid - 1.0 - math.log(mid) < target else (lo, mid)
    return (lo + hi) / 2


def served_margin(boot_delay_s: float, tau_s: float) -> float:
    """:func:`start_margin` for a node that serves only once it is up: the x >= 1 where
    ``x exp(-boot delay / tau) = 1 + ln x``.

    Why: a started node bills its boot and then its idle seconds from the start order, but
    can spare waits only from its boot's end. With no further submit the rate decays
    (time constant tau) from x times break-even; the node is kept until the rate is back at
    break-even (``tau ln x`` after the start). Its spared waits from the boot's end on,
    ``x tau exp(-boot/tau) - tau`` node-seconds, must cover its cost from the start order,
    ``tau ln x``. :func:`start_margin` counts the waits from the start order and the boot
    on top of the idle seconds; the two slips nearly offset (an hour's tau and a 3 min
    boot: 1.42 here, 1.35 there; a quarter hour's: 2.16, 1.9)."""
    if boot_delay_s <= 0 or tau_s <= 0:
        return 1.0
    late = math.exp(-boot_delay_s / tau_s)
    lo, hi = 1.0 / late, 2.0 / late  # the gap x late - 1 - ln x is least at x = 1/late
    while hi * late - 1.0 - math.log(hi) < 0:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid * late - 1.0 - math.log(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


@dataclass
class ValuePool:
    """The ``value`` policy (see the module): one per group and replay; remembers the job
    rate and the width mix."""

    boot_delay_s: float
    max_nodes: int
    wait_weight: float = VALUE_WAIT_WEIGHT
    tau_s: float = 3600.0
    idle_s: int = 0
    """Seconds a node beyond the pool stays idle (0: it stops at once)."""

    def __post_init__(self) -> None:
        self.margin = start_margin(self.boot_delay_s, self.tau_s)
        self.forecast = DemandForecast(tau_s=self.tau_s)
        """Jobs submitted per second (not nodes)."""
        self.widths = WidthMix()

    def arrived(self, now: float, nodes: int) -> None:
        self.forecast.observe(now, 1.0)
        self.widths.observe(nodes)

    def idle_gap(self, seconds: float) -> None:
        return None

    def pool(self, now: float) -> int:
        """The pool kept: the size of most net value at W."""
        return self._best(now, self.wait_weight)

    def start_pool(self, now: float) -> int:
        """The pool nodes are *started* for: the size of most net value at W / the start
        margin (:func:`start_margin`); between it and :meth:`pool`, nodes already up are
        kept but none is started."""
        return self._best(now, self.wait_weight / self.margin)

    def _best(self, now: float, weight: float) -> int:
        rate = self.forecast.rate_at(now)
        return best_pool(rate, self.widths.shares(), self.boot_delay_s, weight, self.max_nodes)

    def plan(self, now: float, in_use: int, waiting: int, up: int) -> Plan:
        idle = max(0, up - in_use - waiting)
        pool = max(self.start_pool(now), min(self.pool(now), idle))
        return Plan(min_nodes(in_use, waiting, pool, self.max_nodes), self.idle_s)

    def changes_at(self, now: float) -> float:
        """When the plan next changes if nothing arrives: the first time the pool or the
        start pool shrinks."""
        return min(
            self._shrinks_at(now, self.wait_weight),
            self._shrinks_at(now, self.wait_weight / self.margin),
        )

    def _shrinks_at(self, now: float, weight: float) -> float:
        """When the best size at ``weight`` next shrinks: the rate decays, and the best size
        changes where its net value line crosses a smaller size's (or zero's)."""
        rate = self.forecast.rate_at(now)
        candidates = slopes(self.widths.shares(), self.boot_delay_s, weight)
        crossing = shrink_rate(rate, candidates, self.max_nodes)
        if crossing is None:
            return math.inf
        if crossing >= rate:
            return now
        return now + self.forecast.tau_s * math.log(rate / crossing) + 1e-6


def shrink_rate(rate: float, candidates: list[tuple[int, float]], max_pool: int) -> float | None:
    """The rate below which the best pool at ``rate`` (:func:`best_of`) stops being best
    (None: it is 0, a falling rate cannot shrink it)."""
    best = best_of(rate, candidates, max_pool)
    if best == 0 or rate <= 0:
        return None
    slope = dict(candidates)[best]
    # net(m) = r x slope_m - m; best stays best while r x slope - best >= r x s_m - m
    crossing = best / slope  # net(best) = 0
    for m, s in candidates:
        if m < best and s < slope:
            crossing = max(crossing, (best - m) / (slope - s))
    return crossing
