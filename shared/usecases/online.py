"""Bring on-prem nodes back Online while their agents run (``hpc node start | online`` on an
unmanaged node), and the reconciler's backstop for a node whose agent never answered.

The rule, and why it is safe under the exactly-once rules, is
:func:`shared.domain.lifecycle.bring_online`: a Draining node whose agent heartbeats is
Online at once; an Offline one is Starting, which ends its incarnation, until its running
agent, told so at its next heartbeat, registers again. This module loads, decides and saves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from shared.domain import lifecycle, reconciler
from shared.domain.cluster import Node
from shared.domain.states import NodeState
from shared.errors import NotFound, Refused
from shared.usecases.deps import Deps

log = logging.getLogger(__name__)


def heartbeat_timeout(deps: Deps) -> timedelta:
    return timedelta(seconds=deps.settings.heartbeat_timeout_s)


def check(deps: Deps, node: Node) -> None:
    """Raise Conflict (409, saying why) if the on-prem ``node`` cannot be brought online now."""
    refusal = lifecycle.online_refusal(node, now=deps.clock(), timeout=heartbeat_timeout(deps))
    if refusal is not None:
        raise Refused(refusal, state=node.state.value)


def bring_online(deps: Deps, name: str) -> Node:
    """Bring the on-prem node ``name`` back: Online (it was Draining) or Starting until its
    agent registers again (it was Offline). Conflict (409) if the rule refuses."""

    def write() -> Node:
        node = deps.store.get_node(name)  # fresh: a heartbeat may have written it since
        decision = lifecycle.bring_online(node, now=deps.clock(), timeout=heartbeat_timeout(deps))
        if not decision.done:
            raise Refused(
                decision.reason or f"node {name} cannot be brought online", state=node.state.value
            )
        node.held = node.held_reason = None  # the admin's drain or offline ends here
        deps.store.put_node(node)  # Conflict: retried from a fresh read
        if decision.ended is not None:
            log.info(
                "node %s brought online by an admin: incarnation %d ends; its agent is told at "
                "its next heartbeat and registers again",
                name,
                decision.ended,
            )
        return node

    result = deps.retry(write)
    if result.state is NodeState.ONLINE:
        deps.kick()  # queued work may go there now
    return result


def expire_unanswered(deps: Deps, nodes: Iterable[Node], *, now: datetime, since: datetime) -> None:
    """Take Offline again the on-prem nodes brought online whose agent did not register
    within the heartbeat timeout (the reconciler runs this on the nodes it read)."""
    timeout = heartbeat_timeout(deps)
    for node in reconciler.unanswered_starts(nodes, now=now, timeout=timeout, since=since):
        deps.retry(_back_offline, deps, node.name, now, since, timeout)


def _back_offline(
    deps: Deps, name: str, now: datetime, since: datetime, timeout: timedelta
) -> bool:
    try:
        node = deps.store.get_node(name)
    except NotFound:
        return False
    if not reconciler.unanswered_starts([node], now=now, timeout=timeout, since=since):
        return False  # its agent registered meanwhile
    node.move_to(
        NodeState.OFFLINE,
        reason=(
            f"its agent did not register again within {timeout.total_seconds():g} s of being "
            f"brought online: if it runs, its next heartbeat tells it to register again and "
            f"the node comes back Online; else start it there (hpc agent run --name {name})"
        ),
        now=now,
    )
    deps.store.put_node(node)
    log.warning("node %s: brought online, but its agent did not register again; Offline", name)
    return True
