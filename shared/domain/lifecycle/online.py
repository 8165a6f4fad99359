"""Bringing an on-prem node back Online while its agent runs: HPC Pack's "Bring Online",
``hpc node start | online`` on an unmanaged node. Pure.

Part of :mod:`shared.domain.lifecycle` (its docstring states the guarantees). A managed node
(a VM) is started through its provider instead (shared.usecases.nodes.start_node).

An on-prem machine has no VM to start: its agent runs or it does not, and only the agent's
heartbeats say which (they are recorded while the node is Offline too: :func:`.nodes.heartbeat`).
So the admin's act never makes a node Online on the control plane's word alone:

- **Draining**, its agent heard within the heartbeat timeout: Online at once, as the same
  incarnation. A Draining node's heartbeats are current all along and the attempts it runs
  are its own, so nothing is fenced and nothing is killed.
- **Offline** (an admin took it offline), its agent heard within the timeout: Starting, which
  ends the node's incarnation. Taking it offline gave every attempt the node held to a new
  attempt but left the agent running as its incarnation: it may still run those given-up
  attempts, and RunTasks of theirs may still wait in its session. While the node is Starting
  a heartbeat of that incarnation is answered Superseded (:func:`.nodes.heartbeat`), so the
  agent kills what it runs (reporting any that had run to their end, whose result is still
  kept: :func:`.tasks.task_ended`) and registers again; that registration makes the node
  Online as the next incarnation, as an agent restart would, without restarting the process.
  From then on anything of the old incarnation is stale (the agent refuses its assignments,
  the control plane drops its events), so no given-up attempt runs on beside its new one, and
  no incarnation is granted but by a registration. If no registration comes within the
  heartbeat timeout (the agent died after its last heartbeat), the reconciler takes the node
  Offline again, saying so (:func:`shared.domain.reconciler.unanswered_starts`); if its agent
  was only paused or cut off, its next heartbeat on that Offline node (not held) is answered
  Superseded as well, so it registers again and the node is Online as the next incarnation.
  An admin who takes it offline meanwhile keeps it Offline (held: its agent's heartbeats are
  only recorded, it is not told to register again).
- **Refused** (409, nothing changes): the node is Online already or Starting (nothing to
  do; ``--group`` goes on to the next node); its agent never registered, stopped, or has not
  been heard from within the timeout (start it there: it registers and the node comes back
  Online); Unreachable (its incarnation is over: it comes back by itself once its agent is
  heard again, whose heartbeat is answered Superseded, or when the agent is started again).
  A node an admin drained or took offline (``Node.held``) comes back Draining or Offline
  (a registration keeps the hold), and the refusal says so: then an admin brings it online.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.cluster import Node
from shared.domain.lifecycle.nodes import agent_stopped
from shared.domain.ownership import is_managed
from shared.domain.states import NodeState

BROUGHT_ONLINE = "brought online by an admin"
WAITING = f"{BROUGHT_ONLINE}: waiting for its agent to register again"


@dataclass
class OnlineDecision:
    done: bool
    reason: str | None = None
    """Why not (said to the admin as a 409)."""
    ended: int | None = None
    """The incarnation the act ends (an Offline node's): its agent registers again."""


def bring_online(node: Node, *, now: datetime, timeout: timedelta) -> OnlineDecision:
    """Decide an admin's "bring online" of an on-prem node and apply it to ``node`` (a fresh
    read; unchanged when refused). ``timeout``: the heartbeat timeout."""
    refusal = online_refusal(node, now=now, timeout=timeout)
    if refusal is not None:
        return OnlineDecision(False, refusal)
    if node.state is NodeState.DRAINING:
        node.move_to(NodeState.ONLINE, reason=BROUGHT_ONLINE, now=now)
        return OnlineDecision(True)
    node.missing_since = {}
    node.move_to(NodeState.STARTING, reason=WAITING, now=now)  # its agent is told at its next beat
    return OnlineDecision(True, ended=node.incarnation)


def comes_back(node: Node) -> tuple[NodeState, str]:
    """The state the node comes back in once its agent registers, and what then: Online, or
    as an admin held it (``Node.held``: a registration keeps an admin's drain or offline,
    lifecycle.nodes), after which an admin brings it online."""
    if node.held is None:
        return NodeState.ONLINE, ""
    if node.held == "offline":
        target, what = NodeState.OFFLINE, "took it offline"
    else:
        target, what = NodeState.DRAINING, "drained it"
    return target, f", as an admin {what} (held); then hpc node online {node.name} brings it back"


def online_refusal(node: Node, *, now: datetime, timeout: timedelta) -> str | None:
    """Why an admin cannot bring this on-prem node online now; None if they can."""
    if is_managed(node):
        raise ValueError(f"node {node.name} is a {node.provider} VM: start it by its provider")
    name, state = node.name, node.state
    target, then = comes_back(node)
    run = f"start its agent there (hpc agent run --name {name})"
    start = f"{run}; it registers and the node comes back {target}{then}"
    if node.incarnation == 0:
        return f"node {name} never registered: {start}"
    if state is NodeState.ONLINE:
        return f"node {name} is Online already: nothing to do"
    if state is NodeState.STARTING:
        return f"node {name} is Starting ({node.state_reason}): nothing to do"
    if state is NodeState.UNREACHABLE:
        return (
            f"node {name} is Unreachable ({node.state_reason}): it comes back {target} by "
            f"itself once its agent is heard again{then}; if the agent stopped, {run}"
        )
    if state not in (NodeState.DRAINING, NodeState.OFFLINE):
        return f"node {name} is {state}; only a Draining or Offline node can be brought online"
    if agent_stopped(node):
        return f"node {name} is Offline because its agent stopped: {start}"
    heard = node.last_heartbeat
    if heard is None or now - heard > timeout:
        last = "" if heard is None else f"; last heard {(now - heard).total_seconds():.0f} s ago"
        return (
            f"node {name} is {state} and its agent has not been heard from within the "
            f"heartbeat timeout ({timeout.total_seconds():g} s{last}): {start}"
        )
    return None
