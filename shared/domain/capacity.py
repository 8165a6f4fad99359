"""Free cores per node, indexed by how many are free: finding the k nodes a request may use
(most free first on-prem, fewest free that fit on VMs) costs about k look-ups, not a sort of every node (2,000 nodes, thousands of
placements per pass). Pure data structure for :mod:`shared.domain.scheduler`."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator, Sequence
from dataclasses import dataclass, field

from shared.domain.jobexclusive import may_use
from shared.domain.memory import fits
from shared.domain.memoryfit import free_mb


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
    jobs: frozenset[Hashable] = field(default_factory=frozenset)
    """The jobs with a task running on it (shared.domain.jobexclusive)."""
    holder: Hashable = None
    """The job-exclusive job running on it (None: none): no other job's task goes there."""
    held_mb: int = 0
    """Memory its running tasks hold (consumable memory: shared.domain.memoryfit); a request
    goes there only if the rest covers its ask."""

    @property
    def whole(self) -> int:
        return self.free if self.cores is None else self.cores


MANAGED_TIER = 1
""":attr:`Space.tier` of a managed VM (billed while it runs)."""


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
    """Free cores per node, and who uses each node (job-level exclusive: a node a job-exclusive
    job holds is indexed apart, under that job, so other jobs' look-ups never see it)."""

    def __init__(self, spaces: Sequence[Space]) -> None:
        self.spaces = {s.name: s for s in spaces}
        self.free = {s.name: s.free for s in spaces}
        self.total = sum(max(f, 0) for f in self.free.values())
        self.memory: dict[str, int | None] = {
            s.name: free_mb(s.memory_mb, s.held_mb) for s in spaces
        }
        """Node -> its memory no task holds (None: unknown), less what this pass placed."""
        self.jobs: dict[str, set[Hashable]] = {s.name: set(s.jobs) for s in spaces if s.jobs}
        """Node -> the jobs with a task on it (running, or placed by this pass; made only for
        the nodes that have some: a pass on 2,000 busy nodes must not build 2,000 sets)."""
        self.holder: dict[str, Hashable] = {
            s.name: s.holder for s in spaces if s.holder is not None
        }
        """Node -> the job-exclusive job that holds it."""
        self._shared: dict[int, dict[int, dict[str, None]]] = {}
        """tier -> free cores -> the nodes no job holds, of that tier with that many free."""
        self._held: dict[Hashable, dict[int, dict[int, dict[str, None]]]] = {}
        """The same per holding job, for the nodes it holds."""
        for space in sorted(spaces, key=lambda s: s.name):
            if space.free > 0:
                self._levels(space.name).setdefault(space.free, {})[space.name] = None
        self._tiers = sorted({s.tier for s in spaces if s.free > 0})
        self._top = {
            t: max((s.free for s in spaces if s.tier == t), default=0) for t in self._tiers
        }

    def _levels(self, name: str) -> dict[int, dict[str, None]]:
        tier = self.spaces[name].tier
        holder = self.holder.get(name)
        index = self._shared if holder is None else self._held.setdefault(holder, {})
        return index.setdefault(tier, {})

    def take(self, name: str, cores: int, memory_mb: int | None = None) -> None:
        """``cores`` and ``memory_mb`` (None: none asked) of ``name`` are taken."""
        before = self.free[name]
        after = before - cores
        levels = self._levels(name)
        if before > 0:
            del levels[before][name]
        if after > 0:
            levels.setdefault(after, {})[name] = None
        self.free[name] = after
        self.total -= cores
        have = self.memory[name]
        if memory_mb and have is not None:
            self.memory[name] = have - memory_mb

    def occupy(self, name: str, job: Hashable, exclusive: bool) -> None:
        """A request of ``job`` (job-exclusive or not) was placed on ``name``; a job-exclusive
        one moves the node into its job's own index."""
        self.jobs.setdefault(name, set()).add(job)
        if not exclusive or self.holder.get(name) == job:
            return
        assert may_use(job, exclusive, self.jobs[name] - {job}, self.holder.get(name))
        free = self.free[name]
        if free > 0:
            del self._levels(name)[free][name]
        self.holder[name] = job
        if free > 0:
            self._levels(name).setdefault(free, {})[name] = None

    def allows(self, name: str, job: Hashable, exclusive: bool) -> bool:
        """The job-exclusive rule (:func:`may_use`) on ``name`` as occupied now."""
        return may_use(job, exclusive, self.jobs.get(name, ()), self.holder.get(name))

    def _indexes(self, job: Hashable) -> tuple[dict[int, dict[int, dict[str, None]]], ...]:
        """Where to look for nodes, in order: those ``job`` holds before all others, so a
        job-exclusive job's tasks pack onto its nodes rather than hold more; nodes another
        job holds never (only a job-exclusive job holds nodes)."""
        own = self._held.get(job) if job is not None else None
        return (self._shared,) if own is None else (own, self._shared)

    def has_memory(self, name: str, memory_mb: int) -> bool:
        """``memory_mb`` of ``name``'s memory is free now (none of a node of unknown memory)."""
        have = self.memory[name]
        return have is not None and have >= memory_mb

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
        job: Hashable = None,
        job_exclusive: bool = False,
        partial: bool = False,
    ) -> list[Space] | None:
        """The first ``nodes`` nodes in :meth:`_order` with ``cores`` free that ``groups`` allows (with
        ``exclusive``, idle ones only; with ``protocol`` above 1, only nodes whose agents speak
        it; with ``memory_mb``, only nodes with that much memory free; only nodes the
        job-exclusive rule lets ``job`` use, those it holds first: :meth:`_indexes`), the
        lowest tier first (on-prem before managed VMs: a multi-node request spans both only
        when the on-prem nodes alone are short), taking nodes in ``avoid`` only where there
        are not enough others; None if they do not exist (``partial``: the fewer found, for
        the autoscaler's simulation of a multi-node task that takes the nodes up now)."""
        picked: list[Space] = []
        shunned: list[Space] = []
        lowest = max(cores, 1)
        # Nested loops, not a generator: this is the pass's innermost loop (bench/).
        for index in self._indexes(job):
            for tier in self._tiers:
                levels = index.get(tier)
                if not levels:
                    continue
                for level in self._order(tier, lowest, exclusive):
                    for name in levels.get(level, ()):
                        space = self.spaces[name]
                        if (
                            not eligible(groups, space, protocol, memory_mb)
                            or (memory_mb is not None and not self.has_memory(name, memory_mb))
                            or (exclusive and not self.idle(name))
                            or (job_exclusive and not self.allows(name, job, job_exclusive))
                        ):
                            continue
                        if name in avoid:
                            shunned.append(space)
                            continue
                        picked.append(space)
                        if len(picked) == nodes:
                            return picked
        missing = nodes - len(picked)
        return picked + shunned[:missing] if partial or len(shunned) >= missing else None

    def _order(self, tier: int, lowest: int, exclusive: bool) -> range:
        """The free-core levels a request looks at, first first: on-prem nodes (tier 0) most
        free first, spreading load over machines already paid for (Slurm's CR_LLN); managed
        VMs fewest free first that fit (best fit, as Slurm packs by default), so work fills
        the VMs up and the others go idle and stop (a probe: 1-, 1-, 1- and 4-core tasks
        on two 4-core VMs, spread 2 + 1, left the 4-core task a third VM). An exclusive
        request takes a whole idle node: the most free come first either way."""
        if tier >= MANAGED_TIER and not exclusive:
            return range(lowest, self._top[tier] + 1)
        return range(self._top[tier], lowest - 1, -1)

    def roomy(self, cores: int) -> Iterator[str]:
        """Every node with at least ``cores`` free (at least 1), held or not, in no set order."""
        for index in (self._shared, *self._held.values()):
            for levels in index.values():
                for level, names in levels.items():
                    if level >= cores:
                        yield from names
