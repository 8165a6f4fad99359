"""The reconciler's decisions: which nodes went silent, which dispatches got lost. Pure.

A timer runs it; :class:`shared.control.ControlPlane` applies what it returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from shared.models import Node, Task
from shared.states import NodeState, TaskState

WATCHED = frozenset({NodeState.ONLINE, NodeState.DRAINING, NodeState.STARTING})
"""Node states that expect heartbeats."""


def silent_nodes(nodes: Iterable[Node], *, now: datetime, timeout: timedelta) -> list[Node]:
    """Nodes expecting heartbeats whose last one (or state change) is older than ``timeout``."""
    out = []
    for node in nodes:
        if node.state not in WATCHED:
            continue
        last = max(filter(None, (node.last_heartbeat, node.state_time)))
        if now - last > timeout:
            out.append(node)
    return out


def stuck_dispatches(tasks: Iterable[Task], *, now: datetime, timeout: timedelta) -> list[Task]:
    """Tasks Dispatching for longer than ``timeout`` (their agent never confirmed them)."""
    return [
        t
        for t in tasks
        if t.state is TaskState.DISPATCHING
        and t.dispatch_time is not None
        and now - t.dispatch_time > timeout
    ]
