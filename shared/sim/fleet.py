"""The elastic replay's nodes (:mod:`shared.sim.elastic`): indexed by state, and the part
of them the autoscaler must see in a run."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from shared.domain.capacity import MANAGED_TIER, Space
from shared.domain.cluster import Node
from shared.domain.growshrink import NodeMemory
from shared.domain.protocol import AGENT_PROTOCOL
from shared.domain.states import NodeState

GROUP = "AzureNodes"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FRESH = NodeMemory()
_ONLINE, _STARTING, _OFFLINE = NodeState.ONLINE, NodeState.STARTING, NodeState.OFFLINE


def dt(t: float) -> datetime:
    return EPOCH + timedelta(seconds=t)


def ts(d: datetime) -> float:
    return (d - EPOCH).total_seconds()


class Fleet:
    """The simulated nodes, indexed by state so that an event costs what it touches: the
    Online nodes, those of them with a free core (``open``), the Starting ones with the
    time each comes up, the Offline ones in the autoscaler's start order (the longest Offline
    first, then by name: :func:`shared.domain.growshrink.start_order`)."""

    def __init__(self, nodes: int, cpn: int) -> None:
        self.cpn = cpn
        names = [f"n{i:04d}" for i in range(nodes)]
        self.recs = {
            n: Node(
                name=n,
                groups=[GROUP],
                cores=cpn,
                provider="local",
                state_time=EPOCH,
                agent_protocol=AGENT_PROTOCOL,  # a started node boots the current agent
            )  # fmt: skip
            for n in names
        }
        self.free = dict.fromkeys(names, cpn)
        self.online: set[str] = set()
        self.open: set[str] = set()
        """Online nodes with a free core."""
        self.held: set[str] = set()
        """Nodes some job holds cores of."""
        self.starting: dict[str, float] = {}
        """Starting nodes and when each comes up."""
        self.offline = list(names)
        self.up_since: dict[str, float] = {}
        self.node_seconds = 0.0
        self.starts = 0
        self.idle_at: dict[str, float] = {}
        """Idle nodes (all cores free) and since when."""
        self._stopped_idle: list[float] = []
        """Heap of minus the idle start of nodes stopped while idle, not yet needed again."""
        self.gaps: list[float] = []
        """Idle gaps seen since the caller last emptied it (see :meth:`IdleSizing.idle_gap`)."""
        self._spaces: dict[str, Space] = {}

    def space(self, name: str) -> Space:
        """The node as the scheduler sees it (kept: one object per node, its free cores now)."""
        space = self._spaces.get(name)
        if space is None:
            space = self._spaces[name] = Space(name, (), 0, tier=MANAGED_TIER)  # VMs
        space.free = self.free[name]
        return space

    def took(self, names: Sequence[str], now: float) -> None:
        for n in names:
            since = self.idle_at.pop(n, None)
            if since is not None:
                self.gaps.append(now - since)
            self.held.add(n)
            if self.free[n] <= 0:
                self.open.discard(n)

    def released(self, names: Sequence[str], cores: int, now: float) -> None:
        for n in names:
            self.free[n] += cores
            self.open.add(n)
            if self.free[n] >= self.cpn:
                self.held.discard(n)
                self.idle_at[n] = now

    def start(self, name: str, now: float, ready: float) -> None:
        self.offline.remove(name)
        self._move(name, _STARTING, now)
        self.starting[name] = ready
        self.up_since[name] = now
        self.starts += 1
        # the node stopped idle most recently would have served this start: its gap ends
        if self._stopped_idle:
            self.gaps.append(now + heapq.heappop(self._stopped_idle))

    def boot(self, name: str, now: float) -> None:
        del self.starting[name]
        self._move(name, _ONLINE, now)
        self.online.add(name)
        self.open.add(name)
        self.idle_at[name] = now

    def stop(self, name: str, now: float) -> None:
        if self.free[name] < self.cpn:
            raise RuntimeError(f"the autoscaler stopped {name} while a job runs on it")
        self.online.discard(name)
        self.open.discard(name)
        self.starting.pop(name, None)
        since = self.idle_at.pop(name, None)
        if since is not None:
            heapq.heappush(self._stopped_idle, -since)
        self._move(name, _OFFLINE, now)
        bisect.insort(self.offline, name, key=self._offline_key)
        self.node_seconds += now - self.up_since.pop(name)

    def _offline_key(self, name: str) -> tuple[datetime, str]:
        return self.recs[name].state_time, name

    def _move(self, name: str, state: NodeState, now: float) -> None:
        rec = self.recs[name]
        rec.state, rec.state_time = state, dt(now)


def visible(
    fleet: Fleet, memory: dict[str, NodeMemory], queued: bool, now: float, idle_s: int
) -> tuple[list[str], list[str]]:
    """The up nodes the autoscaler must see, and the hidden ones whose memory is kept.

    Left out, because no rule can order or note anything about them in this run: fully
    used Online nodes (their memory is the fresh one the run would give them), and, when
    nothing is queued (no placement, no growth for work), Online nodes whose memory
    already holds their state and whose idle time has not run out. Starting nodes are
    always seen: growth counts them as up and shrinking does not, so hiding them could not
    leave both comparisons as they were.
    The caller lowers min and max nodes by the hidden count, which leaves every count
    the rules compare (up vs min and max nodes) as it was."""
    up: list[str] = []
    kept: list[str] = []
    free, cpn = fleet.free, fleet.cpn
    up.extend(fleet.starting)  # the floor's two counts differ by them (see autoscaler.shrink)
    for n in fleet.open:
        m = memory.get(n, _FRESH)
        if queued or m.start_ordered_at is not None:
            up.append(n)
        elif free[n] >= cpn:  # idle: hidden while its idle time runs
            since = m.idle_since
            (kept if since is not None and now - ts(since) < idle_s else up).append(n)
        elif m.idle_since is None:  # partly used, known as such
            kept.append(n)
        else:
            up.append(n)
    return up, kept
