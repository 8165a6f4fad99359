"""The node rules: registration (who holds a name), heartbeats (level-triggered repair), stop.

Part of :mod:`shared.domain.lifecycle` (its docstring states the guarantees). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.domain.cluster import Node
from shared.domain.lifecycle.tasks import key_of
from shared.domain.messages import (
    CancelTask,
    EndedAttempt,
    Heartbeat,
    NodeStopping,
    RegisterNode,
    TaskEnded,
    parse_attempt_key,
)
from shared.domain.models import Task
from shared.domain.ownership import is_managed, registered_cores
from shared.domain.states import (
    NodeState,
    TaskState,
    can_transition,
)

LIVE_STATES = frozenset({NodeState.ONLINE, NodeState.DRAINING, NodeState.STARTING})
"""Node states that expect heartbeats."""

AGENT_STOPPED = "agent stopped"
"""The state reason of a node whose agent said it stops (NodeStopping): its agent is gone."""


def is_live(node: Node, *, now: datetime, timeout: timedelta) -> bool:
    """The node's agent heartbeats: in a state that expects it, heard within ``timeout``."""
    return (
        node.state in LIVE_STATES
        and node.last_heartbeat is not None
        and now - node.last_heartbeat <= timeout
    )


@dataclass
class RegistrationDecision:
    accepted: bool
    incarnation: int | None = None
    reason: str | None = None
    previous: int | None = None
    """An earlier incarnation now over: its tasks are lost and must be requeued."""
    changed: bool = False
    """The node record changed and must be written."""
    why: str = ""
    """Why the earlier incarnation is over, in the words its requeued tasks are given."""


def register(
    node: Node, req: RegisterNode, *, now: datetime, timeout: timedelta
) -> RegistrationDecision:
    """Decide a registration. ``node`` is the stored record, or ``ownership.first_record``'s
    when the name is new. The agent's groups are never taken here (an admin changes
    them: ``hpc node set``), nor its cores for a managed node (:func:`registered_cores`)."""
    if node.incarnation and req.agent_id == node.agent_id:
        return RegistrationDecision(True, node.incarnation)  # the same request, again
    same_host = node.host_id == req.host_id
    if (
        node.incarnation
        and same_host
        and node.agent_started_at is not None
        and req.started_at < node.agent_started_at
    ):
        return RegistrationDecision(
            False,
            reason=(
                f"node {node.name!r}: this registration is from an agent started "
                f"{req.started_at:%Y-%m-%d %H:%M:%S}, older than the one holding the node "
                f"(started {node.agent_started_at:%Y-%m-%d %H:%M:%S}); it arrived late and is ignored"
            ),
        )
    if node.incarnation and not same_host and is_live(node, now=now, timeout=timeout):
        assert node.last_heartbeat is not None
        ago = (now - node.last_heartbeat).total_seconds()
        return RegistrationDecision(
            False,
            reason=(
                f"node {node.name!r} is held by a live agent on another machine or HPC_HOME "
                f"(incarnation {node.incarnation}, last heartbeat {ago:.1f} s ago): stop that "
                f"agent first (its name is free once it stops, or {timeout.total_seconds():g} s "
                "after it dies), or start this one with another --name"
            ),
        )
    previous = node.incarnation or None
    # the same process again (same machine, same start): it lived on but was not heard, or
    # was told its incarnation was over (fenced, superseded, or brought online again)
    again = same_host and node.agent_started_at == req.started_at
    node.incarnation += 1
    node.agent_id, node.host_id, node.agent_started_at = req.agent_id, req.host_id, req.started_at
    node.agent_protocol = req.protocol  # this agent's, for the assignments it is sent
    node.runs_as_owner = req.run_as_owner
    node.cores = registered_cores(node, req)  # groups and provider: never the agent's word
    if req.memory_mb is not None:  # a fact of the machine, a VM's too; unsaid: kept as it was
        node.memory_mb = req.memory_mb
    node.last_heartbeat = now
    node.missing_since = {}
    reason = "agent registered" if previous is None else "agent restarted"
    if previous is not None and again:
        reason = "agent registered again (its incarnation had ended: not heard, or told so)"
    if previous is not None and node.state is NodeState.STARTING and not is_managed(node):
        reason = "brought online by an admin: its agent registered again"  # lifecycle.online
    elif node.state is NodeState.STARTING and is_managed(node) and not again:
        # a VM booted (by the autoscaler or an admin): its agent is new with it, not a
        # restart (a probe read "agent restarted" on every VM the autoscaler had booted)
        reason = "VM started: its agent registered"
    if node.held is not None:  # an admin's drain or offline outlives the agent
        _stay_held(node, reason, now)
    elif node.state is NodeState.ONLINE:
        node.state_reason, node.state_time = reason, now
    else:
        if not can_transition(node.state, NodeState.ONLINE):
            node.move_to(NodeState.OFFLINE, reason=reason, now=now)
        node.move_to(NodeState.ONLINE, reason=reason, now=now)
    why = f"agent on {node.name} restarted"
    if again:
        why = f"agent on {node.name} registered again after its incarnation ended"
    return RegistrationDecision(True, node.incarnation, previous=previous, changed=True, why=why)


def _stay_held(node: Node, reason: str, now: datetime) -> None:
    """A registration of a node an admin drained or took offline: the agent is the node's
    (its heartbeats count, so an admin can bring it back), but it gets no new work."""
    target = NodeState.OFFLINE if node.held == "offline" else NodeState.DRAINING
    what = "taken offline" if node.held == "offline" else "drained"
    admin = node.held_reason or f"{what} by an admin"
    why = (
        f"{admin} ({reason}; held by an admin, so it stays {target} until an admin brings it "
        f"back: hpc node online {node.name})"
    )
    if target is NodeState.DRAINING and node.state not in (NodeState.ONLINE, NodeState.DRAINING):
        if not can_transition(node.state, NodeState.ONLINE):  # Stopping
            node.move_to(NodeState.OFFLINE, reason=why, now=now)
        node.move_to(NodeState.ONLINE, reason=why, now=now)  # Draining is reached from Online
    if node.state is not target:
        node.move_to(target, reason=why, now=now)
    node.state_reason, node.state_time = why, now


@dataclass
class HeartbeatDecision:
    current: bool
    """False: the heartbeat is from an incarnation that is over (or unknown); nothing changed."""
    reason: str | None = None
    """Why it is not current (said to the agent whose incarnation is over)."""
    over: bool = False
    """Not current because its incarnation is over: tell its agent (Superseded), which kills
    what it runs and registers again."""
    heard: bool = False
    """Not current, but the node's ``last_heartbeat`` changed and must be written: an Offline
    node's agent still runs (``hpc node start`` brings such a node back: lifecycle.online)."""
    came_back: bool = False
    cancels: list[CancelTask] = field(default_factory=list)
    """Attempts the node runs that are no longer its own: kill them."""
    recovered: list[TaskEnded] = field(default_factory=list)
    """Endings the node reports that the control plane has not applied (a lost TaskEnded)."""
    stranded: list[str] = field(default_factory=list)
    """Attempts still current on an Offline node (an offline cut short): give them up as the
    offline does (requeued, held until killed), then kill them."""


def heartbeat(
    node: Node, ev: Heartbeat, active: Sequence[Task], now: datetime
) -> HeartbeatDecision:
    """A heartbeat is a snapshot of the node: compare it with what the control plane believes
    (``active``: the tasks it thinks run there) and repair the difference.

    - attempts the node runs but does not own any more are canceled;
    - attempts it lists as ended lately are ended here too, if still active here;
    - Running attempts it neither runs nor lists as ended are marked missing (since now);
      the reconciler requeues them after the heartbeat timeout.
    """
    if ev.incarnation != node.incarnation:
        return HeartbeatDecision(
            current=False,
            reason=f"node {node.name!r} is held by a newer agent (incarnation {node.incarnation})",
            over=ev.incarnation < node.incarnation,
        )
    if node.state is NodeState.UNREACHABLE:
        # Its tasks were given to new attempts when it went silent: this incarnation is over.
        return HeartbeatDecision(
            current=False,
            reason=(
                f"node {node.name!r} was unreachable ({node.state_reason}); its tasks were "
                "given to new attempts"
            ),
            over=True,
        )
    if node.state is NodeState.STARTING and not is_managed(node):
        # An admin brought it back from Offline, which ended this incarnation: its agent
        # registers again and the node is Online as the next one (lifecycle.online).
        return HeartbeatDecision(
            current=False,
            reason=(
                f"node {node.name!r} was brought online by an admin, which ends incarnation "
                f"{ev.incarnation}: register again"
            ),
            over=True,
        )
    if node.state is NodeState.OFFLINE:
        return _offline_heartbeat(node, ev, active, now)
    node.last_heartbeat = now
    came_back = False
    mine = {key_of(t): t for t in active if t.node == node.name}
    running = set(ev.running)
    cancels = _cancels(ev, running - mine.keys())
    recovered = [
        end
        for ended in ev.ended
        if ended.key in mine
        and ended.key not in running
        and (end := ended_event(node.name, ev.incarnation, ended, ev.seq)) is not None
    ]
    recovered_keys = {e.key for e in ev.ended}
    missing = {}
    for key, task in mine.items():
        if task.state is TaskState.RUNNING and key not in running and key not in recovered_keys:
            missing[key] = node.missing_since.get(key, now)
    node.missing_since = missing
    return HeartbeatDecision(
        current=True,
        came_back=came_back,
        cancels=cancels,
        recovered=recovered,
    )


def _cancels(ev: Heartbeat, keys: Iterable[str]) -> list[CancelTask]:
    """Kill orders for attempts a node's agent lists but does not own (any more)."""
    out = []
    for key in keys:
        parts = parse_attempt_key(key)
        if parts is not None:
            job_id, task_id, attempt = parts
            out.append(
                CancelTask(
                    incarnation=ev.incarnation, job_id=job_id, task_id=task_id, attempt=attempt
                )
            )
    return sorted(out, key=_cancel_key)


def _offline_heartbeat(
    node: Node, ev: Heartbeat, active: Sequence[Task], now: datetime
) -> HeartbeatDecision:
    """A heartbeat of the current incarnation of an Offline node. Nothing is repaired (the
    node's attempts were given to new ones when it went Offline).

    - its agent said it stops (:data:`AGENT_STOPPED`): the heartbeat was sent before its stop
      (a batch applies heartbeats last); the agent is gone, so it is not heard;
    - held by an admin (``hpc node offline``), or a VM: the agent is heard, which
      ``hpc node start`` needs to bring the node back (lifecycle.online), and told again to
      kill each attempt it still lists that was given up (a cancel lost on the way must not
      let one run to its end beside its new attempt, which waits for its end). An attempt
      still current here (the offline was cut short by a crash before it gave them up, or a
      dispatch raced it) is not canceled: its caller gives it up first
      (:attr:`HeartbeatDecision.stranded`), as the offline would have (chaos probe: a
      cancel of a current attempt ended the task Canceled);
    - an on-prem node not held (its agent did not register again in time after an admin
      brought it online, and runs on): its agent is heard and told its incarnation is over
      (Superseded), so it kills what it runs and registers again, which makes the node Online
      as the next incarnation (:func:`register`). Only that registration grants one.
    """
    if node.state_reason == AGENT_STOPPED:
        return HeartbeatDecision(current=False)
    node.last_heartbeat = now
    if node.held is not None or is_managed(node):
        mine = {key_of(t) for t in active if t.node == node.name}
        return HeartbeatDecision(
            current=False,
            heard=True,
            cancels=_cancels(ev, set(ev.running) - mine),
            stranded=sorted(mine),
        )
    return HeartbeatDecision(
        current=False,
        heard=True,
        over=True,
        reason=(
            f"node {node.name!r} is Offline ({node.state_reason}) while its agent runs: "
            f"incarnation {ev.incarnation} is over; register again"
        ),
    )


def _cancel_key(c: CancelTask) -> tuple[int, int, int]:
    return (c.job_id, c.task_id, c.attempt)


def ended_event(node: str, incarnation: int, ended: EndedAttempt, seq: int = 0) -> TaskEnded | None:
    """An end an agent repeated (a heartbeat's recent ends, a registration's end records) as
    the TaskEnded of that incarnation; None if its key is not an attempt's."""
    parts = parse_attempt_key(ended.key)
    if parts is None:
        return None
    job_id, task_id, attempt = parts
    return TaskEnded(
        node=node,
        incarnation=incarnation,
        seq=seq,
        job_id=job_id,
        task_id=task_id,
        attempt=attempt,
        exit_code=ended.exit_code,
        canceled=ended.canceled,
        error=ended.error,
        over_limit=ended.over_limit,
        output="",
    )


def stopping(node: Node, ev: NodeStopping, now: datetime) -> bool:
    """The agent stops cleanly: the node goes Offline; the caller requeues the attempts still
    active there (without using a retry). False if the event is stale or already applied.

    A node already Offline (an admin took it offline, or its agent did not register again
    in time) keeps its state and any hold (``Node.held``), but its reason becomes
    :data:`AGENT_STOPPED`: bringing it online is then refused saying to start the agent
    (lifecycle.online), and it may be removed (:func:`removal_refusal`).

    A VM the control plane is stopping, or has stopped, keeps the stop's reason (who stopped
    it and why: "stopped by alice: maint", or the autoscaler's): its agent going down with
    the VM is no news (a probe saw an admin's ``--reason`` replaced by "agent stopped")."""
    if ev.incarnation != node.incarnation or agent_stopped(node):
        return False
    if is_managed(node) and node.state in (NodeState.STOPPING, NodeState.OFFLINE):
        if node.state is NodeState.OFFLINE:
            return False  # stopped already: its tasks were given up then; nothing changes
        node.move_to(NodeState.OFFLINE, reason=node.state_reason or AGENT_STOPPED, now=now)
        node.missing_since = {}
        return True
    if node.state is NodeState.OFFLINE:
        node.state_reason, node.state_time = AGENT_STOPPED, now
    else:
        node.move_to(NodeState.OFFLINE, reason=AGENT_STOPPED, now=now)
    node.missing_since = {}
    return True


def agent_stopped(node: Node) -> bool:
    """The node is Offline because its agent said it stops, and no agent registered since."""
    return node.state is NodeState.OFFLINE and node.state_reason == AGENT_STOPPED


def removal_refusal(node: Node, *, now: datetime, timeout: timedelta) -> str | None:
    """Why an admin cannot remove this node now; None if they can.

    Only an Offline node is removed. An on-prem node's agent lives on after an admin takes
    the node offline: removing the node while that agent runs would orphan it (it runs on
    for a node that is gone, and its next registration makes a new node, without the groups
    an admin gave it). So while the agent has been heard within ``timeout`` (the heartbeat
    timeout) and has not said it stops, the removal waits for the agent's stop."""
    if node.state is NodeState.STOPPING or (
        node.state is NodeState.DRAINING and is_managed(node) and node.held is None
    ):  # stopping already (a probe was told to stop a VM it had stopped)
        how = (
            "its VM is being stopped"
            if node.state is NodeState.STOPPING
            else (
                f"it stops once its tasks end, or now: hpc node offline {node.name}, which "
                "requeues them"
            )
        )
        return f"node {node.name} is {node.state}; remove it once it is Offline ({how})"
    if node.state is not NodeState.OFFLINE:
        return f"node {node.name} is {node.state}; take it offline or stop it first"
    if is_managed(node) or node.incarnation == 0 or agent_stopped(node):
        return None
    heard = node.last_heartbeat
    if heard is None or now - heard > timeout:
        return None
    return (
        f"node {node.name}'s agent still runs (last heard {(now - heard).total_seconds():.0f} s "
        "ago): stop it there first (it sends its stop), then remove the node"
    )
