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


@dataclass
class Space:
    """A schedulable node and its free cores now."""

    name: str
    groups: tuple[str, ...]
    free: int


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
    free = {s.name: s.free for s in spaces}
    total = sum(max(f, 0) for f in free.values())
    starts: list[Start] = []
    projected = list(busy)
    reservation: Reservation | None = None
    blocked = False  # a request did not fit: later ones are backfill candidates
    for req in queue:
        if total <= 0:
            break
        need = req.cores * req.nodes
        chosen = (
            _fit(req, spaces, free, avoid=reservation.nodes if reservation else ())
            if need <= total
            else None
        )
        if not blocked:
            if chosen is not None:
                total -= _take(req, chosen, free, now, projected, starts, spaces)
                continue
            if policy == "fcfs":
                break
            blocked = True
            reservation = _reserve(req, spaces, free, projected)
            continue
        if chosen is None:
            continue
        if reservation is None or _harmless(req, chosen, reservation, now):
            total -= _take(req, chosen, free, now, projected, starts, spaces)
    return Decision(starts, reservation)


def _eligible(req: Request, space: Space) -> bool:
    return not req.groups or not req.groups.isdisjoint(space.groups)


def _fit(
    req: Request, spaces: Sequence[Space], free: Mapping[str, int], *, avoid: Iterable[str] = ()
) -> list[Space] | None:
    """The nodes it would take now (most free first, avoiding ``avoid`` where it can)."""
    shun = set(avoid)
    fitting = [s for s in spaces if free[s.name] >= req.cores and _eligible(req, s)]
    if len(fitting) < req.nodes:
        return None
    fitting.sort(key=lambda s: (s.name in shun, -free[s.name], s.name))
    return fitting[: req.nodes]


def _take(
    req: Request,
    chosen: list[Space],
    free: dict[str, int],
    now: float,
    projected: list[Busy],
    starts: list[Start],
    spaces: Sequence[Space],
) -> int:
    until = None if req.limit_s is None else now + req.limit_s
    for space in chosen:
        free[space.name] -= req.cores
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
    return req.cores * req.nodes


def _reserve(
    req: Request, spaces: Sequence[Space], free: Mapping[str, int], busy: Sequence[Busy]
) -> Reservation | None:
    """The earliest projected time it fits, from what runs and its projected ends. None if it
    cannot be projected (something it needs has no known end, or it never fits)."""
    later = dict(free)
    ends = sorted((b for b in busy if b.until is not None), key=lambda b: b.until or 0.0)
    i = 0
    while i < len(ends):
        at = ends[i].until
        assert at is not None
        while i < len(ends) and ends[i].until == at:
            later[ends[i].node] += ends[i].cores
            i += 1
        chosen = _fit(req, spaces, later)
        if chosen is not None:
            names = tuple(s.name for s in chosen)
            return Reservation(req.key, at, names, {n: later[n] - req.cores for n in names})
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
