"""The reconciler's decisions: which nodes went silent, which attempts got lost. Pure.

Level-triggered: every run compares what the control plane believes with what
the nodes last said, and repairs the difference, so a lost message or a crash
between two writes heals on the next run. A timer runs it;
:mod:`shared.usecases.reconcile` applies what it returns.

Silence is only judged over time the control plane was listening. After it was
away (down, or its timer stopped) for longer than the heartbeat timeout, the
agents' heartbeats of that time wait in the events queue, unread: the clock of
every silence starts again at ``listening_since``, so a control-plane restart
never declares live nodes dead and never runs their tasks a second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from shared.domain.cluster import Node
from shared.domain.lifecycle import key_of
from shared.domain.models import Task
from shared.domain.ownership import is_managed
from shared.domain.states import NodeState, TaskState

WATCHED = frozenset({NodeState.ONLINE, NodeState.DRAINING})
"""Node states whose silence makes them Unreachable. A Starting node is not judged by
heartbeats: a VM may take minutes to boot, and the autoscaler's deployment timeout covers it
(an on-prem node an admin brought online: :func:`unanswered_starts`)."""


def listening_since(
    previous: datetime | None, last_run: datetime | None, *, now: datetime, timeout: timedelta
) -> datetime:
    """Since when the control plane has been listening without a gap longer than ``timeout``
    between two reconciler runs (the reconciler must run more often than that)."""
    if previous is None or last_run is None or now - last_run > timeout:
        return now
    return previous


def silent_nodes(
    nodes: Iterable[Node], *, now: datetime, timeout: timedelta, since: datetime
) -> list[Node]:
    """Nodes expecting heartbeats that have been silent longer than ``timeout``, counting
    from their last heartbeat, their last state change or ``since``, whichever is latest."""
    out = []
    for node in nodes:
        if node.state not in WATCHED:
            continue
        last = max(filter(None, (node.last_heartbeat, node.state_time, since)))
        if now - last > timeout:
            out.append(node)
    return out


def unanswered_starts(
    nodes: Iterable[Node], *, now: datetime, timeout: timedelta, since: datetime
) -> list[Node]:
    """On-prem nodes an admin brought online (Starting: waiting for their running agent to
    register again, shared.domain.lifecycle.online) that no registration answered within
    ``timeout``, counting from that act or ``since``: their agent is gone; they go Offline
    again. (No autoscaler watches an on-prem node, and no VM boots: the agent was running.)"""
    return [
        node
        for node in nodes
        if node.state is NodeState.STARTING
        and not is_managed(node)
        and now - max(node.state_time, since) > timeout
    ]


def stuck_dispatches(
    tasks: Iterable[Task], *, now: datetime, timeout: timedelta, since: datetime
) -> list[Task]:
    """Tasks Dispatching for longer than ``timeout`` (their agent never confirmed them)."""
    return [
        t
        for t in tasks
        if t.state is TaskState.DISPATCHING
        and t.dispatch_time is not None
        and now - max(t.dispatch_time, since) > timeout
    ]


def lost_endings(
    nodes: Iterable[Node],
    tasks: Iterable[Task],
    *,
    now: datetime,
    timeout: timedelta,
    since: datetime,
) -> list[Task]:
    """Running attempts that their (heartbeating) node has stopped listing, neither running
    nor lately ended, for longer than ``timeout``: their end was lost; requeue them."""
    missing = {
        (node.name, key): at
        for node in nodes
        if node.state in (NodeState.ONLINE, NodeState.DRAINING)
        for key, at in node.missing_since.items()
    }
    out = []
    for task in tasks:
        if task.state is not TaskState.RUNNING or task.node is None:
            continue
        at = missing.get((task.node, key_of(task)))
        if at is not None and now - max(at, since) > timeout:
            out.append(task)
    return out
