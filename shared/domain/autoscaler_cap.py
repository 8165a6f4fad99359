"""The autoscaler's rule for nodes up beyond a lowered ``max_nodes`` (an admin cut the cost):
which stop now, which drain, which wait. Pure; used by :mod:`shared.domain.autoscaler`.

The admin's cut outranks the no-thrash rule (a node just started is not stopped soon after):
surplus Starting nodes stop first, as they hold no work and have cost the least so far; then
idle Online nodes, whatever their idle time, the queue or the scale-down delay; busy Online
nodes drain (no new task; stopped once empty) only for what is still over, least busy first.
Before, Starting nodes counted as up but were never stopped, so warm nodes doing work were
drained while the new VMs kept booting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.domain.cluster import Node
from shared.domain.states import NODE_COMING, NodeState


@dataclass(frozen=True)
class Cap:
    """What one run does about a group above its ``max_nodes``."""

    why: str
    """The reason every order gives."""
    stops: list[Node]
    """Stop now (Starting, then idle Online), within the stop rate limit."""
    drains: list[Node]
    """Busy Online nodes to drain; each stops once its tasks end."""
    left: int
    """Nodes still over after this run (idle ones held back by the rate limit, or more)."""


def cap(
    group: str,
    max_nodes: int,
    members: Sequence[Node],
    idle: Sequence[Node],
    busy: set[str],
    used: Mapping[str, int],
    stops_left: int,
) -> Cap | None:
    """The stops and drains for nodes up (Online or Starting) beyond ``max_nodes`` (None:
    not above it). ``idle``: the group's idle Online nodes; ``busy``: nodes already given an
    order this run (left alone); ``stops_left``: the stop rate limit still open. Nodes held
    back by the rate limit stop at a later run; no busy node drains in their place."""
    up = sum(1 for n in members if n.state in NODE_COMING and n.name not in busy)
    surplus = up - max_nodes
    if surplus <= 0:
        return None
    # the newest Starting node first: it is the furthest from joining
    starting = sorted(
        (n for n in members if n.state is NodeState.STARTING and n.name not in busy),
        key=lambda n: (-n.state_time.timestamp(), n.name),
    )
    quiet = [*starting, *(n for n in sorted(idle, key=_name) if n.name not in busy)]
    stops = quiet[: max(0, min(surplus, stops_left))]
    drains = _least_busy(members, idle, busy, used)[: max(0, surplus - len(quiet))]
    why = f"{group} has {up} nodes up, above its maxNodes {max_nodes}"
    return Cap(why, stops, drains, surplus - len(stops) - len(drains))


def _least_busy(
    members: Sequence[Node], idle: Sequence[Node], busy: set[str], used: Mapping[str, int]
) -> list[Node]:
    """Online nodes running tasks, fewest used cores first (they empty soonest): which nodes
    above a lowered ``max_nodes`` drain."""
    skip = busy | {n.name for n in idle}
    running = [n for n in members if n.state is NodeState.ONLINE and n.name not in skip]
    return sorted(running, key=lambda n: (used.get(n.name, 0), n.name))


def _name(node: Node) -> str:
    return node.name
