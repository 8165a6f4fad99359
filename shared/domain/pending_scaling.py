"""Why a queued task that waits for a managed group's nodes may wait longer than a boot: what
the autoscaler remembers and last said of the group, its maxNodes, its autoscale switch, or
the memory of its nodes. Pure; the part of the pending reasons (:mod:`shared.domain.pending`)
that reads the autoscaler, apart so that each module stays short.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.domain.autoscaler_notes import bigger_vms, nodes_up
from shared.domain.cluster import Node, NodeGroup
from shared.domain.growcheck import is_covered, lost_its_node, next_check_in
from shared.domain.growshrink import GroupMemory
from shared.domain.memory import may_fit, shown
from shared.domain.models import Task
from shared.domain.notescope import covers
from shared.domain.states import NodeState


@dataclass(frozen=True)
class Said:
    """One of the autoscaler's last notes of a group, and the waiting tasks it is about
    (:mod:`shared.domain.notescope`; None: every task that waits for the group)."""

    text: str
    about: str | None = None

    @classmethod
    def of(cls, stored: Any) -> Said:
        """From the memory document: a note's text, or ``{"text", "about"}``."""
        if isinstance(stored, dict):
            return cls(str(stored.get("text", "")), stored.get("about"))
        return cls(str(stored))


@dataclass(frozen=True)
class GroupScaling:
    """What the autoscaler remembers and last said of one managed group: why a task that
    waits for its nodes may wait longer than a boot."""

    name: str
    managed: bool
    """An autoscaler runs here for the group's provider."""
    autoscale: bool = True
    """False: the admin turned autoscaling off (hpc nodegroup set G --no-autoscale)."""
    grow_interval_s: float = 60.0
    memory: GroupMemory | None = None
    """The autoscaler's memory of the group (None: it has not run for it yet)."""
    notes: Sequence[str | Said] = ()
    """Why its last run did not grow the group (GrowThreshold, max_nodes...); a plain
    text concerns every task that waits for it."""
    said_at: datetime | None = None
    node_memory_mb: int | None = None
    """The memory of one of its nodes as the autoscaler counts it
    (:func:`shared.domain.growshrink.group_memory_mb`; None: not known yet)."""
    max_nodes: int | None = None
    """Its maxNodes (None: not known): with that many nodes up, the autoscaler starts none."""


def capped(groups: Iterable[NodeGroup]) -> set[str]:
    """The managed groups whose maxNodes is 0: the autoscaler starts none of their nodes."""
    return {g.name for g in groups if g.provider and not g.max_nodes}


def capped_only(groups: Sequence[str], capped: Collection[str]) -> bool:
    """Every group named is a managed group of maxNodes 0 (none named: any node may do)."""
    return bool(groups) and all(g in capped for g in groups)


def where(groups: Sequence[str]) -> str:
    return ", ".join(groups) if groups else "the cluster"


def max_zero(groups: Sequence[str]) -> str:
    """What a maxNodes of 0 means for a job of ``groups``, and how to raise it."""
    first, its = (groups[0] if groups else "NAME"), ("their" if len(groups) > 1 else "its")
    return (
        f"the maxNodes of {where(groups)} is 0, so the autoscaler starts none of {its} nodes: "
        f"raise it (hpc nodegroup set {first} --max N)"
    )


def at_max(name: str, max_nodes: int, up: int) -> str:
    """A group with ``up`` nodes up (not Offline), at or over its ``max_nodes``: the
    autoscaler starts none of its nodes until one is Offline or the bound is raised."""
    if max_nodes <= 0:
        return max_zero([name])
    at = "at" if up == max_nodes else "over"
    return (
        f"{name} is {at} its maxNodes {max_nodes} ({nodes_up(up)}): the autoscaler starts no "
        f"more of its nodes; raise it (hpc nodegroup set {name} --max N) or wait for its nodes"
    )


def group_reason(
    task: Task, group: GroupScaling, now: datetime, nodes: Sequence[Node]
) -> str | None:
    """Why ``group``'s autoscaler starts no node for ``task``: its nodes are known to have
    less memory than the task asks, or :func:`scaling_reason` (``nodes``: the cluster's,
    which give the group's nodes up and their last change)."""
    have = group.node_memory_mb
    if have is not None and not may_fit(task.min_memory_mb, have):
        return (
            f"{group.name}'s nodes have {shown(have)}: the autoscaler starts none for it "
            f"({bigger_vms(group.name)})"
        )
    mine = [n for n in nodes if group.name in n.groups]
    changed = max((n.state_time for n in mine), default=None)
    up = sum(1 for n in mine if n.state is not NodeState.OFFLINE)
    key = (task.job_id, task.id)
    coming = any(n.state is NodeState.STARTING for n in mine)
    return scaling_reason(
        group, now, task.node_groups, changed_at=changed, up=up, task=key,
        lost=lost_its_node(task), covered=coming and is_covered(group.memory, key),
        offline=sum(1 for n in mine if n.state is NodeState.OFFLINE and n.held is None),
    )  # fmt: skip


def scaling_reason(
    group: GroupScaling,
    now: datetime,
    named: Sequence[str] = (),
    *,
    changed_at: datetime | None = None,
    up: int | None = None,
    task: tuple[int, int] | None = None,
    lost: bool = False,
    covered: bool = False,
    offline: int | None = None,
) -> str | None:
    """Why the autoscaler starts none of ``group``'s nodes for a task that waits for them,
    or None if nothing holds it back (its next run may start one). ``named``: the task's
    own groups (none: it may run anywhere, so a group it did not ask for is not blamed for
    being off). ``changed_at``: the last state change of a node of the group; the
    autoscaler's notes said before it are not quoted (a probe read "2 Offline" while both
    nodes were Online and busy). ``up``: the group's nodes up now (not Offline); at its
    maxNodes, that is said first whatever the notes' age (a reason read "considers growing
    G every 60 s" at the max once a node change made the autoscaler's own note stale).
    ``task``: ``(job_id, id)`` of the task asking; a note about other tasks is not quoted
    (none: every note is). ``lost``: the task lost its node (:func:`lost_its_node`): no
    GrowInterval holds it, so no next grow check is named. ``covered``: the autoscaler's last
    run found nodes for it among those starting (:func:`is_covered`): it waits for them, not
    for a grow check (a probe's task read "next in 45 s" beside its VMs starting).
    ``offline``: the group's Offline nodes not held by an admin (None: not known): with
    some, when nothing else holds it, the reason says the autoscaler starts them for the task
    and when (a probe's task read only "no Online node in AzureNodes (3 Offline)", and they
    started 20 s later); with none it promises nothing (an admin's hold is said beside)."""
    name = group.name
    notes = [n if isinstance(n, str) else n.text for n in group.notes if _about(n, task)]
    if not group.managed or not group.autoscale:
        if not named:
            return None
        start = f"hpc node start --group {name}"
        if not group.managed:
            return f"no autoscaler here starts {name}'s nodes: start them ({start})"
        return (
            f"autoscaling is off for {name}: turn it on (hpc nodegroup set {name} --autoscale) "
            f"or start its nodes ({start})"
        )
    stale = changed_at is not None and group.said_at is not None and changed_at > group.said_at
    said = _quoted(group, notes, now)
    if group.max_nodes is not None and up is not None and up >= group.max_nodes:
        full = at_max(name, group.max_nodes, up)
        return f"{full}; {said}" if notes and not stale else full
    memory = group.memory
    if memory is not None and memory.backoff_until is not None and now < memory.backoff_until:
        wait = (memory.backoff_until - now).total_seconds()
        return f"{name} starts no node for {wait:.0f} s more (backing off after: {memory.last_failure})"
    if notes and not stale:
        return said
    due = next_check_in(memory, group.grow_interval_s, now)
    if covered or offline == 0:  # it waits for the VMs starting; or none to start (held?)
        return None
    if due >= 1 and not lost:  # a task that lost its node is not held by GrowInterval
        if offline is None:
            return (
                f"the autoscaler considers growing {name} every {group.grow_interval_s:g} s "
                f"(GrowInterval): next in {due:.0f} s"
            )
        return (
            f"the autoscaler starts nodes of {name} for it at its next grow check, in "
            f"{due:.0f} s (GrowInterval {group.grow_interval_s:g} s)"
        )
    if offline is None:
        return None
    if due >= 1:
        return (
            f"its node was lost: the autoscaler starts another of {name} for it at its next "
            "run (GrowInterval holds no replacement)"
        )
    return f"the autoscaler starts nodes of {name} for it at its next run (a grow check is due)"


def told_of(task: Task, group: GroupScaling, now: datetime) -> str | None:
    """The autoscaler's last notes about ``task`` alone (its ceiling, its deferral), for a
    task whose group's nodes are starting: they say why those nodes are not all its (a task
    beyond the ceiling read only "waiting for azure-1, azure-2, azure-3 to start")."""
    key = (task.job_id, task.id)
    notes = [n.text for n in group.notes if isinstance(n, Said) and n.about and _about(n, key)]
    return _quoted(group, notes, now) if notes else None


def _quoted(group: GroupScaling, notes: Sequence[str], now: datetime) -> str:
    """``the autoscaler 4 s ago: G: note; G: note``."""
    age = "" if group.said_at is None else f" {(now - group.said_at).total_seconds():.0f} s ago"
    return f"the autoscaler{age}: " + "; ".join(f"{group.name}: {n}" for n in notes)


def _about(note: str | Said, task: tuple[int, int] | None) -> bool:
    """Whether ``note`` concerns ``task`` (none named: every note does)."""
    if isinstance(note, str) or task is None:
        return True
    return covers(note.about, *task)
