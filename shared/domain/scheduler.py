"""The scheduler's decision: which queued request starts now, on which nodes. Pure: no I/O;
the time is passed in (``now``), so the cluster and the trace simulator run this same code.

A *request* is one queued task (in the cluster) or one job (in the simulator): ``nodes``
nodes with ``cores`` free cores each, on nodes of its groups, with an optional runtime
limit. The queue comes in scheduling order (priority, then submit time). Two policies:

- ``fcfs``: start requests in order while they fit; the first that does not fit blocks
  everything behind it.
- ``easy`` (EASY backfilling, the cluster's policy): the first request that does not fit
  gets a *reservation*: the earliest time enough cores free up for it, projected from
  the runtime limits of what runs (start + limit). A later request starts now only if it
  fits now and does not delay that reservation: it ends before the reserved time, or it
  uses only cores the reserved request will not need. Where the projection is impossible
  (what runs has no runtime limit), nothing can be reserved and any request that fits
  starts (plain backfill), as before runtime limits existed.

Nodes are chosen most-free first (spreading load); a backfilled request prefers nodes the
reservation does not need. A node never gets more cores than it has.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from shared.domain.capacity import FreeCores, Space, eligible
from shared.domain.models import Node, Task
from shared.domain.states import NODE_SCHEDULABLE

Policy = Literal["fcfs", "easy"]
POLICIES: tuple[Policy, ...] = ("fcfs", "easy")


@dataclass(frozen=True)
class Request:
    key: Hashable
    cores: int
    """Cores on each of its nodes."""
    nodes: int = 1
    groups: frozenset[str] = frozenset()
    """Nodes of any of these groups may run it; empty means any node."""
    limit_s: float | None = None
    """Runtime limit: it ends by start + limit (None: unknown)."""


@dataclass(frozen=True)
class Busy:
    """Cores a running request holds on one node, until its projected end (None: unknown)."""

    node: str
    cores: int
    until: float | None


@dataclass(frozen=True)
class Start:
    key: Hashable
    nodes: tuple[str, ...]
    group: str | None
    """The group of the first node that made it eligible (HPC_NODE_GROUP)."""


@dataclass
class Reservation:
    key: Hashable
    at: float
    nodes: tuple[str, ...]
    spare: dict[str, int] = field(default_factory=dict)
    """Cores on the reserved nodes that the reserved request will not need at ``at``."""


@dataclass
class Decision:
    starts: list[Start]
    reservation: Reservation | None = None
    """EASY's reservation for the first request that did not fit (None: none, or unknown)."""


def schedule(
    queue: Iterable[Request],
    spaces: Sequence[Space],
    busy: Sequence[Busy],
    *,
    now: float,
    policy: Policy = "easy",
) -> Decision:
    """Which requests of ``queue`` (in order) start now, and EASY's reservation."""
    free = FreeCores(spaces)
    starts: list[Start] = []
    projected = list(busy)
    reservation: Reservation | None = None
    blocked = False  # a request did not fit: later ones are backfill candidates
    for req in queue:
        if free.total <= 0:
            break
        chosen = (
            free.fit(
                req.cores, req.nodes, req.groups, avoid=reservation.spare if reservation else ()
            )
            if req.cores * req.nodes <= free.total
            else None
        )
        if not blocked:
            if chosen is not None:
                _take(req, chosen, free, now, projected, starts)
                continue
            if policy == "fcfs":
                break
            blocked = True
            reservation = _reserve(req, free, projected)
            continue
        if chosen is None:
            continue
        if reservation is None or _harmless(req, chosen, reservation, now):
            _take(req, chosen, free, now, projected, starts)
    return Decision(starts, reservation)


def _take(
    req: Request,
    chosen: list[Space],
    free: FreeCores,
    now: float,
    projected: list[Busy],
    starts: list[Start],
) -> None:
    until = None if req.limit_s is None else now + req.limit_s
    for space in chosen:
        free.take(space.name, req.cores)
        projected.append(Busy(space.name, req.cores, until))
    first = chosen[0]
    group = next((g for g in first.groups if g in req.groups), None)
    starts.append(
        Start(
            req.key,
            tuple(s.name for s in chosen),
            group or (first.groups[0] if first.groups else None),
        )
    )


def _reserve(req: Request, free: FreeCores, busy: Sequence[Busy]) -> Reservation | None:
    """The earliest projected time it fits, from what runs and its projected ends. None if it
    cannot be projected (what it needs has no known end, or it never fits)."""
    later = dict(free.free)
    spaces = free.spaces
    fitting = sum(1 for n, f in later.items() if f >= req.cores and eligible(req.groups, spaces[n]))
    ends = sorted((b for b in busy if b.until is not None), key=lambda b: b.until or 0.0)
    i = 0
    while i < len(ends):
        at = ends[i].until
        assert at is not None
        while i < len(ends) and ends[i].until == at:
            b = ends[i]
            i += 1
            if b.node not in spaces or not eligible(req.groups, spaces[b.node]):
                continue
            was = later[b.node] >= req.cores
            later[b.node] += b.cores
            fitting += not was and later[b.node] >= req.cores
        if fitting >= req.nodes:
            best = sorted(
                (n for n, f in later.items() if f >= req.cores and eligible(req.groups, spaces[n])),
                key=lambda n: (-later[n], n),
            )[: req.nodes]
            return Reservation(req.key, at, tuple(best), {n: later[n] - req.cores for n in best})
    return None


def _harmless(req: Request, chosen: list[Space], res: Reservation, now: float) -> bool:
    """Starting ``req`` on ``chosen`` now leaves the reservation intact (and books the spare
    cores it will still hold then)."""
    if req.limit_s is not None and now + req.limit_s <= res.at:
        return True
    needed = [s.name for s in chosen if s.name in res.spare]
    if any(res.spare[n] < req.cores for n in needed):
        return False
    for n in needed:
        res.spare[n] -= req.cores
    return True


# --- the cluster's records -> requests ------------------------------------------------


@dataclass(frozen=True)
class Placement:
    job_id: int
    task_id: int
    node: str
    group: str | None
    """The node's group that made it eligible (HPC_NODE_GROUP), or its first group."""


def free_cores(nodes: Iterable[Node], used: Mapping[str, int]) -> dict[str, int]:
    """Free cores of each schedulable node, given the cores its active tasks hold."""
    return {n.name: n.cores - used.get(n.name, 0) for n in nodes if n.state in NODE_SCHEDULABLE}


def plan(
    queued: Sequence[Task],
    nodes: Sequence[Node],
    used: Mapping[str, int],
    *,
    running: Sequence[Task] = (),
    now: datetime | None = None,
    policy: Policy = "easy",
) -> list[Placement]:
    """Placements for as many of ``queued`` (already in scheduling order) as fit.
    ``running`` (the active tasks) gives EASY its projection where their limits are known."""
    free = free_cores(nodes, used)
    spaces = [Space(n.name, tuple(n.groups), free[n.name]) for n in nodes if n.name in free]
    at = now.timestamp() if now else 0.0
    busy = [
        Busy(t.node, t.cores, _until(t)) for t in running if t.node is not None and t.node in free
    ]
    decision = schedule(
        (
            Request((t.job_id, t.id), t.cores, 1, frozenset(t.node_groups), t.runtime_limit_s)
            for t in queued
        ),
        spaces,
        busy,
        now=at,
        policy=policy,
    )
    out = []
    for start in decision.starts:
        key: tuple[int, int] = start.key  # type: ignore[assignment]
        out.append(Placement(key[0], key[1], start.nodes[0], start.group))
    return out


def _until(task: Task) -> float | None:
    if task.runtime_limit_s is None or task.dispatch_time is None:
        return None
    start = task.start_time or task.dispatch_time
    return start.timestamp() + task.runtime_limit_s
