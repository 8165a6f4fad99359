"""EASY's reservation for the first queued request that does not fit now: which nodes it will
get, and when if that can be known. Pure; used by :mod:`shared.domain.scheduler`.

Two kinds, the first one possible:

- *known time*: the earliest time enough cores free up for it, projected from the runtime
  limits of what runs (start + limit). A later request may start if it ends by then, or if
  it uses only cores the reserved request will not need then (``spare``).
- *unknown time* (``at`` None): what holds the nodes it needs has no runtime limit, so no
  time can be projected. HPC Pack takes a missing runtime as infinite and backfills nothing
  past a blocked job; Slurm projects with the partition's limit. Here the request still
  gets ``nodes`` nodes that could ever hold it (the most free cores now, then by name):
  later requests may take cores it will not need there (free now beyond its need) and any
  node outside the reservation, but never the cores it waits for, so the nodes drain for it
  and it starts as soon as they are free. A runtime limit does not make a later request
  harmless here: the reserved start has no time to end before.

Memory is consumable (:mod:`shared.domain.memoryfit`): a known time counts the memory the
ends free as well as the cores, and a later request that does not end first may take only
memory the reserved request will not need there (``spare_mb``), as for cores.

No reservation at all when the request can never fit (too few eligible nodes big enough).

Job-level exclusive (:mod:`shared.domain.jobexclusive`): a known time counts a node only
once every task of the jobs that bar the request there has ended (one without a limit
never does); and while the reserved request or a backfill candidate is job-exclusive, the
candidate of another job may not take a reserved node at all unless it ends first: it would
share the node with the reserved job, or keep it off it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from shared.domain.capacity import FreeCores, Space, eligible
from shared.domain.jobexclusive import bars
from shared.domain.requests import Busy, Request


@dataclass
class Reservation:
    key: Hashable
    at: float | None
    """When the reserved request is projected to start (None: unknown, what runs on its
    nodes has no runtime limit)."""
    nodes: tuple[str, ...]
    spare: dict[str, int] = field(default_factory=dict)
    """Cores on the reserved nodes that the reserved request will not need when it starts."""
    job: Hashable = None
    """The reserved request's job (:attr:`Request.owner`)."""
    job_exclusive: bool = False
    """Its job is job-exclusive: no other job may take a reserved node's spare cores."""
    spare_mb: dict[str, int] = field(default_factory=dict)
    """The same for memory, on the reserved nodes of known memory."""
    held: dict[str, int] = field(default_factory=dict)
    """Cores of each reserved node free when it was made that a later request not ending
    first may not take (free then less ``spare``): what the autoscaler's first fit holds
    (``spare`` itself shrinks as the pass backfills)."""
    held_mb: dict[str, int] = field(default_factory=dict)
    """The same for memory, on the reserved nodes of known memory."""

    def ends_first(self, limit_s: float | None, now: float) -> bool:
        """A request of this runtime limit started now ends before the reserved start (never
        when that start is unknown)."""
        return self.at is not None and limit_s is not None and now + limit_s <= self.at


def reserve(req: Request, free: FreeCores, busy: Sequence[Busy]) -> Reservation | None:
    """The reservation for ``req``, blocked now: at a projected time if what runs lets one be
    projected, else at an unknown time; None if it can never fit."""
    res = _known(req, free, busy) or _unknown(req, free, busy)
    if res is not None:
        res.held = {n: max(free.free[n] - res.spare[n], 0) for n in res.nodes}
        res.held_mb = {
            n: max((free.memory[n] or 0) - mb, 0)
            for n, mb in res.spare_mb.items()
            if free.memory[n] is not None
        }
    return res


def harmless(req: Request, takes: Mapping[str, int], res: Reservation, now: float) -> bool:
    """Starting ``req`` now, taking ``takes`` cores per node, leaves the reservation intact
    (and books the spare cores it will still hold then)."""
    if res.ends_first(req.limit_s, now):
        return True
    needed = [n for n in takes if n in res.spare]
    if needed and bars(req.owner, req.job_exclusive, res.job, res.job_exclusive):
        return False  # it would share a reserved node with a job-exclusive job
    mb = req.memory_mb or 0
    if any(res.spare[n] < takes[n] or res.spare_mb.get(n, mb) < mb for n in needed):
        return False
    for n in needed:
        res.spare[n] -= takes[n]
        if n in res.spare_mb:
            res.spare_mb[n] -= mb
    return True


def _need(req: Request, space: Space) -> int | None:
    """Cores ``req`` needs free on ``space`` to start there (None: it never can)."""
    if not eligible(req.groups, space, req.protocol, req.memory_mb):
        return None
    if req.exclusive:
        return space.whole if space.whole >= req.cores else None
    return req.cores


def _known(req: Request, free: FreeCores, busy: Sequence[Busy]) -> Reservation | None:
    """The earliest projected time it fits, from what runs and its projected ends. None if it
    cannot be projected (what it needs has no known end, or it never fits)."""
    later = dict(free.free)
    memory = dict(free.memory)  # free memory then (None: unknown)
    ask = req.memory_mb or 0
    spaces = free.spaces
    need = {n: c for n, space in spaces.items() if (c := _need(req, space)) is not None}
    barring = Counter(b.node for b in busy if _bars(req, b))
    """Node -> tasks still there that keep a job-exclusive rule's request off it."""

    def fits(n: str) -> bool:
        mb = memory[n]
        return later[n] >= need[n] and not barring[n] and (not ask or (mb or 0) >= ask)

    fitting = sum(1 for n in need if fits(n))
    ends = sorted((b for b in busy if b.until is not None), key=lambda b: b.until or 0.0)
    i = 0
    while i < len(ends):
        at = ends[i].until
        assert at is not None
        while i < len(ends) and ends[i].until == at:
            b = ends[i]
            i += 1
            if b.node not in need:
                continue
            was = fits(b.node)
            later[b.node] += b.cores
            mb = memory[b.node]
            memory[b.node] = None if mb is None else mb + b.memory_mb
            barring[b.node] -= _bars(req, b)
            fitting += not was and fits(b.node)
        if fitting >= req.nodes:
            best = sorted((n for n in need if fits(n)), key=lambda n: (-later[n], n))[: req.nodes]
            spare = {n: later[n] - need[n] for n in best}
            res = Reservation(req.key, at, tuple(best), spare, req.owner, req.job_exclusive)
            res.spare_mb = _spare_mb(best, memory, ask)
            return res
    return None


def _bars(req: Request, b: Busy) -> bool:
    """What ``b`` runs keeps ``req`` off its node until it ends (job-level exclusive)."""
    return bars(req.owner, req.job_exclusive, b.job, b.job_exclusive)


def _unknown(req: Request, free: FreeCores, busy: Sequence[Busy]) -> Reservation | None:
    """``req.nodes`` nodes that could hold it once what runs there ends, the most free now
    first, at an unknown time. A node's size is its cores, or (unknown) its free cores plus
    what runs there. None if too few nodes could ever hold it."""
    held = Counter[str]()
    for b in busy:
        held[b.node] += b.cores
    need: dict[str, int] = {}
    for name, space in free.spaces.items():
        if not eligible(req.groups, space, req.protocol, req.memory_mb):
            continue
        size = space.cores if space.cores is not None else free.free[name] + held[name]
        if size >= req.cores:
            need[name] = size if req.exclusive else req.cores
    if len(need) < req.nodes:
        return None
    best = sorted(need, key=lambda n: (-free.free[n], n))[: req.nodes]
    spare = {n: max(free.free[n] - need[n], 0) for n in best}
    res = Reservation(req.key, None, tuple(best), spare, req.owner, req.job_exclusive)
    res.spare_mb = _spare_mb(best, free.memory, req.memory_mb or 0)
    return res


def _spare_mb(nodes: Sequence[str], memory: Mapping[str, int | None], ask: int) -> dict[str, int]:
    """Memory of the reserved ``nodes`` the reserved request (asking ``ask`` MB) leaves to
    others (free then, or now for an unknown time); nodes of unknown memory left out."""
    return {n: max(mb - ask, 0) for n in nodes if (mb := memory[n]) is not None}
