"""Each running job's chance to end within a horizon, learnt online from the jobs that ended.

Pure (no clock, no I/O). A runtime limit says when a job ends at the latest; most end far
sooner, and when depends on who runs what (KTH-SP2: the same user's jobs at the same limit
run alike, the year's run/limit ratios much less so). A job's chance to end within the
horizon, given that it has run ``ran_s``, is read off a weighted pool of past run times:

- the same user's last :attr:`EndChance.same_kept` jobs at the same limit, the last weight 1,
  each older one :attr:`EndChance.decay` times the next (users submit series of alike jobs);
- the user's last :attr:`EndChance.last_kept` run times at any limit,
  :attr:`EndChance.last_weight` each;
- the user's other recent jobs, as run/limit ratios, :attr:`EndChance.user_weight` each;
- every user's last jobs at that limit, :attr:`EndChance.limit_weight` x 10 shared;
- the last :attr:`EndChance.all_kept` jobs' ratios, :attr:`EndChance.all_weight` x 10 shared.

Of the runs longer than ``ran_s``, the weighted share that ends within the horizon is the
chance. A job whose limit ends within the horizon ends for sure; one past its limit (some
traces let a job run on) frees nothing known. Offline on KTH-SP2 its Brier score is 0.015
where the year's ratios alone score 0.020 (docs/simulator.md).

Everything kept is bounded (the users and limits last seen first), so the cluster's timer
stores it in its policy memory (:mod:`shared.domain.policymemory`).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EndChance:
    """Past run times, and each running job's chance to end within a horizon."""

    same_kept: int = 40
    decay: float = 0.8
    last_weight: float = 0.5
    last_kept: int = 3
    user_weight: float = 0.3
    limit_weight: float = 0.1
    all_weight: float = 0.02
    limit_kept: int = 200
    all_kept: int = 500
    pairs_kept: int = 256
    """(user, limit) pairs remembered (the last seen kept), as users and limits below."""
    users_kept: int = 128
    limits_kept: int = 32
    _same: dict[tuple[str, float], deque[float]] = field(default_factory=dict)
    _user: dict[str, deque[float]] = field(default_factory=dict)
    _limit: dict[float, deque[float]] = field(default_factory=dict)
    _last: dict[str, deque[float]] = field(default_factory=dict)
    _all: deque[float] = field(default_factory=deque)
    _sorted: list[float] = field(default_factory=list)

    def ended(self, user: str | None, limit_s: float, ran_s: float) -> None:
        """A job of ``user`` with ``limit_s`` ran ``ran_s`` seconds to its end."""
        if not limit_s > 0 or ran_s < 0:
            return
        ran_s = round(ran_s, 1)  # kept short in JSON (a timer's clock has microseconds)
        ratio = round(ran_s / limit_s, 5)
        if user is not None:
            _add(self._same, (user, limit_s), ran_s, self.same_kept, self.pairs_kept)
            _add(self._user, user, ratio, self.same_kept, self.users_kept)
            _add(self._last, user, ran_s, self.last_kept, self.users_kept)
        _add(self._limit, limit_s, ran_s, self.limit_kept, self.limits_kept)
        self._all.append(ratio)
        bisect.insort(self._sorted, ratio)
        if len(self._all) > self.all_kept:
            old = self._all.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

    def chance(self, user: str | None, limit_s: float, ran_s: float, horizon_s: float) -> float:
        """The chance that a job of ``user`` with ``limit_s`` that has run ``ran_s`` ends
        within ``horizon_s`` from now (0 when nothing is known)."""
        if not limit_s > 0 or ran_s >= limit_s:
            return 0.0
        end = ran_s + horizon_s
        if end >= limit_s:
            return 1.0
        pool = _Pool(ran_s, end)
        if user is not None:
            pool.add(self._same.get((user, limit_s), ()), 1.0, self.decay)
            pool.add((x * limit_s for x in self._user.get(user, ())), self.user_weight)
            pool.add(self._last.get(user, ()), self.last_weight)
        same_limit = self._limit.get(limit_s)
        if same_limit:
            pool.add(same_limit, self.limit_weight * 10 / len(same_limit))
        n = len(self._sorted)
        if n >= 50 and self.all_weight:
            below = bisect.bisect_right(self._sorted, ran_s / limit_s) / n
            if below < 1.0:
                within = bisect.bisect_right(self._sorted, end / limit_s) / n
                w = self.all_weight * 10
                pool.den += w
                pool.num += w * (within - below) / (1.0 - below)
        return pool.num / pool.den if pool.den > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The runs kept, as JSON (exact: a restored object forecasts as the one kept)."""
        return {
            "same": [[u, lim, list(rs)] for (u, lim), rs in self._same.items()],
            "user": {u: list(xs) for u, xs in self._user.items()},
            "limit": [[lim, list(rs)] for lim, rs in self._limit.items()],
            "last": {u: list(rs) for u, rs in self._last.items()},
            "all": list(self._all),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EndChance:
        """Take up what :meth:`to_dict` stored (None: nothing learnt yet)."""
        out = cls()
        data = data or {}
        for user, lim, runs in data.get("same") or ():
            out._same[(str(user), float(lim))] = deque(map(float, runs), maxlen=out.same_kept)
        for user, ratios in dict(data.get("user") or {}).items():
            out._user[str(user)] = deque(map(float, ratios), maxlen=out.same_kept)
        for user, runs in dict(data.get("last") or {}).items():
            out._last[str(user)] = deque(map(float, runs), maxlen=out.last_kept)
        for lim, runs in data.get("limit") or ():
            out._limit[float(lim)] = deque(map(float, runs), maxlen=out.limit_kept)
        out._all = deque(float(x) for x in list(data.get("all") or ())[-out.all_kept :])
        out._sorted = sorted(out._all)
        return out


@dataclass
class _Pool:
    """The weighted runs longer than ``ran`` (``den``), and of them those ending by ``end``."""

    ran: float
    end: float
    num: float = 0.0
    den: float = 0.0

    def add(self, runs: Iterable[float], weight: float, decay: float = 1.0) -> None:
        """``runs`` oldest first: the last weighs ``weight``, each older one ``decay`` times
        the next."""
        if decay != 1.0:
            runs = list(runs)
            weight *= decay ** (len(runs) - 1)
        for r in runs:
            if r > self.ran:
                self.den += weight
                if r <= self.end:
                    self.num += weight
            weight /= decay


def _add(
    kept: dict[Any, deque[float]], key: Hashable, value: float, per_key: int, keys: int
) -> None:
    """Append ``value`` to ``key``'s last ``per_key`` values; the key is now the last seen, and
    the first seen is forgotten beyond ``keys`` keys."""
    runs = kept.pop(key, None)
    if runs is None:
        runs = deque(maxlen=per_key)
    runs.append(value)
    kept[key] = runs
    if len(kept) > keys:
        del kept[next(iter(kept))]
