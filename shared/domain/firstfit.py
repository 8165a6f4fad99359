"""The autoscaler's first fit of the queue on the nodes up or starting, as the scheduler's
next pass would place it: which tasks overflow (and need nodes started) and which nodes the
queue will use. Pure; used by :mod:`shared.domain.autoscaler` and :mod:`shared.domain.idleplan`
(the bin-packing of the overflow onto new nodes is :mod:`shared.domain.demand`'s).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from functools import partial

from shared.domain.autoscaler_io import Reserved
from shared.domain.jobexclusive import Occupancy, Tenants, bars
from shared.domain.memory import fits
from shared.domain.models import Task
from shared.domain.protocol import AGENT_PROTOCOL, task_protocol
from shared.domain.reservedhold import ends_first, holding

KeptOff = dict[tuple[int, int], set[Hashable]]
"""Overflowing tasks ((job, task)) the job-exclusive rule kept off a node with room for them,
and the other jobs that did: the autoscaler's notes name that cause (:func:`place_queue`)."""


def place_queue(
    queued: Sequence[Task],
    placing: list[str],
    free: dict[str, int],
    size: Mapping[str, int],
    groups_of: Mapping[str, set[str]],
    *,
    protocol: Mapping[str, int] | None = None,
    memory: Mapping[str, int | None] | None = None,
    spill: Callable[[Task], bool] | None = None,
    reserved: Reserved | None = None,
    now_s: float = 0.0,
    bursts: Callable[[Task], bool] | None = None,
    occupied: Occupancy | None = None,
    coming: Collection[str] = (),
    kept_off: KeptOff | None = None,
) -> tuple[list[Task], set[str]]:
    """First fit of the queue, in its order, on the nodes of ``placing`` (in that order),
    as the scheduler's next pass would: the tasks that fit nowhere, and the nodes used.
    ``free`` and ``placing`` are used up as tasks are placed. ``protocol``:
    each node's agent protocol (missing: the current one, as a node the autoscaler starts
    boots the current agent); a task goes only where its assignment can be read. ``memory``:
    each node's free memory (:func:`memory_of`: consumable, :mod:`shared.domain.memoryfit`);
    a task that asks for memory goes only where it fits and holds it there for later tasks,
    a node missing from it taken as enough (None: no task asks for any). ``spill``:
    a multi-node task that does not fit whole and for which it says True (e.g.
    :meth:`Reach.holds`) takes the nodes that fit now, and only the rest overflows (a copy
    with ``nodes`` = the nodes still lacking): nodes are started for the rest only, and a
    node it took is not counted again for a later task. ``reserved``: the tasks after the
    reserved one may not take the cores it waits for unless they end first (at ``now_s``,
    epoch seconds), nor any task if it is not in ``queued``; no hold once the reserved task
    overflows and ``bursts`` says a node will be started for it
    (:mod:`shared.domain.reservedhold`), nor the memory it asks there; a task the
    job-exclusive rule bars from the reserved task's nodes may take none of their cores.
    ``occupied``: which jobs use each node now; a task goes only where the job-exclusive rule
    lets its job (:mod:`shared.domain.jobexclusive`), and what it is placed on counts for
    later tasks; a task of a job that holds nodes takes them before any other, as the
    scheduler's :class:`~shared.domain.capacity.FreeCores` does, except those in ``coming``
    (Starting: not in the scheduler's next pass). ``kept_off`` is filled with the overflowing
    tasks that rule kept off a node with room ((job, task) -> the other jobs that did), for
    the notes to name the cause."""
    overflow: list[Task] = []
    wanted: set[str] = set()
    ages = protocol or {}
    mems = dict(memory or {})  # used up as tasks asking for memory are placed
    order: list[str] = []
    held: Mapping[str, int] = {}
    head = len(queued)
    if reserved is not None:
        order = list(placing)
        head = next((i for i, t in enumerate(queued) if (t.job_id, t.id) == reserved.task), -1)
        held = reserved.cores if head < 0 else {}  # not in the window: it holds them all

    tenants = Tenants(occupied)
    start = tuple(placing)  # the order of its nodes, as they leave ``placing``
    rank: dict[str, int] = {}  # made the first time a job holds nodes
    owns: dict[Hashable, tuple[int, list[str]]] = {}  # job -> (nodes held, those up, in order)

    def own(task: Task) -> list[str]:
        """The nodes up now that ``task``'s job holds, in order, less the first full ones
        (called outside a hold, so a full node stays full: nothing frees cores)."""
        mine = tenants.held.get(task.job_id) if task.job_exclusive else None
        if not mine:
            return []
        count, nodes = owns.get(task.job_id, (0, []))
        if count != len(mine):  # it holds another node since: sort again (rare)
            if not rank:
                rank.update((n, i) for i, n in enumerate(start) if n not in coming)
            nodes = sorted((n for n in mine if n in rank), key=rank.__getitem__)
            owns[task.job_id] = (len(mine), nodes)
        while nodes and free[nodes[0]] <= 0:
            del nodes[0]
        return nodes

    def place(task: Task) -> None:
        fit = partial(
            _place, task, placing, free, size, groups_of, ages, mems, spill, overflow, wanted,
            tenants, kept_off,
        )  # fmt: skip
        if held and not (reserved is not None and ends_first(task, reserved, now_s)):
            kept = _hold_memory(mems, held, reserved)
            first = own(task)  # before the hold takes cores off
            holding(_held_from(task, held, size, reserved), free, placing, order,
                    lambda: fit(first))  # fmt: skip
            for n, mb in kept.items():
                mems[n] = (mems[n] or 0) + mb
        else:
            fit(own(task))

    for task in queued[: head + 1]:
        place(task)
    if head + 1 >= len(queued):
        return overflow, wanted
    assert reserved is not None
    last = overflow[-1] if overflow and head >= 0 else None
    if last is not None and (last.job_id, last.id) == reserved.task:  # it (or a part) waits
        held = {} if bursts is not None and bursts(last) else reserved.cores
    for task in queued[head + 1 :]:
        place(task)
    return overflow, wanted


def _place(
    task: Task,
    placing: list[str],
    free: dict[str, int],
    size: Mapping[str, int],
    groups_of: Mapping[str, set[str]],
    ages: Mapping[str, int],
    mems: dict[str, int | None],
    spill: Callable[[Task], bool] | None,
    overflow: list[Task],
    wanted: set[str],
    tenants: Tenants,
    kept_off: KeptOff | None,
    own: list[str],
) -> None:
    """One task of :func:`place_queue`: placed (``free``, ``wanted``), or (partly) overflows.
    ``own``: the nodes its job holds, tried first."""
    need = task_protocol(task) if ages else 1
    mem = task.min_memory_mb if mems else None
    if task.nodes > 1 or task.exclusive:
        able = placing if need <= 1 and mem is None else _able(placing, ages, need, mems, mem)
        rest = place_wide(
            task, able, free, size, groups_of, wanted, spill=spill, tenants=tenants, memory=mems,
            first=own,
        )  # fmt: skip
        if rest and kept_off is not None:
            _kept(task, able, free, size, groups_of, tenants, kept_off)
        if rest == task.nodes:
            overflow.append(task)
            return
        if rest:
            overflow.append(task.model_copy(update={"nodes": rest}))
        if able is not placing:  # nodes it filled leave the shared order too
            placing[:] = [n for n in placing if free[n] > 0]
        return
    for name in own:  # the nodes its job holds first, as the scheduler's FreeCores
        if (
            free[name] >= task.cores
            and (not task.node_groups or groups_of[name] & set(task.node_groups))
            and (need <= 1 or ages.get(name, AGENT_PROTOCOL) >= need)
            and _has_memory(mems, name, mem)
            and tenants.allows(task.job_id, task.job_exclusive, name)
        ):
            _take(task, name, mem, free, mems, tenants, wanted)
            if free[name] <= 0 and name in placing:
                placing.remove(name)
            return
    blockers: set[Hashable] = set()
    for i, name in enumerate(placing):
        if (
            free[name] >= task.cores
            and (not task.node_groups or groups_of[name] & set(task.node_groups))
            and (need <= 1 or ages.get(name, AGENT_PROTOCOL) >= need)
            and _has_memory(mems, name, mem)
        ):
            if not tenants.allows(task.job_id, task.job_exclusive, name):
                if kept_off is not None:  # room but for the rule: the notes say so
                    blockers |= tenants.blockers(task.job_id, task.job_exclusive, name)
                continue
            _take(task, name, mem, free, mems, tenants, wanted)
            if free[name] <= 0:
                del placing[i]  # full: later tasks need not look at it
            return
    overflow.append(task)
    if blockers and kept_off is not None:
        kept_off[(task.job_id, task.id)] = blockers


def _take(
    task: Task,
    name: str,
    mem: int | None,
    free: dict[str, int],
    mems: dict[str, int | None],
    tenants: Tenants,
    wanted: set[str],
) -> None:
    """A one-node task placed on ``name``: its cores, memory and job count there now."""
    free[name] -= task.cores
    _take_memory(mems, name, mem)
    tenants.occupy(name, task.job_id, task.job_exclusive)
    wanted.add(name)


def _kept(
    task: Task,
    able: Sequence[str],
    free: Mapping[str, int],
    size: Mapping[str, int],
    groups_of: Mapping[str, set[str]],
    tenants: Tenants,
    kept_off: KeptOff,
) -> None:
    """A wide task lacks nodes: note the other jobs whose tasks or hold kept it off nodes of
    its groups with room for it (:func:`place_wide`'s test but the rule), if any did."""
    blockers: set[Hashable] = set()
    for name in able:
        if (
            (not task.node_groups or groups_of[name] & set(task.node_groups))
            and (not task.exclusive or free[name] == size[name])
            and free[name] >= task.cores
        ):
            blockers |= tenants.blockers(task.job_id, task.job_exclusive, name)
    if blockers:
        kept_off[(task.job_id, task.id)] = blockers


def place_wide(
    task: Task,
    placing: list[str],
    free: dict[str, int],
    size: Mapping[str, int],
    groups_of: Mapping[str, set[str]],
    wanted: set[str],
    *,
    spill: Callable[[Task], bool] | None = None,
    tenants: Tenants | None = None,
    memory: dict[str, int | None] | None = None,
    first: Sequence[str] = (),
) -> int:
    """A multi-node or exclusive task: all its nodes at once (each with ``cores`` free;
    exclusive: a node with nothing running, all of whose cores it takes), or none; the nodes
    it still lacks (0: placed). Where it does not fit whole and ``spill(task)`` is True, it
    takes the nodes that fit (a part only of a multi-node task: one node is all or none).
    ``tenants``: only nodes the job-exclusive rule lets its job use. ``memory``: free memory
    (``placing`` holds only nodes with the task's ask), less what it takes on each node.
    ``first``: nodes tried before the others (those its job holds), if in ``placing``."""
    tenants = tenants or Tenants()
    order: Sequence[str] = placing
    if first:
        there = set(placing)
        own = [n for n in first if n in there]
        mine = set(own)
        order = [*own, *(n for n in placing if n not in mine)]
    chosen = [
        name
        for name in order
        if (not task.node_groups or groups_of[name] & set(task.node_groups))
        and (free[name] == size[name] >= task.cores if task.exclusive else free[name] >= task.cores)
        and tenants.allows(task.job_id, task.job_exclusive, name)
    ][: task.nodes]
    if len(chosen) < task.nodes and (task.nodes == 1 or spill is None or not spill(task)):
        return task.nodes
    for name in chosen:
        free[name] -= size[name] if task.exclusive else task.cores
        if memory is not None:
            _take_memory(memory, name, task.min_memory_mb)
        tenants.occupy(name, task.job_id, task.job_exclusive)
        wanted.add(name)
        if free[name] <= 0:
            placing.remove(name)
    return task.nodes - len(chosen)


def _held_from(
    task: Task, held: Mapping[str, int], size: Mapping[str, int], reserved: Reserved | None
) -> Mapping[str, int]:
    """The cores of the reserved nodes ``task`` may not take: those the reserved task needs,
    or every one where the job-exclusive rule bars it from sharing a node with that task
    (the scheduler refuses such a backfill: :func:`shared.domain.reservation.harmless`)."""
    if reserved is None or not bars(
        task.job_id, task.job_exclusive, reserved.task[0], reserved.job_exclusive
    ):
        return held
    return {n: size.get(n, c) for n, c in held.items()}


def _able(
    placing: list[str],
    protocol: Mapping[str, int],
    need: int,
    memory: Mapping[str, int | None],
    mem: int | None,
) -> list[str]:
    """The nodes of ``placing`` whose agents speak protocol ``need`` and (``mem``: MB asked)
    have the memory (a node missing from ``memory`` is taken as having it)."""
    return [
        n
        for n in placing
        if protocol.get(n, AGENT_PROTOCOL) >= need and _has_memory(memory, n, mem)
    ]


def _take_memory(memory: dict[str, int | None], name: str, mem: int | None) -> None:
    """A task asking ``mem`` MB was placed on ``name``: it holds them (memoryfit)."""
    have = memory.get(name)
    if mem and have is not None:
        memory[name] = have - mem


def _hold_memory(
    memory: dict[str, int | None], held: Mapping[str, int], reserved: Reserved | None
) -> dict[str, int]:
    """Take the reserved task's ask off the free memory of its nodes (``held``) while a later
    task is placed, as its cores are (:func:`reservedhold.holding`); what was taken, to give
    back after."""
    ask = reserved.memory_mb if reserved is not None else None
    kept: dict[str, int] = {}
    for n in held if ask else ():
        have = memory.get(n)
        if have is not None and ask:
            kept[n] = min(ask, max(have, 0))
            memory[n] = have - kept[n]
    return kept


def _has_memory(memory: Mapping[str, int | None], name: str, mem: int | None) -> bool:
    """Node ``name`` has the ``mem`` MB asked (None: none asked); a node missing from
    ``memory`` is taken as having it (:func:`memory_of`)."""
    return mem is None or name not in memory or fits(mem, memory[name])
