"""The widths the next submits will ask for: the group's recent histogram blended with the
recently active users' own histograms.

Pure (no clock, no I/O). A global histogram (:class:`shared.domain.waitvalue.WidthMix`)
says how often each width comes over the last few hundred submits, but submits cluster
by user: a user who has just submitted or whose job has just ended is the likeliest next
submitter, and users keep to their own widths. So the widths are a blend

    (1 - share) x global histogram  +  share x sum_u a_u x user u's histogram / sum_u a_u

where ``a_u`` is user u's activity: its submits and job ends, each decayed with a time
constant of ``active_s`` (15 min, under the 20 min of inactivity that conventionally ends a
user's session: Zilber, Amit and Feitelson 2005). ``share`` is learnt online by EM from
how well each side named the width of each submit (no constant fitted to a trace). All
users decay alike, so the blend only changes at a submit or a job end: it is cached.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.domain.waitvalue import WIDTH_MEMORY, WidthMix

ACTIVE_S = 900.0
"""Time constant of a user's activity (submits and job ends)."""
USER_MEMORY = 50
"""A user's own histogram forgets one part in this many of its submits."""
_INACTIVE = 1e-3
"""Activity below this (about 7 time constants after the last event) is forgotten."""
USERS_KEPT = 256
"""Users whose own histograms :meth:`UserWidths.to_dict` keeps: every active one, then the
latest submitters up to this many (a stored memory must stay small; a user beyond them
who comes back starts a new histogram)."""


@dataclass
class UserWidths:
    """The blended width mix (see the module); one per group and replay."""

    active_s: float = ACTIVE_S
    memory: int = WIDTH_MEMORY
    """The global histogram's and the blend share's memory, in submits."""
    share: float = 0.5
    """The users' side of the blend (learnt)."""
    globe: WidthMix = field(default_factory=WidthMix)
    users: dict[str, WidthMix] = field(default_factory=dict)
    activity: dict[str, tuple[float, float]] = field(default_factory=dict)
    """user -> (activity, as of when)."""
    _cached: list[tuple[int, float]] | None = field(default=None, init=False, repr=False)

    def submitted(self, now: float, nodes: int, user: str | None) -> None:
        """A submit of ``nodes`` nodes by ``user`` (None: unknown): learn the share from
        how each side named this width, then count it."""
        self._learn(now, nodes)
        self.globe.observe(nodes)
        if user is not None:
            mix = self.users.pop(user, None)  # re-inserted: the users in order of last submit
            self.users[user] = mix = WidthMix(USER_MEMORY) if mix is None else mix
            mix.observe(nodes)
            self._touch(now, user)
        self._cached = None

    def ended(self, now: float, user: str | None) -> None:
        """A job of ``user`` ended: the user is active (it may come back soon)."""
        if user is not None and user in self.users:
            self._touch(now, user)
            self._cached = None

    def shares(self, now: float) -> list[tuple[int, float]]:
        """(width, share) ascending: the blend as of the last event."""
        if self._cached is None:
            self._cached = self._blend(now)
        return self._cached

    def _touch(self, now: float, user: str) -> None:
        self.activity[user] = (self._level(user, now) + 1.0, now)
        if len(self.activity) > 64:  # forget users long inactive
            self.activity = {
                u: a for u, a in self.activity.items() if self._level(u, now) > _INACTIVE
            }

    def _level(self, user: str, now: float) -> float:
        level, at = self.activity.get(user, (0.0, now))
        return level * math.exp(-max(0.0, now - at) / self.active_s)

    def _users_mix(self, now: float) -> dict[int, float]:
        mix: dict[int, float] = {}
        total = 0.0
        for user in self.activity:
            a = self._level(user, now)
            if a <= _INACTIVE:
                continue
            for w, s in self.users[user].shares():
                mix[w] = mix.get(w, 0.0) + a * s
            total += a
        return {w: c / total for w, c in mix.items()} if total > 0 else {}

    def _blend(self, now: float) -> list[tuple[int, float]]:
        users = self._users_mix(now)
        if not users:
            return self.globe.shares()
        out = {w: (1.0 - self.share) * s for w, s in self.globe.shares()}
        for w, s in users.items():
            out[w] = out.get(w, 0.0) + self.share * s
        return sorted(out.items())

    def _learn(self, now: float, nodes: int) -> None:
        """One EM step on the share: the users' side's responsibility for this width."""
        users = self._users_mix(now)
        if not users:
            return
        p_users = users.get(nodes, 0.0)
        p_globe = dict(self.globe.shares()).get(nodes, 0.0)
        both = self.share * p_users + (1.0 - self.share) * p_globe
        if both <= 0:
            return
        self.share += (self.share * p_users / both - self.share) / self.memory

    def to_dict(self, max_users: int = USERS_KEPT) -> dict[str, Any]:
        """The learnt state as JSON: every active user's histogram, then the latest
        submitters' up to ``max_users`` (the plans of a restored copy are the same while
        those beyond do not come back)."""
        keep = set(self.activity)
        for user in reversed(self.users):
            if len(keep) >= max_users:
                break
            keep.add(user)
        out: dict[str, Any] = {
            "share": self.share,
            "globe": self.globe.to_dict(),
            "users": {u: m.to_dict() for u, m in self.users.items() if u in keep},
            "activity": {u: [a, at] for u, (a, at) in self.activity.items()},
        }
        if self._cached is not None:
            out["blend"] = [[w, s] for w, s in self._cached]
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, active_s: float = ACTIVE_S, memory: int = WIDTH_MEMORY
    ) -> UserWidths:
        """The blend :meth:`to_dict` stored (a fresh one from None), with these parameters."""
        widths = cls(active_s, memory)
        if not data:
            return widths
        widths.share = float(data.get("share", widths.share))
        widths.globe = WidthMix.from_dict(data.get("globe"), memory)
        users = dict(data.get("users") or {})
        widths.users = {str(u): WidthMix.from_dict(m, USER_MEMORY) for u, m in users.items()}
        activity = dict(data.get("activity") or {})
        widths.activity = {
            str(u): (float(a), float(at)) for u, (a, at) in activity.items() if u in widths.users
        }
        blend = data.get("blend")
        if blend is not None:
            widths._cached = [(int(w), float(s)) for w, s in blend]
        return widths
