"""Registration: an agent process asks to hold a node; the answer goes to its replies session.

Accepting writes the node's new incarnation first (from then on, anything of the earlier
incarnation is stale), then requeues what the earlier incarnation held, then answers. A
crash between the steps heals: the agent asks again (the same request is answered the
same way), and the reconciler requeues tasks of ended incarnations on every run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta

from shared.domain import lifecycle, ownership
from shared.domain.cluster import Node, NodeGroup
from shared.domain.groupnames import canonical_group, canonical_groups, new_groups_note
from shared.domain.messages import EVENTS_LOCK_MS, RegisterNode, Registration, TaskEnded
from shared.domain.protocol import tells_grace, tells_timeout
from shared.errors import Conflict, NotFound
from shared.usecases.deps import Deps
from shared.usecases.losses import lose_attempts

log = logging.getLogger(__name__)


def register(
    deps: Deps,
    req: RegisterNode,
    *,
    apply_ends: Callable[[list[TaskEnded]], None] | None = None,
) -> bool:
    """Decide and answer a registration. ``apply_ends`` applies the ends the agent carries
    (the events use case passes its own; registration does not import it)."""
    try:
        node = deps.store.get_node(req.node)
    except NotFound:
        taken = (n.name for n in deps.store.list_nodes())  # (a first registration only)
        first = ownership.first_record(req, deps.store.list_groups(), taken)
        if isinstance(first, str):
            log.warning("registration refused: %s", first)
            _answer(deps, req, lifecycle.RegistrationDecision(False, reason=first), None)
            return False
        node = first
    else:
        _note_ignored_proposal(node, req)
    timeout = timedelta(seconds=deps.settings.heartbeat_timeout_s)
    decision = lifecycle.register(node, req, now=deps.clock(), timeout=timeout)
    if decision.changed:
        deps.store.put_node(node)  # Conflict: retried from a fresh read
        log.info("node %s: incarnation %d registered", node.name, node.incarnation)
    if decision.accepted:
        assert decision.incarnation is not None
        if decision.previous is not None and req.ended and apply_ends is not None:
            ends = recorded_ends(req, decision.previous)
            if ends:
                log.info(
                    "node %s: applying %d end(s) its previous agent recorded", req.node, len(ends)
                )
                apply_ends(ends)
        requeue_ended_incarnations(deps, node.name, decision.incarnation, why=decision.why)
        note = _ensure_groups(deps, node.name, node.groups)
    else:
        log.warning("registration refused: %s", decision.reason)
        note = None
    _answer(deps, req, decision, note)
    return decision.changed


def _answer(
    deps: Deps, req: RegisterNode, decision: lifecycle.RegistrationDecision, note: str | None
) -> None:
    told = decision.accepted and tells_timeout(req.protocol)
    deps.reply(
        req.agent_id,
        Registration(
            node=req.node,
            agent_id=req.agent_id,
            accepted=decision.accepted,
            incarnation=decision.incarnation,
            reason=decision.reason,
            heartbeat_timeout_s=deps.settings.heartbeat_timeout_s if told else None,
            note=note if told else None,
            task_grace_s=(
                deps.settings.task_grace_s
                if decision.accepted and tells_grace(req.protocol)
                else None
            ),
        ),
    )


def _note_ignored_proposal(node: Node, req: RegisterNode) -> None:
    """Say in the log when an agent names other groups than the node's: the control plane
    keeps its own (an admin changes them with ``hpc node set``)."""
    proposed = canonical_groups(req.groups, node.groups)
    if sorted(proposed) != sorted(node.groups):
        log.info(
            "node %s: its agent names groups %s; the node keeps %s (hpc node set %s --group G)",
            node.name,
            ",".join(req.groups),
            ",".join(node.groups),
            node.name,
        )


def recorded_ends(req: RegisterNode, previous: int) -> list[TaskEnded]:
    """The ends the previous incarnation's tasks ran to (end records on the node's disk), as
    that incarnation's events: applied before its unfinished work is requeued."""
    ends = [lifecycle.ended_event(req.node, previous, ended) for ended in req.ended]
    return [end for end in ends if end is not None]


def requeue_ended_incarnations(deps: Deps, node_name: str, current: int, *, why: str) -> bool:
    """Requeue the attempts an earlier incarnation of the node held: that agent is gone (or
    its incarnation is over: ``why``). Their next attempts wait one events-queue lock
    (EVENTS_LOCK_MS) or until their end comes: an end the old agent sent may sit locked by
    a control plane that died with it, and comes back only then (a probe: kill -9 of the
    whole ``hpc up`` tree; attempt 1 ran to its end 4 s after the new registration, before
    attempt 0's end came back, and the task ran twice)."""
    held = [
        t
        for t in deps.store.active_tasks(node=node_name)
        if t.incarnation is not None and t.incarnation != current
    ]
    until = deps.clock() + timedelta(milliseconds=EVENTS_LOCK_MS)
    return lose_attempts(deps, held, lambda _t: why, count=True, may_run_until=until)


def _ensure_groups(deps: Deps, node_name: str, names: Iterable[str]) -> str | None:
    """Create the groups an on-prem agent proposed that do not exist yet (in any case); what
    the agent should say about them (a misspelt ``--group`` would otherwise make a group of
    one node silently), or None."""
    known = [g.name for g in deps.store.list_groups()]
    created = []
    for name in names:
        if canonical_group(name, known) is None:
            with contextlib.suppress(Conflict):
                deps.store.put_group(NodeGroup(name=name))
            created.append(name)
    if not created:
        return None
    note = new_groups_note(node_name, created, known)
    log.warning("node %s: %s", node_name, note)
    return note
