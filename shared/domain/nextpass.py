"""The nodes the autoscaler's first fit places the queue on, taken in the order the
scheduler's next pass takes them (:mod:`shared.domain.firstfit`). Pure.

The Online nodes are the scheduler's own :class:`~shared.domain.capacity.FreeCores`: the
lowest tier first (on-prem before managed VMs), on-prem nodes the most free cores first,
VMs the fewest that fit first (:meth:`FreeCores._order`), ties in its order (names at first, a node whose free cores change last of its new level), and
a job-exclusive job's tasks on the nodes it holds first. A first fit in node order instead
packed two 1-core tasks onto one of two idle 4-core on-prem nodes and counted the other free for a
4-core task that the scheduler, spreading them, leaves waiting: no VM was started for it
(or, the other way round, one too many). Starting nodes (``coming``) are not in that pass;
they count as capacity after the Online ones, first fit in their given order, and a
job-exclusive job that is given one here does not fill it first.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from shared.domain.capacity import FreeCores, Space
from shared.domain.jobexclusive import Occupancy, Tenants, blockers
from shared.domain.memory import fits
from shared.domain.models import Task
from shared.domain.protocol import AGENT_PROTOCOL


@dataclass(frozen=True)
class Hold:
    """What a task may not take of the reserved nodes (:mod:`shared.domain.reservedhold`)."""

    cores: Mapping[str, int] = field(default_factory=dict)
    """Reserved node -> the cores the reserved task waits for there."""
    memory_mb: Mapping[str, int] = field(default_factory=dict)
    """Reserved node -> the memory it waits for there."""


NO_HOLD = Hold()

_ANY = frozenset[str]()
"""The groups of a task that names none: any node."""

_ENOUGH = 1 << 62
"""The free memory of an Online node missing from ``memory``: taken as enough."""


class NextPass:
    """Free cores, memory and tenants of the nodes up or starting, as tasks are placed."""

    def __init__(
        self,
        placing: Sequence[str],
        free: Mapping[str, int],
        size: Mapping[str, int],
        groups_of: Mapping[str, set[str]],
        *,
        tiers: Mapping[str, int],
        protocol: Mapping[str, int],
        memory: Mapping[str, int | None],
        occupied: Occupancy | None,
        coming: Collection[str],
    ) -> None:
        self.size, self.groups_of, self.protocol = size, groups_of, protocol
        seen = occupied or Occupancy()
        jobs, holders, nobody = seen.jobs, seen.holders, frozenset[Hashable]()
        self.up = FreeCores(
            [
                Space(
                    n,
                    tuple(groups_of[n]),
                    free[n],
                    size.get(n),
                    protocol.get(n, AGENT_PROTOCOL),
                    tiers.get(n, 0),
                    memory.get(n, _ENOUGH),
                    jobs.get(n, nobody),
                    holders.get(n),
                )  # fmt: skip
                for n in placing
                if n not in coming
            ]
        )
        """The Online nodes, and their tenants (a node missing from ``memory``: enough)."""
        self.coming = [n for n in placing if n in coming]
        self.later = {n: free[n] for n in self.coming}
        """A Starting node's free cores."""
        self.later_mb = {n: memory[n] for n in self.coming if n in memory}
        """A Starting node's free memory (missing: taken as enough)."""
        self.tenants = Tenants(occupied)
        """The Starting nodes' tenants."""
        self._none: dict[tuple[frozenset[str], int, int | None, bool], int] = {}
        """(groups, protocol, memory, exclusive) -> the fewest cores a request of that kind
        found no Online node for: free cores and memory only shrink in a first fit, and the
        shared nodes only leave for a job-exclusive job's own index, so a request of more
        finds none either (a job-exclusive one may: the nodes its job holds grow). Most of
        a long queue overflows: without it each task walked the index again."""

    def place(
        self, task: Task, need: int, mem: int | None, avoid: Collection[str], held: Hold
    ) -> list[str]:
        """The nodes ``task`` gets (all it asks, or fewer: the caller decides), needing agent
        protocol ``need`` and ``mem`` MB (None: not counted): the Online ones the scheduler
        would choose, taking the reserved nodes ``avoid`` only where others lack, then
        Starting ones. A reserved node is given only if its spare (beyond ``held``) covers
        the task; else, as the scheduler refusing the backfill, the task waits there."""
        groups = frozenset(task.node_groups) if task.node_groups else _ANY
        kind = (groups, need, mem, task.exclusive)
        names: list[str] = []
        if task.job_exclusive or task.cores < self._none.get(kind, task.cores + 1):
            chosen = self.up.fit(
                task.cores, task.nodes, groups, avoid=avoid, exclusive=task.exclusive,
                protocol=need, memory_mb=mem, job=task.job_id,
                job_exclusive=task.job_exclusive, partial=True,
            )  # fmt: skip
            if not chosen:
                if not task.job_exclusive:
                    self._none[kind] = task.cores
            elif held.cores:
                names = [s.name for s in chosen if self._spare(task, s.name, mem, held)]
            else:
                names = [s.name for s in chosen]
        if len(names) < task.nodes:
            for name in self.coming:
                if name not in names and self._room(task, name, need, mem, held):
                    names.append(name)
                    if len(names) == task.nodes:
                        break
        return names

    def take(self, task: Task, names: Sequence[str]) -> None:
        """``task`` is placed on ``names``: its cores (all of a node, exclusive), memory and
        job count there for later tasks."""
        up, mb = self.up, task.min_memory_mb
        for name in names:
            if name in up.spaces:
                up.take(name, up.free[name] if task.exclusive else task.cores, mb)
                up.occupy(name, task.job_id, task.job_exclusive)
                continue
            self.later[name] -= self.later[name] if task.exclusive else task.cores
            have = self.later_mb.get(name)
            if mb and have is not None:
                self.later_mb[name] = have - mb
            self.tenants.occupy(name, task.job_id, task.job_exclusive)

    def blockers(self, task: Task, need: int, mem: int | None) -> set[Hashable]:
        """The other jobs whose tasks or hold keep ``task`` off nodes with room for it (the
        job-exclusive rule alone): the autoscaler's notes name them."""
        up, job, exclusive = self.up, task.job_id, task.job_exclusive
        if not exclusive and not up.holder and not self.tenants.holders:
            return set()  # only a job-exclusive task, or a node one holds, is ever kept off
        out: set[Hashable] = set()
        for name in up.roomy(task.cores):
            if self._room(task, name, need, mem, NO_HOLD, rule=False):
                out |= blockers(job, exclusive, up.jobs.get(name, ()), up.holder.get(name))
        for name in self.coming:
            if self._room(task, name, need, mem, NO_HOLD, rule=False):
                out |= self.tenants.blockers(job, exclusive, name)
        return out

    def _free(self, name: str) -> tuple[int, int | None]:
        """The node's free cores and memory (None: unknown; a node missing: enough)."""
        if name in self.up.spaces:
            return self.up.free[name], self.up.memory[name]
        return self.later[name], self.later_mb.get(name, _ENOUGH)

    def _room(
        self, task: Task, name: str, need: int, mem: int | None, held: Hold, *, rule: bool = True
    ) -> bool:
        """``task`` fits ``name``: cores (exclusive: idle), groups, protocol, memory, the
        reserved task's hold, and (``rule``) the job-exclusive rule."""
        free, have = self._free(name)
        return (
            (free == self.size[name] >= task.cores if task.exclusive else free >= task.cores)
            and (not task.node_groups or not self.groups_of[name].isdisjoint(task.node_groups))
            and (need <= 1 or self.protocol.get(name, AGENT_PROTOCOL) >= need)
            and fits(mem, have)
            and self._spare(task, name, mem, held)
            and (not rule or self.tenants.allows(task.job_id, task.job_exclusive, name))
        )

    def _spare(self, task: Task, name: str, mem: int | None, held: Hold) -> bool:
        """``task`` leaves a reserved node the cores and memory the reserved task waits for
        there (a node not reserved: True): the scheduler's
        :func:`~shared.domain.reservation.harmless` for a task that does not end first."""
        wait = held.cores.get(name)
        if wait is None:
            return True
        free, have = self._free(name)
        if free - (free if task.exclusive else task.cores) < wait:
            return False
        return mem is None or have is None or have - held.memory_mb.get(name, 0) >= mem
