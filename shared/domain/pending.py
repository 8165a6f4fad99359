"""Why a queued task waits, in words a user can act on. Pure: the cluster's state in, a reason out.

The reasons say what would have to change: which group lacks Online nodes, which nodes run
agents too old to read the task's assignment, how many cores or how much memory the task
wants against what the group has, or that it is next in line. They are computed
when asked (the API's ``pendingReason``), from the same records the scheduler reads. Why a
managed group's autoscaler starts none of the nodes a task waits for is
:mod:`shared.domain.pending_scaling`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

from shared.domain import eligibility, fairshare, memoryfit
from shared.domain.cluster import Node
from shared.domain.growshrink import mute
from shared.domain.jobexclusive import Occupancy, barred_reason
from shared.domain.memory import fits, may_fit, shown
from shared.domain.models import Job, LostAttempt, Task
from shared.domain.ownership import is_managed
from shared.domain.pending_scaling import (
    GroupScaling,
    capped_only,
    group_reason,
    max_zero,
    told_of,
    where,
)
from shared.domain.protocol import describe, task_protocol
from shared.domain.reservation import Reservation
from shared.domain.states import NODE_SCHEDULABLE, JobState, NodeState, TaskState

SHOW_NODES = 5
"""Nodes named in a reason before "and N more"."""

Kind = Literal["starting", "no-online", "agents", "memory", "size", "busy", "next"]
"""What a reason is about: nodes starting, no Online node, old agents, no Online node with
the memory asked, no node big enough, nodes busy, or nothing (next in line)."""


def pending_reason(
    task: Task,
    nodes: Sequence[Node],
    used: Mapping[str, int],
    capped: Collection[str] = (),
    scaling: Mapping[str, GroupScaling] | None = None,
    now: datetime | None = None,
    occupied: Occupancy | None = None,
    held_mb: Mapping[str, int] | None = None,
) -> str | None:
    """Why ``task`` is not running now, or None if it is not queued. Nodes of its groups an
    admin holds (drained or taken offline: ``Node.held``) are named, with how to end it.
    ``capped``: managed groups whose maxNodes is 0, so the autoscaler starts none of their
    nodes (a task only they may run waits for an admin, which the reason says).
    ``scaling`` (by group name) and ``now``: when the task waits for nodes of managed groups
    and none is starting, why the autoscaler starts none (:mod:`shared.domain.pending_scaling`).
    ``occupied``: which jobs use each node; nodes the job-exclusive rule bars the task from
    count as busy, and a wait for cores says so (:mod:`shared.domain.jobexclusive`); so do
    nodes whose free memory (``held_mb``: what active tasks hold) is short of its ask."""
    if task.state is not TaskState.QUEUED:
        return None
    mine = [n for n in nodes if not task.node_groups or set(task.node_groups) & set(n.groups)]
    barred = (
        occupied.barred(task.job_id, task.job_exclusive, [n.name for n in mine]) if occupied else []
    )
    short = memoryfit.short_of(task, mine, used, held_mb) if held_mb else []
    if barred or short:  # no room for it there, whatever is free
        used = {**used, **{n.name: n.cores for n in mine if n.name in {*barred, *short}}}
    kind, reason = _reason(task, mine, used)
    if barred and occupied is not None and kind == "busy":
        reason = barred_reason(task, barred, occupied, where(task.node_groups))
    elif short and held_mb and kind == "busy":
        reason = memoryfit.short_reason(task, short, mine, held_mb, where(task.node_groups))
    if kind == "no-online" and capped_only(task.node_groups, capped):
        reason += "; " + max_zero(task.node_groups)
    elif kind in ("starting", "no-online", "busy", "memory", "size") and scaling and now:
        # "size": too few Online nodes big enough, which the autoscaler may start (a re-probe
        # read "needs 4 nodes ...; 3 Online" as a job that could never run); "starting":
        # only the notes about the task (its ceiling, its deferral), as its nodes come
        asked = [scaling[g] for g in task.node_groups or sorted(scaling) if g in scaling]
        said = [
            told_of(task, g, now) if kind == "starting" else group_reason(task, g, now, nodes)
            for g in asked
        ]
        reason = "; ".join([reason, *(s for s in said if s)])
    held = sorted(n.name for n in mine if n.held is not None)
    if not held or kind == "next":
        return reason
    shown = _listed(held)
    return f"{reason}; held by an admin: {shown} ({_unhold(mine, held[0])})"


def _unhold(nodes: Sequence[Node], name: str) -> str:
    """How an admin lifts ``name``'s hold: a VM held off (a cost freeze) is released, which
    lets the autoscaler start it when work needs it; ``hpc node online`` boots it now (a
    probe: the reason advised only that, which undoes a freeze)."""
    node = next(n for n in nodes if n.name == name)
    if node.held == "offline" and is_managed(node):
        return (
            f"hpc node release {name} lets the autoscaler start it as work needs; "
            f"hpc node online {name} starts it now"
        )
    return f"hpc node online {name} brings it back"


def still_running(lost: LostAttempt, why: str | None = None) -> str:
    """Why a requeued task is not started elsewhere yet: its given-up attempt may still run
    (:func:`shared.domain.lifecycle.held_by_lost`). ``why``: why it was given up (the task's
    error), said as it is; it said "the node was taken offline" of every cause, a killed
    agent's too (a probe)."""
    assert lost.until is not None
    given_up = f"given up: {why}" if why else "given up with its node"
    return (
        f"its attempt {lost.attempt} on {lost.node} may still be running ({given_up}): the "
        "next attempt starts once that one's end is reported, or at "
        f"{lost.until:%H:%M:%S} UTC, when a silent agent's lifeline has killed it"
    )


def _reason(task: Task, mine: Sequence[Node], used: Mapping[str, int]) -> tuple[Kind, str]:
    place = where(task.node_groups)
    online = [n for n in mine if n.state in NODE_SCHEDULABLE and n.incarnation > 0]
    mem = task.min_memory_mb  # a Starting node known to have too little is not waited for,
    starting = sorted(  # nor a mute one (the autoscaler starts none for memory: growshrink)
        n.name
        for n in mine
        if n.state is NodeState.STARTING
        and may_fit(mem, n.memory_mb)
        and not (mem is not None and mute(n))
    )
    if not online and starting:
        return "starting", f"waiting for {', '.join(starting)} to start in {place}"
    if not mine:  # e.g. its group's only node was moved out of it (a probe saw "no Online node")
        group = task.node_groups[0] if task.node_groups else "G"
        return "no-online", (
            f"{place} has no nodes: add some (hpc node add --group {group} for VMs, hpc agent "
            f"run --group {group} on a machine, or hpc node set NAME --group {group})"
        )
    if not online:
        states = Counter(n.state.value for n in mine)
        seen = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        return "no-online", f"no Online node in {place}" + (f" ({seen})" if seen else "")
    need = task_protocol(task)
    if need > 1:
        able = [n for n in online if n.agent_protocol >= need]
        if not able:
            return "agents", _older_agents(need, online, place)
        online = able
    if mem is not None:
        able = [n for n in online if fits(mem, n.memory_mb)]
        if not able:
            return "memory", _less_memory(mem, online, place)
        online = able
    if task.exclusive or task.nodes > 1:
        kind, reason = _wide_reason(task, online, used, place)
        if starting and kind in ("size", "busy"):  # the nodes coming are part of the wait
            reason += f"; {_listed(starting)} starting"
        return kind, reason
    largest = max(n.cores for n in online)
    with_mem = "" if mem is None else f" with {shown(mem, up=True)} memory"
    if largest < task.cores:
        return "size", (
            f"needs {task.cores} cores on one node{with_mem}; the largest Online node{with_mem} "
            f"in {place} has {largest}"
        )
    free = {n.name: n.cores - used.get(n.name, 0) for n in online}
    best = max(free.values())
    if best >= task.cores:
        return "next", (
            f"next in line: {task.cores} core(s) free in {place}; the next scheduler pass places it"
        )
    total = sum(n.cores for n in online)
    busy = total - sum(max(f, 0) for f in free.values())
    # nodes still starting are part of the wait too (a probe saw them named only while no
    # node of the group was Online)
    coming = f"; {_listed(starting)} starting" if starting else ""
    return "busy", (
        f"waiting for {task.cores} free core(s) on one node{with_mem} in {place} "
        f"({busy} of {total} cores busy; at most {max(best, 0)} free on any node){coming}"
    )


def _older_agents(need: int, online: Sequence[Node], place: str) -> str:
    """Every Online node of the task's groups runs an agent that could not read its
    assignment: say which protocol it needs and which nodes to upgrade."""
    names = sorted(n.name for n in online)
    shown = _listed(names)
    which = (
        f"node {shown} in {place} runs an older agent: upgrade it"
        if len(names) == 1
        else f"nodes {shown} in {place} run older agents: upgrade them"
    )
    return f"needs {describe(need)}; {which} (hpc node list shows each node's agent protocol)"


def _less_memory(need: int, online: Sequence[Node], place: str) -> str:
    """No Online node of the task's groups is known to have the memory it asks: say the most
    they have, and which nodes' memory is unknown (agents older than memory reporting)."""
    known = [n.memory_mb for n in online if n.memory_mb is not None]
    unknown = sorted(n.name for n in online if n.memory_mb is None)
    parts = [f"needs {shown(need, up=True)} memory per node"]
    if known:
        parts.append(f"the largest Online node in {place} has {shown(max(known))}")
    if len(unknown) == 1:
        parts.append(
            f"node {unknown[0]}'s memory is unknown (its agent is older than memory "
            "reporting: upgrade it)"
        )
    elif unknown:
        parts.append(
            f"the memory of nodes {_listed(unknown)} is unknown (their agents are older than "
            "memory reporting: upgrade them)"
        )
    return "; ".join(parts) + " (hpc node list shows each node's memory)"


def _wide_reason(
    task: Task, online: Sequence[Node], used: Mapping[str, int], place: str
) -> tuple[Kind, str]:
    """A multi-node or exclusive task: it needs ``nodes`` nodes at once, each big enough and
    free enough (idle, when exclusive)."""
    want = f"{task.nodes} nodes" if task.nodes > 1 else "a node"
    big = [n for n in online if n.cores >= task.cores]
    if len(big) < task.nodes:
        each = " each" if task.nodes > 1 else ""
        mem = task.min_memory_mb  # ``online``: the nodes with that much
        has = "" if mem is None else f" and {shown(mem, up=True)} memory"
        more = "" if mem is None else f" and {shown(mem, up=True)} or more memory"
        return "size", (
            f"needs {want} with {task.cores} core(s){has}{each}; {place} has {len(big)} Online "
            f"node(s) with {task.cores} or more cores{more}"
        )
    if task.exclusive:
        ready = [n for n in big if used.get(n.name, 0) <= 0]
        what = f"{task.nodes} idle nodes" if task.nodes > 1 else "an idle node"
        why, now = "exclusive: nothing else may run there", "idle now"
    else:
        ready = [n for n in big if n.cores - used.get(n.name, 0) >= task.cores]
        what = f"{want} with {task.cores} free core(s) each"
        why, now = "all at once", "that free now"
    if len(ready) >= task.nodes:
        return "next", f"next in line: {what} in {place}; the next scheduler pass places it"
    return "busy", (
        f"waiting for {what} in {place} ({why}; {len(ready)} of {len(big)} big enough "
        f"node(s) are {now})"
    )


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:SHOW_NODES]) + (
        f" and {len(names) - SHOW_NODES} more" if len(names) > SHOW_NODES else ""
    )


def held_for(key: tuple[int, int], reservation: Reservation) -> str:
    """Why a task that fits now does not start: the scheduler's reservation for ``key`` (the
    first queued task that does not fit) keeps the cores it needs (EASY; with no runtime
    limits HPC Pack's rule: nothing passes a blocked job on its nodes)."""
    job, task = key
    nodes = _listed(reservation.nodes)
    when = (
        ""
        if reservation.at is None
        else f" (projected at {datetime.fromtimestamp(reservation.at, UTC):%H:%M:%S} UTC)"
    )
    # true whichever held it back: the reservation, or tasks ahead taking the cores left
    return (
        f"held back for job {job} (task {job}.{task}), which has {nodes} reserved, and for "
        f"tasks ahead of it: it starts when they free up{when}, then this one as cores allow"
    )


def reserved_for_it(reservation: Reservation) -> str:
    """What the scheduler keeps for the task it reserved nodes for."""
    nodes = _listed(reservation.nodes)
    when = (
        "no runtime limit of what runs there gives a time"
        if reservation.at is None
        else f"projected at {datetime.fromtimestamp(reservation.at, UTC):%H:%M:%S} UTC"
    )
    return f"{nodes} reserved for it: nothing else takes the cores it needs ({when})"


def behind(
    job: Job,
    queued: Sequence[Job],
    reason: str,
    *,
    now: datetime,
    prerequisites: Mapping[int, JobState | None],
    use: Mapping[str, int] | None = None,
) -> str:
    """``reason`` led by the jobs ahead of ``job`` in the queue that compete for its nodes
    (queued tasks, ahead in scheduling order, a node group in common): e.g. "12 jobs of
    higher priority ahead; waiting for 8 free core(s) ...". Unchanged if there are none.
    ``use``: the cores each user's tasks hold, for fair share (:mod:`fairshare`; None: off).
    A job that could not start now is not ahead: held, or waiting for a prerequisite job
    (``prerequisites``: each ``dependsOn`` job's state, :mod:`shared.domain.eligibility`);
    the scheduler passes it by."""
    mine = set(job.node_groups)
    count = {"priority": 0, "earlier": 0, "share": 0}
    for other in queued:
        if other.id == job.id or not other.task_counts.get(TaskState.QUEUED):
            continue
        if mine and other.node_groups and mine.isdisjoint(other.node_groups):
            continue
        why = fairshare.ahead(other, job, use)
        if why is None:
            continue
        if eligibility.held_back(other, now=now, prerequisites=prerequisites) is not None:
            continue  # (asked only of a job ahead: it reads the job's dependencies)
        count[why] += 1
    higher, earlier, share = count["priority"], count["earlier"], count["share"]
    parts = []
    if higher:
        parts.append(f"{higher} job{'s' if higher != 1 else ''} of higher priority ahead")
    if earlier:
        parts.append(
            f"{earlier} earlier job{'s' if earlier != 1 else ''} of the same priority ahead"
        )
    if share:
        held = (use or {}).get(job.owner, 0)
        whose = "jobs of users" if share != 1 else "job of a user"
        parts.append(
            f"{share} {whose} holding fewer cores than {job.owner}'s {held} ahead (fair share)"
        )
    return "; ".join([*parts, reason]) if parts else reason
