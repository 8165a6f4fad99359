"""Nodes that running jobs likely free within a boot delay: no node is started for them.

Pure (no clock, no I/O). A node started now is up one boot delay later. A running job that
ends before then frees its nodes first, and a node started for the same work comes up
surplus and is stopped unused: a boot billed for nothing (KTH-SP2, ``forecast``: 15,345
nodes a year stopped the moment they came up). How likely each running job is to end
within the boot delay is :class:`shared.domain.endchance.EndChance`'s; two rules use it:

- :func:`sure_nodes`, for the warm pool: the most nodes m that the running jobs free within
  the boot delay with a chance of at least :data:`POOL_CONFIDENCE` (the exact distribution
  of their sum): no pool node is started for those m.
- :func:`deferrals`, for queued work that waits for boots: a job that needs k boots does
  not start one for a release whose chance is at least ``A / (A + k)``, ``A`` = the wait
  weight W (node-seconds per second of a job's wait) x :data:`MISSED_BOOTS`. Deferring
  saves k boots with that chance; a release that does not come costs the job about two
  boot delays of wait (the time waited for it, then the boot it started late): deferring
  pays when ``p k >= (1 - p) A``. Releases go to the jobs in queue order, the most likely
  first; a deferral is weighed again at the next run (the cluster's timer) or after
  :data:`REWEIGH_S` (the replay), so a release that fails to come starts the boot then.

- :func:`freed_by`, for the idle nodes the pool keeps: when the running jobs likely free
  their nodes (the first, second, ... node), so that a kept node is valued by the wait it
  spares a job until then, not always a whole boot delay.

The first two rules only leave nodes unstarted; the nodes that running jobs' limits free for
sure (:mod:`shared.domain.releases`) are among those they count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
"""A queued job's key (the replay's job id, the timer's)."""

POOL_CONFIDENCE = 0.7
"""The chance at which the releases count as the pool's refill (KTH-SP2's cost was flat
within 0.003% of the oracle from 0.5 to 0.9)."""
MISSED_BOOTS = 2.0
"""A deferral that fails costs the job about this many boot delays of wait."""
REWEIGH_S = 30.0
"""The replay weighs a deferral again this soon (a timer's period): a release that did not
come by then is less likely to come at all."""
_CAP = 64
"""Nodes :func:`sure_nodes` counts at most (a pool is far smaller)."""
FREED_STEPS = 6
""":func:`freed_by` reads the chances at sixths of the boot delay (30 s steps for 3 min)."""
FREED_SPREAD = 1.0
"""Standard deviations taken off the expected count of freed nodes (a count to rely on)."""
_NEGLIGIBLE = 0.02
"""A release less likely than this is left out of :func:`sure_nodes` (it moves no count)."""


@dataclass(frozen=True)
class Release:
    """A running job's nodes and its chance to end within the boot delay."""

    key: Hashable
    nodes: int
    chance: float


def sure_nodes(releases: Iterable[Release], confidence: float = POOL_CONFIDENCE) -> int:
    """The most nodes m that ``releases`` free with a chance of at least ``confidence``
    (each job ends or not on its own; at most :data:`_CAP`)."""
    dist = [1.0] + [0.0] * _CAP  # dist[f]: the chance that exactly f nodes come free
    for r in releases:
        if r.chance < _NEGLIGIBLE or r.nodes <= 0:
            continue
        p = min(1.0, r.chance)
        new = [(1.0 - p) * x for x in dist]
        for f, x in enumerate(dist):
            if x:
                new[min(_CAP, f + r.nodes)] += p * x
        dist = new
    at_least = 0.0
    for m in range(_CAP, -1, -1):
        at_least += dist[m]
        if at_least >= confidence - 1e-12:
            return m
    return 0


def deferrals(
    releases: Iterable[Release],
    needs: Sequence[tuple[K, int]],
    wait_weight: float,
) -> dict[K, int]:
    """The boots each queued job defers: ``needs`` are ``(job, boots it needs)`` in queue
    order, for the jobs that wait for boots; each takes the releases left, the most likely
    first, while their chance is at least ``A / (A + boots)`` (see the module)."""
    a = wait_weight * MISSED_BOOTS
    ranked = sorted(releases, key=lambda r: -r.chance)
    left = [r.nodes for r in ranked]
    out: dict[K, int] = {}
    for job, need in needs:
        if need <= 0:
            continue
        bar = a / (a + need)
        got = 0
        for i, r in enumerate(ranked):
            if r.chance < bar:
                break
            take = min(left[i], need - got)
            left[i] -= take
            got += take
            if got >= need:
                break
        if got:
            out[job] = got
    return out


def boots_needed(widths: Sequence[tuple[K, int]], cover: int) -> list[tuple[K, int]]:
    """``(job, nodes)`` in queue order -> ``(job, boots)`` for the jobs that the ``cover``
    nodes (idle Online, Starting) do not cover, taken by the jobs ahead first."""
    out = []
    for job, nodes in widths:
        taken = min(nodes, max(0, cover))
        cover -= nodes
        if nodes > taken:
            out.append((job, nodes - taken))
    return out


def freed_by(
    chances: Sequence[tuple[int, Callable[[float], float]]],
    boot_delay_s: float,
    spread: float = FREED_SPREAD,
) -> list[float]:
    """When running jobs free their nodes, one time per node, ascending, within the boot
    delay: ``chances`` are each job's nodes and its chance to end within a horizon; at each
    of :data:`FREED_STEPS` horizons the nodes counted freed are the expected count less
    ``spread`` standard deviations (each job ends or not on its own)."""
    out: list[float] = []
    for step in range(1, FREED_STEPS + 1):
        h = boot_delay_s * step / FREED_STEPS
        mean = var = 0.0
        for nodes, chance in chances:
            p = chance(h)
            mean += nodes * p
            var += nodes * nodes * p * (1.0 - p)
        count = int(mean - spread * math.sqrt(var))
        out += [h] * (count - len(out))
    return out
