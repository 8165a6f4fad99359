"""Queued work that waits for running work, not for nodes: no node is started or kept for it.

A queued task that cannot fit under its group's ``maxNodes`` beside the nodes busy with
running work (and the tasks shown ahead of it) cannot start until that work ends, however
many nodes are up: a node started or kept for it would idle, billing, until then (a group
capped at 4 nodes, a 3-node job running for hours, a queued 2-node job: one VM idle for
hours). Slurm's power saving likewise resumes no node for a job it cannot start. The
autoscaler and the idle policies are shown the queue without such tasks (the cluster's
timer run, :mod:`shared.usecases.autoscale`, and the replay, :mod:`shared.sim.elastic`);
once the running work ends they fit and are shown again, and their nodes start.

What "fits" means, per group (:class:`Room`): the nodes running work stay up and keep
their work; an Online one still takes tasks on its free cores (it is not held whole); the
rest of ``maxNodes``, less the busy nodes, are whole nodes of its size. (A group with fewer
nodes than that, or nodes an admin holds, is not limited here: its notes say to add nodes.)
A task fits if it finds ``nodes`` distinct places with its
cores free (an exclusive task: whole nodes) among the rooms of the groups it may run in
(a multi-node task may span them, as the scheduler places it). The tasks shown ahead take
their places first, best fit (as the scheduler packs VMs), but only a task that may run in
one group alone: where one allowed in several goes is not known. A task that may run on a
node no autoscaler grows (on-prem, a group with autoscale off) is never hidden, nor one no
node of its groups could ever hold (other rules say why: :mod:`shared.domain.demand`).
A hidden task wider than its groups' ``maxNodes`` even with nothing running (queued before
an admin lowered it; submit refuses such a job) is told it waits for a higher maxNodes, not
for running work (:func:`never_fits`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from shared.domain.autoscaler_io import Note
from shared.domain.autoscaler_notes import listed_jobs
from shared.domain.autoscaler_notes import queued as counted
from shared.domain.cluster import Node
from shared.domain.growshrink import AutoscalerPolicy
from shared.domain.memory import may_fit
from shared.domain.models import Task
from shared.domain.notescope import scope
from shared.domain.states import NodeState


@dataclass
class Room:
    """What a grown group can still give queued work beside its running work."""

    node_cores: int
    whole: int
    """Nodes with no running work it may still have up: ``maxNodes`` less the busy ones."""
    partial: list[int] = field(default_factory=list)
    """The free cores of its Online nodes that run work, ascending."""
    busy: int = 0
    """Its nodes that run work (for the note)."""
    max_nodes: int = 0
    node_memory_mb: int | None = None
    """Its nodes' memory as the autoscaler grows with it (None: unknown, may be enough)."""


def rooms(
    nodes: Iterable[Node], used: Mapping[str, int], policy: AutoscalerPolicy
) -> tuple[dict[str, Room], set[str]]:
    """The :class:`Room` of each group the autoscaler grows, and the groups of the nodes
    it grows none of (on-prem, autoscale off): work allowed there is never hidden."""
    grown = {g: gp for g, gp in policy.groups.items() if g not in policy.exclude_node_groups}
    busy: dict[str, int] = {}
    partial: dict[str, list[int]] = {}
    elsewhere: set[str] = set()
    for n in nodes:
        group = next((g for g in n.groups if g in policy.groups), None)
        if group is None or group not in grown:
            elsewhere.update(n.groups or ("",))
            continue
        taken = used.get(n.name, 0)
        if taken > 0 and n.state is not NodeState.OFFLINE:
            busy[group] = busy.get(group, 0) + 1
            if n.state is NodeState.ONLINE and n.held is None and n.cores > taken:
                partial.setdefault(group, []).append(n.cores - taken)
    out = {}
    for g, gp in grown.items():
        b = busy.get(g, 0)
        out[g] = Room(
            gp.node_cores, max(0, gp.max_nodes - b), sorted(partial.get(g, [])), b,
            gp.max_nodes, gp.node_memory_mb,
        )  # fmt: skip
    return out, elsewhere


def beyond_ceiling(
    queued: Sequence[Task], rooms: Mapping[str, Room], elsewhere: Iterable[str] = ()
) -> set[tuple[int, int]]:
    """The keys ``(job_id, id)`` of the ``queued`` tasks (in queue order) that cannot fit
    under their groups' ``maxNodes`` beside the running work and the tasks shown ahead of
    them (see the module). ``rooms`` is changed: what the shown tasks took."""
    other = set(elsewhere)
    hidden: set[tuple[int, int]] = set()
    for task in queued:
        if task.node_groups:
            if not other.isdisjoint(task.node_groups):
                continue
            mine = [g for g in task.node_groups if g in rooms]
        else:
            if other:
                continue
            mine = list(rooms)
        able = [
            g
            for g in mine
            if rooms[g].node_cores >= task.cores
            and may_fit(task.min_memory_mb, rooms[g].node_memory_mb)
        ]
        if not able:  # no node of its groups could ever hold it (cores or memory: a probe's
            continue  # 100 GB task took the last slot and hid a job that fit): not this rule's
        need, cores = task.nodes, task.cores
        places = 0
        for g in able:
            room = rooms[g]
            places += room.whole
            if not task.exclusive:
                places += len(room.partial) - bisect.bisect_left(room.partial, cores)
        if places < need:
            hidden.add((task.job_id, task.id))
        elif len(able) == 1 and len(mine) == 1:
            _take(rooms[able[0]], need, cores, task.exclusive)
    return hidden


def _take(room: Room, need: int, cores: int, exclusive: bool) -> None:
    """Place a shown task's ``need`` parts in ``room``: the fullest nodes that fit first."""
    back: list[int] = []  # what the nodes it takes keep free (one part per node)
    while need > 0 and not exclusive:
        i = bisect.bisect_left(room.partial, cores)
        if i >= len(room.partial):
            break
        back.append(room.partial.pop(i) - cores)
        need -= 1
    room.whole -= need
    if not exclusive:
        back += [room.node_cores - cores] * need
    for left in back:
        if left > 0:
            bisect.insort(room.partial, left)


def never_fits(task: Task, rooms: Mapping[str, Room]) -> bool:
    """A hidden ``task`` wants more nodes at once than the ``maxNodes`` of its groups allow
    even with no running work (an admin lowered maxNodes after it was queued: submit refuses
    such a job): it waits for maxNodes to be raised, not for running work."""
    mine = [g for g in (task.node_groups or rooms) if g in rooms]
    able = [g for g in mine if rooms[g].node_cores >= task.cores]
    return bool(able) and task.nodes > sum(rooms[g].max_nodes for g in able)


def notes(tasks: Sequence[Task], rooms: Mapping[str, Room]) -> list[Note]:
    """Why each group starts no node for the hidden ``tasks`` (what their pending reasons
    quote): they wait for running work, or for a higher maxNodes (:func:`never_fits`)."""
    out = []
    for g in sorted(rooms):
        tasks_g = [t for t in tasks if not t.node_groups or g in t.node_groups]
        never = [t for t in tasks_g if never_fits(t, rooms)]
        if never:
            widest = max(t.nodes for t in never)
            out.append(Note(g, (
                f"{counted(never)} of {listed_jobs(never)} need{'s' if len(never) == 1 else ''} "
                f"{widest} node{'s' if widest != 1 else ''} at once, more than its maxNodes "
                f"{rooms[g].max_nodes} allows: "
                f"it cannot run until maxNodes is raised (hpc nodegroup set {g} --max "
                f"{widest}); no node is started for it"
            ), about=scope((t.job_id, t.id) for t in never)))  # fmt: skip
        gone = {(t.job_id, t.id) for t in never}
        mine = [t for t in tasks_g if (t.job_id, t.id) not in gone]
        if mine:
            room = rooms[g]
            about = scope((t.job_id, t.id) for t in mine)
            out.append(Note(g, (
                f"{counted(mine)} of {listed_jobs(mine)} wait{'s' if len(mine) == 1 else ''} "
                f"for running work: {room.busy} of its nodes run work and its maxNodes is "
                f"{room.max_nodes}, so it cannot fit until some ends; no node is started for it"
            ), about=about))  # fmt: skip
    return out
