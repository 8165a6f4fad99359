"""The scheduler's decision: which queued request starts now, on which nodes. Pure: no I/O;
the time is passed in (``now``), so the cluster and the trace simulator run this same code.

A *request* is one queued task (in the cluster) or one job (in the simulator): ``nodes``
nodes with ``cores`` free cores each, on nodes of its groups (and, asking for memory, that
much free on each, held while it runs: :mod:`shared.domain.memoryfit`; in every path, as
job-level exclusive below; growth adds no memory), with an optional runtime limit; all its
nodes start together or none does (no partial hold that could deadlock two multi-node
requests). An *exclusive* request wants idle nodes (nothing running) and takes
all their cores. A *job-exclusive* request (its job's ``exclusive``) goes only on nodes no
other job uses, and a node where one runs takes no other job's request
(:mod:`shared.domain.jobexclusive`; in every path: placement, EASY's reservation and its
backfill; growth stays on a request's own nodes). A request with ``max_cores`` is placed
on ``cores`` (so reservations stay right) and then grows, per node, up to ``max_cores``
with the cores the pass leaves free, never into cores EASY's reservation needs. The queue comes in scheduling order (priority,
then submit time). Two policies:

- ``fcfs``: start requests in order while they fit; the first that does not fit blocks
  everything behind it.
- ``easy`` (EASY backfilling, the cluster's policy): the first request that does not fit
  gets a *reservation* (:mod:`shared.domain.reservation`): nodes, and the earliest time
  enough cores free up there, projected from the runtime limits of what runs (start +
  limit). A later request starts now only if it fits now and does not delay that
  reservation: it ends before the reserved time, or it uses only cores the reserved
  request will not need. Where no time can be projected (what runs has no runtime limit),
  the nodes are still reserved, at an unknown time: later requests may use other nodes and
  the reserved nodes' spare cores, never the cores it waits for, whatever their limits.
  HPC Pack does the same (a missing runtime is infinite: no backfill past a blocked job);
  without it a wide or exclusive job starved behind a stream of small unlimited tasks.
  A blocked request that can never be reserved on the nodes up now (its nodes held,
  drained, Offline, still booting) passes the reservation to the next blocked one, which
  would otherwise starve as well (a probe: a wide job behind an unreservable head).

Nodes are chosen on-prem first, then managed VMs (a job allowed on both bursts to the cloud
only for what on-prem nodes cannot take now, even when VMs are up); on-prem nodes most-free
first (spreading load), VMs fewest free first that fit (packing them, so the others go idle
and stop: :meth:`FreeCores._order`); a backfilled request prefers nodes the reservation does not
need. A node never gets more cores than it has.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from shared.domain.capacity import MANAGED_TIER, FreeCores, Space
from shared.domain.cluster import Node
from shared.domain.hosts import Holding, held
from shared.domain.jobexclusive import occupancy
from shared.domain.jumps import Boots, jumpers
from shared.domain.memoryfit import asked, held_memory
from shared.domain.models import Host, Task
from shared.domain.ownership import is_managed
from shared.domain.protocol import task_protocol
from shared.domain.requests import Busy, Request
from shared.domain.reservation import Reservation, harmless, reserve
from shared.domain.states import NODE_SCHEDULABLE

Policy = Literal["fcfs", "easy"]
POLICIES: tuple[Policy, ...] = ("fcfs", "easy")


@dataclass(frozen=True)
class Start:
    key: Hashable
    nodes: tuple[str, ...]
    group: str | None
    """The group of the first node that made it eligible (HPC_NODE_GROUP)."""
    cores: tuple[int, ...] = ()
    """Cores granted on each of ``nodes``."""


@dataclass
class Decision:
    starts: list[Start]
    reservation: Reservation | None = None
    """EASY's reservation for the first request that did not fit (None: none, or it never fits)."""


def schedule(
    queue: Iterable[Request],
    spaces: Sequence[Space],
    busy: Sequence[Busy],
    *,
    now: float,
    policy: Policy = "easy",
    boots: Boots | None = None,
) -> Decision:
    """Which requests of ``queue`` (in order) start now, and EASY's reservation.
    ``boots``: the nodes being started; with EASY, requests that fit on free nodes may
    then start ahead of those that wait for the boots (:mod:`shared.domain.jumps`)."""
    free = FreeCores(spaces)
    starts: list[Start] = []
    growing: list[tuple[int, Request]] = []
    projected = list(busy)
    reservation: Reservation | None = None
    blocked = False  # a request did not fit: later ones are backfill candidates
    if boots is not None and policy == "easy":
        queue = list(queue)
        jumped = set()
        for req in jumpers(queue, spaces, boots, now):
            chosen = free.fit(
                req.cores,
                req.nodes,
                req.groups,
                protocol=req.protocol,
                memory_mb=req.memory_mb,
                job=req.owner,
            )
            if chosen is not None:
                _take(req, chosen, free, now, projected, starts, growing)
                jumped.add(req.key)
        queue = [r for r in queue if r.key not in jumped]
    for req in queue:
        if free.total <= 0:
            break
        chosen = (
            free.fit(
                req.cores,
                req.nodes,
                req.groups,
                avoid=reservation.spare if reservation else (),
                exclusive=req.exclusive,
                protocol=req.protocol,
                memory_mb=req.memory_mb,
                job=req.owner,
                job_exclusive=req.job_exclusive,
            )
            if req.cores * req.nodes <= free.total
            else None
        )
        if not blocked:
            if chosen is not None:
                _take(req, chosen, free, now, projected, starts, growing)
                continue
            if policy == "fcfs":
                break
            blocked = True
            reservation = reserve(req, free, projected)
            continue
        if chosen is None:
            if reservation is None:  # none yet: the first blocked one could never be given
                # one (its nodes held, drained, off) and must not leave the next unprotected
                reservation = reserve(req, free, projected)  # (a probe saw it starve)
            continue
        takes = {s.name: _amount(req, free, s.name) for s in chosen}
        if reservation is None or harmless(req, takes, reservation, now):
            _take(req, chosen, free, now, projected, starts, growing)
    _grow(starts, growing, free, reservation, now)
    return Decision(starts, reservation)


def _amount(req: Request, free: FreeCores, node: str) -> int:
    """Cores ``req`` takes on ``node`` now: all of them if exclusive, else its ``cores``."""
    return free.free[node] if req.exclusive else req.cores


def _take(
    req: Request,
    chosen: list[Space],
    free: FreeCores,
    now: float,
    projected: list[Busy],
    starts: list[Start],
    growing: list[tuple[int, Request]],
) -> None:
    until = None if req.limit_s is None else now + req.limit_s
    granted = []
    job = req.owner
    for space in chosen:
        cores = _amount(req, free, space.name)
        free.take(space.name, cores, req.memory_mb)
        free.occupy(space.name, job, req.job_exclusive)
        mb = req.memory_mb or 0
        projected.append(Busy(space.name, cores, until, job, req.job_exclusive, mb))
        granted.append(cores)
    first = chosen[0]
    group = next((g for g in first.groups if g in req.groups), None)
    if not req.exclusive and req.max_cores is not None and req.max_cores > req.cores:
        growing.append((len(starts), req))
    starts.append(
        Start(
            req.key,
            tuple(s.name for s in chosen),
            group or (first.groups[0] if first.groups else None),
            tuple(granted),
        )
    )


def _grow(
    starts: list[Start],
    growing: Sequence[tuple[int, Request]],
    free: FreeCores,
    reservation: Reservation | None,
    now: float,
) -> None:
    """Give requests with ``max_cores`` the cores the pass left free on their nodes, in queue
    order; on a reserved node only its spare cores, unless the request ends before the
    reservation's known time."""
    for i, req in growing:
        assert req.max_cores is not None
        start = starts[i]
        ends_first = reservation is not None and reservation.ends_first(req.limit_s, now)
        granted = []
        for node, cores in zip(start.nodes, start.cores, strict=True):
            room = max(free.free[node], 0)
            if reservation is not None and not ends_first and node in reservation.spare:
                room = min(room, reservation.spare[node])
            extra = min(req.max_cores - cores, room)
            if extra > 0:
                free.take(node, extra)
                if reservation is not None and not ends_first and node in reservation.spare:
                    reservation.spare[node] -= extra
            granted.append(cores + max(extra, 0))
        starts[i] = replace(start, cores=tuple(granted))


# --- the cluster's records -> requests ------------------------------------------------


@dataclass(frozen=True)
class Placement:
    job_id: int
    task_id: int
    node: str
    """The first node: where the command runs (``hosts[0].node``)."""
    group: str | None
    """The node's group that made it eligible (HPC_NODE_GROUP), or its first group."""
    hosts: tuple[Host, ...] = ()
    """Every node it gets, with the cores granted there and the node's incarnation."""


def free_cores(nodes: Iterable[Node], used: Mapping[str, int]) -> dict[str, int]:
    """Free cores of each schedulable node, given the cores its active tasks hold."""
    return {n.name: n.cores - used.get(n.name, 0) for n in nodes if n.state in NODE_SCHEDULABLE}


def request(task: Task) -> Request:
    """What a queued task asks the scheduler for."""
    return Request(
        (task.job_id, task.id),
        task.cores,
        task.nodes,
        frozenset(task.node_groups),
        task.runtime_limit_s,
        max_cores=task.max_cores,
        exclusive=task.exclusive,
        protocol=task_protocol(task),
        memory_mb=task.min_memory_mb,
        job=task.job_id,
        job_exclusive=task.job_exclusive,
        queued_at=task.submit_time.timestamp(),
    )


def plan(
    queued: Sequence[Task],
    nodes: Sequence[Node],
    used: Mapping[str, int],
    *,
    running: Sequence[Task | Holding] = (),
    now: datetime | None = None,
    policy: Policy = "easy",
    boots: Boots | None = None,
) -> list[Placement]:
    """Placements for as many of ``queued`` (already in scheduling order) as fit.
    ``running`` (the active tasks) gives EASY its projection where their limits are known;
    ``used`` must count the cores of every node a task holds (:func:`hosts.used_cores`);
    ``boots``: the nodes being started (:func:`shared.domain.jumps.boots_of`), for jumps."""
    decision = decide(queued, nodes, used, running=running, now=now, policy=policy, boots=boots)
    by_name = {n.name: n for n in nodes}
    out = []
    for start in decision.starts:
        key: tuple[int, int] = start.key  # type: ignore[assignment]
        hosts = tuple(
            Host(node=n, cores=c, incarnation=by_name[n].incarnation)
            for n, c in zip(start.nodes, start.cores, strict=True)
        )
        out.append(Placement(key[0], key[1], start.nodes[0], start.group, hosts))
    return out


def decide(
    queued: Sequence[Task],
    nodes: Sequence[Node],
    used: Mapping[str, int],
    *,
    running: Sequence[Task | Holding] = (),
    now: datetime | None = None,
    policy: Policy = "easy",
    boots: Boots | None = None,
) -> Decision:
    """:func:`plan`'s decision as it is (starts keyed by (job id, task id), and EASY's
    reservation): the pending reasons read the reservation from it."""
    free = free_cores(nodes, used)
    seen = occupancy(running)
    holds = held_memory(running)
    spaces = [
        Space(
            n.name,
            tuple(n.groups),
            free[n.name],
            n.cores,
            n.agent_protocol,
            tier(n),
            n.memory_mb,
            seen.jobs.get(n.name, frozenset()),
            seen.holders.get(n.name),
            holds.get(n.name, 0),
        )  # fmt: skip
        for n in nodes
        if n.name in free
    ]
    at = now.timestamp() if now else 0.0
    busy = [
        Busy(h.node, h.cores, _until(t), t.job_id, t.job_exclusive, asked(t))
        for t in running
        for h in held(t)
        if h.node in free
    ]
    return schedule((request(t) for t in queued), spaces, busy, now=at, policy=policy, boots=boots)


def tier(node: Node) -> int:
    """On-prem nodes fill before managed VMs (:attr:`Space.tier`)."""
    return MANAGED_TIER if is_managed(node) else 0


def _until(task: Task | Holding) -> float | None:
    if isinstance(task, Holding):
        return task.until
    if task.runtime_limit_s is None or task.dispatch_time is None:
        return None
    start = task.start_time or task.dispatch_time
    return start.timestamp() + task.runtime_limit_s
