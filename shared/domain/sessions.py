"""Session keep: idle nodes kept for the user whose job just ended, learnt from that
user's own think times.

Pure (no clock, no I/O). HPC users work in sessions: when a job of user U ends, U often
submits the next one (often of the same size) within minutes, the "think time"
(Feitelson). An aggregate arrival rate cannot tell which idle node will be needed soon;
U's own history can. So when U's job on k nodes ends, up to k of the released nodes are
kept for U for a keep time chosen by ski rental (:class:`shared.domain.skirental.SkiRental`)
on U's last think times after jobs of the same run-time band (:func:`run_band`): each end
is one observation, the time from the end to U's next submit (capped at ``max_keep_s``: a
user who does not return within it counts as one who never returns). A user with fewer
than ``min_history`` think times in the band borrows every user's of that band, then
every user's. All of it is learnt online, as the jobs come and go; the hooks take the
user (``Job.owner`` in the cluster, the SWF user id in the simulator).

Measured (README, simulator): on KTH-SP2 the keeps add nothing to the pool (users seldom
come back within a boot delay); on NASA-iPSC they buy wait at a third of the cost of a
larger pool.

The nodes are alike, so a keep is a count, not a node: the group's ``min_nodes`` is what
runs, what waits, a small aggregate pool (:class:`shared.domain.warmpool.WarmPool`, x1),
and the nodes kept for users, never more than the nodes already up (no node is started
for a keep). A user has one keep, the nodes of its last ended job (a later end replaces
it); U's next submit uses it up (its job takes those nodes, or others); a keep that runs
out lowers ``min_nodes`` and the autoscaler stops the nodes at once. A user who never
returns therefore costs at most its keep time on k nodes.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from shared.domain.skirental import SkiRental
from shared.domain.warmpool import DemandForecast, Plan, WarmPool, min_nodes


@runtime_checkable
class SessionAware(Protocol):
    """An idle policy told who submits and whose job ends (the user may be unknown)."""

    def arrived(self, now: float, nodes: int, user: str | None = None) -> None: ...

    def ended(
        self, now: float, nodes: int, user: str | None = None, ran_s: float | None = None
    ) -> None: ...


RUN_BANDS_S: tuple[float, ...] = (60.0, 600.0, 3600.0)
"""Bounds of the run-time bands an ended job falls in (a minute, ten, an hour): think times
follow the run time (Feitelson: after a short, often failed, job a user comes back soon)."""


def run_band(ran_s: float | None) -> int:
    """The band of a job that ran ``ran_s`` seconds (0 the shortest; -1: run time unknown)."""
    if ran_s is None:
        return -1
    return bisect.bisect_right(RUN_BANDS_S, ran_s)


@dataclass
class ThinkTimes:
    """Each user's think times (job end to the same user's next submit), learnt online per
    run-time band of the ended job, and the keep time of least mean cost on them (ski
    rental, buy = ``buy_s``)."""

    buy_s: float
    """What a boot costs, in node-seconds."""
    max_keep_s: float = 3600.0
    """Longest keep; a think time past it is recorded as "did not return"."""
    user_window: int = 50
    group_window: int = 300
    min_history: int = 3
    """Think times needed before a history is used instead of the broader one."""
    _rentals: dict[tuple[str | None, int | None], SkiRental] = field(
        default_factory=dict, init=False, repr=False
    )
    """By (user, band); user None: every user's; band None: every band (the group)."""
    _seen: dict[tuple[str | None, int | None], int] = field(
        default_factory=dict, init=False, repr=False
    )
    _open: dict[str, deque[tuple[float, int]]] = field(default_factory=dict, init=False, repr=False)
    """Each user's ends (time, band) not yet followed by a submit, oldest first."""
    _order: deque[tuple[float, str]] = field(default_factory=deque, init=False, repr=False)
    """Every open end in time order, to close those older than ``max_keep_s``."""

    def opened(self, now: float, user: str, band: int = -1) -> None:
        """``user``'s job of run-time ``band`` ended: a node may be kept for its next submit."""
        self.advance(now)
        self._open.setdefault(user, deque()).append((now, band))
        self._order.append((now, user))

    def submitted(self, now: float, user: str) -> None:
        """U's submit closes each of U's earlier open ends with its think time (an end at
        the same instant stays open: a keep is decided after every event of an instant)."""
        self.advance(now)
        ends = self._open.get(user)
        while ends and ends[0][0] < now:
            end, band = ends.popleft()
            self._observe(user, band, now - end)
        if not ends:
            self._open.pop(user, None)

    def advance(self, now: float) -> None:
        """Ends with no submit of their user for longer than ``max_keep_s``: "did not return"."""
        while self._order and now - self._order[0][0] > self.max_keep_s:
            end, user = self._order.popleft()
            ends = self._open.get(user)
            if ends and ends[0][0] == end:  # still open (else closed by a submit)
                _, band = ends.popleft()
                if not ends:
                    del self._open[user]
                self._observe(user, band, self.max_keep_s + 1.0)

    def keep_s(self, user: str | None, band: int = -1) -> float:
        """The keep time for the nodes ``user``'s ended job of ``band`` released: from the
        user's think times after jobs of that band, else every user's after that band,
        else every user's (each used once it holds ``min_history`` think times)."""
        for key in ((user, band), (None, band)):
            if self._seen.get(key, 0) >= self.min_history:
                return self._rentals[key].keep_s()
        group = self._rentals.get((None, None))
        return group.keep_s() if group is not None else 0.0

    def _observe(self, user: str, band: int, gap: float) -> None:
        for key in ((user, band), (None, band), (None, None)):
            rental = self._rentals.get(key)
            if rental is None:
                window = self.user_window if key[0] is not None else self.group_window
                rental = self._rentals[key] = SkiRental(
                    self.buy_s, window=window, max_keep_s=self.max_keep_s
                )
            rental.observe(gap)
            self._seen[key] = self._seen.get(key, 0) + 1


@dataclass
class SessionKeep:
    """A small aggregate pool (``headroom`` x the demand expected within one boot delay,
    kept from nodes already up), plus, for each user, the nodes of its last ended job
    kept for its next job, for the ski-rental keep time of its think times."""

    boot_delay_s: float
    max_nodes: int
    headroom: float = 1.0
    tau_s: float = 3600.0
    wait_weight: float = 1.0
    """A second of a job's wait for a boot, in node-seconds (buy = boot x (1 + it))."""
    max_keep_s: float = 3600.0
    by_run_time: bool = True
    """Learn think times per run-time band of the ended job (:func:`run_band`)."""
    think: ThinkTimes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.forecast = DemandForecast(tau_s=self.tau_s)
        self.pool = WarmPool(self.boot_delay_s, headroom=self.headroom, max_pool=self.max_nodes)
        self.think = ThinkTimes(self.boot_delay_s * (1 + self.wait_weight), self.max_keep_s)
        self._keeps: dict[str, tuple[float, int, int]] = {}
        """Each user's keep: until when, how many nodes, its sequence number."""
        self._expiry: list[tuple[float, int, str]] = []
        """(until, sequence number, user), a heap; an entry whose keep was replaced or
        used is stale and skipped."""
        self._seq = 0
        self.kept = 0
        """Nodes kept for users now (the keeps that have not run out or been used)."""

    def arrived(self, now: float, nodes: int, user: str | None = None) -> None:
        self.forecast.observe(now, nodes)
        self._expire(now)
        if user is not None:
            self.think.submitted(now, user)
            self._drop(user)  # its job takes the nodes kept for it (or any others: alike)

    def ended(
        self, now: float, nodes: int, user: str | None = None, ran_s: float | None = None
    ) -> None:
        """``user``'s job on ``nodes`` nodes ended after running ``ran_s`` seconds: its
        nodes are the user's keep (replacing the last)."""
        self._expire(now)
        if user is None:
            return
        self._drop(user)
        band = run_band(ran_s) if self.by_run_time else -1
        self.think.opened(now, user, band)
        keep_s = self.think.keep_s(user, band)
        if keep_s <= 0 or nodes <= 0:
            return
        self._seq += 1
        self._keeps[user] = (now + keep_s, nodes, self._seq)
        self.kept += nodes
        heapq.heappush(self._expiry, (now + keep_s, self._seq, user))

    def idle_gap(self, seconds: float) -> None:
        return None

    def plan(self, now: float, in_use: int, waiting: int, up: int) -> Plan:
        self._expire(now)
        spare = max(0, up - in_use - waiting)  # never start a node to keep it
        keep = min(spare, self.pool.size(self.forecast.rate_at(now)) + self.kept)
        return Plan(min_nodes(in_use, waiting, keep, self.max_nodes), 0)

    def changes_at(self, now: float) -> float:
        at = self.pool.shrinks_at(self.forecast, now)
        while self._expiry and not self._live(self._expiry[0]):
            heapq.heappop(self._expiry)
        if self._expiry:
            at = min(at, self._expiry[0][0])
        return at

    def keep_of(self, user: str) -> tuple[float, int] | None:
        """``user``'s keep now: until when, how many nodes (None: none)."""
        keep = self._keeps.get(user)
        return None if keep is None else (keep[0], keep[1])

    def _drop(self, user: str) -> None:
        old = self._keeps.pop(user, None)
        if old is not None:
            self.kept -= old[1]

    def _live(self, entry: tuple[float, int, str]) -> bool:
        keep = self._keeps.get(entry[2])
        return keep is not None and keep[2] == entry[1]

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            entry = heapq.heappop(self._expiry)
            if self._live(entry):
                self._drop(entry[2])
