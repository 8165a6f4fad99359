"""Free cores per node, indexed by how many are free: finding the k most-free nodes a request
may use costs about k look-ups, not a sort of every node (2,000 nodes, thousands of
placements per pass). Pure data structure for :mod:`shared.domain.scheduler`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from shared.domain.memory import fits


@dataclass
class Space:
    """A schedulable node and its free cores now."""

    name: str
    groups: tuple[str, ...]
    free: int
    cores: int | None = None
    """All its cores (None: unknown, taken as ``free``): an exclusive request needs them all free."""
    protocol: int = 1
    """Its agent's protocol (shared.domain.protocol): a request needing more never goes there."""
    tier: int = 0
    """Lower tiers fill first: 0 an on-prem node (already paid for), 1 a managed VM (billed
    while it runs), so work bursts to the cloud only for what on-prem cannot take now."""
    memory_mb: int | None = None
    """Its memory (None: unknown): a request asking for more never goes there, nor one
    asking for any on a node of unknown memory (shared.domain.memory)."""

    @property
    def whole(self) -> int:
        return self.free if self.cores is None else self.cores


def eligible(
    groups: frozenset[str], space: Space, protocol: int = 1, memory_mb: int | None = None
) -> bool:
    """A request of these groups, needing this agent protocol and this much memory per node,
    may run on this node (no groups: any node)."""
    if protocol > space.protocol:
        return False
    if memory_mb is not None and not fits(memory_mb, space.memory_mb):
        return False
    return not groups or not groups.isdisjoint(space.groups)


class FreeCores:
    def __init__(self, spaces: Sequence[Space]) -> None:
        self.spaces = {s.name: s for s in spaces}
        self.free = {s.name: s.free for s in spaces}
        self.total = sum(max(f, 0) for f in self.free.values())
        self._levels: dict[int, dict[int, dict[str, None]]] = {}
        """tier -> free cores -> the nodes of that tier with that many free (by name)."""
        for space in sorted(spaces, key=lambda s: s.name):
            if space.free > 0:
                tier = self._levels.setdefault(space.tier, {})
                tier.setdefault(space.free, {})[space.name] = None
        self._tiers = sorted(self._levels)
        self._top = {
            t: max((s.free for s in spaces if s.tier == t), default=0) for t in self._tiers
        }

    def take(self, name: str, cores: int) -> None:
        before = self.free[name]
        after = before - cores
        levels = self._levels.get(self.spaces[name].tier, {})
        if before > 0:
            del levels[before][name]
        if after > 0:
            levels.setdefault(after, {})[name] = None
        self.free[name] = after
        self.total -= cores

    def idle(self, name: str) -> bool:
        """Nothing holds any of the node's cores (an exclusive request may have it)."""
        return self.free[name] >= self.spaces[name].whole > 0

    def fit(
        self,
        cores: int,
        nodes: int,
        groups: frozenset[str],
        *,
        avoid: Collection[str] = (),
        exclusive: bool = False,
        protocol: int = 1,
        memory_mb: int | None = None,
    ) -> list[Space] | None:
        """The ``nodes`` most-free nodes with ``cores`` free that ``groups`` allows (with
        ``exclusive``, idle ones only; with ``protocol`` above 1, only nodes whose agents speak
        it; with ``memory_mb``, only nodes known to have that much), the lowest tier first
        (on-prem before managed VMs: a multi-node request spans both only when the on-prem
        nodes alone are short), taking nodes in ``avoid`` only where there are not enough
        others; None if they do not exist."""
        picked: list[Space] = []
        shunned: list[Space] = []
        for tier in self._tiers:
            levels = self._levels[tier]
            for level in range(self._top[tier], max(cores, 1) - 1, -1):
                for name in levels.get(level, ()):
                    space = self.spaces[name]
                    if not eligible(groups, space, protocol, memory_mb) or (
                        exclusive and not self.idle(name)
                    ):
                        continue
                    if name in avoid:
                        shunned.append(space)
                        continue
                    picked.append(space)
                    if len(picked) == nodes:
                        return picked
        missing = nodes - len(picked)
        return picked + shunned[:missing] if len(shunned) >= missing else None
