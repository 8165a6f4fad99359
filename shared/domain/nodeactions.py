"""Which admin node actions find their result already there. Pure.

The rule, as HPC Pack's "Bring Online" of an Online node is a no-op: an action whose result
already holds changes nothing and is a 200 that says so ("node n1 is already Online"); an
action the node's state makes impossible (start a Stopping VM, drain an Offline node) is a
409 that says what to do, from the use case that refuses it. Before this rule a repeated
drain, stop or offline answered 200 and a repeated start 409.

An action's result "holds" when the node is in the state the action leads to, held as the
action holds it:

| action  | already when the node is                                              |
|---------|-----------------------------------------------------------------------|
| start   | Online, or Starting (on its way Online: a booting VM, an agent asked to register), or a Stopping VM whose start is asked already |
| stop    | a VM: Offline or Stopping (no start asked); an on-prem node (never powered off): Draining, held |
| drain   | Draining, held (an admin's drain; an unheld one becomes held: a change) |
| offline | Offline, held (an unheld Offline node becomes held: a change)          |
| remove  | never (a removed node is a 404)                                       |
| release | a VM Offline and not held (the autoscaler may start it already)       |

A drain or offline of a node already held so, given another reason than its hold's, is done
again: the new reason replaces the old (:func:`new_reason`; Slurm's ``reason=``). One given
with no why (``drained by alice``, no ``--reason``) keeps the why of the node's hold
(:func:`with_held_why`): a probe's second ``hpc node drain`` erased "bad DIMM, ticket 77",
and a later ``hpc node offline`` did too; Slurm keeps a node's reason until a new one is given.
"""

from __future__ import annotations

from shared.domain.cluster import Node
from shared.domain.ownership import is_managed
from shared.domain.states import NodeState

_THEN = {
    NodeState.STARTING: ": it is Online once its agent registers",
    NodeState.STOPPING: ": it is Offline once its VM is deallocated",
}
_THEN_START = ": it starts once its VM is deallocated"


def already(action: str, node: Node, reason: str | None = None) -> str | None:
    """What to say when ``action``'s result already holds on ``node`` (nothing to do);
    None when the action is to be done (also a hold given another ``reason``:
    :func:`new_reason`), or refused by its use case."""
    if new_reason(action, node, reason):
        return None
    state = node.state
    asked = node.start_requested is not None and state is NodeState.STOPPING
    if action == "start":
        done = state in (NodeState.ONLINE, NodeState.STARTING) or asked
    elif action == "stop" and is_managed(node):
        done = state in (NodeState.OFFLINE, NodeState.STOPPING) and not asked
    elif action in ("stop", "drain"):
        done = state is NodeState.DRAINING and node.held == "drain"
    elif action == "offline":
        done = state is NodeState.OFFLINE and node.held == "offline"
    elif action == "release":  # a VM Offline and not held: the autoscaler may start it
        done = state is NodeState.OFFLINE and node.held is None and is_managed(node)
    else:
        done = False
    if not done:
        return None
    held = " (held)" if node.held is not None else ""
    then = _THEN_START if asked else _THEN.get(state, "")
    return f"node {node.name} is already {state}{held}{then}: nothing to do"


def new_reason(action: str, node: Node, reason: str | None) -> bool:
    """An admin's drain or offline of a node held so brings another reason than its hold's:
    the action is done again, to replace it (a probe's second --reason was "nothing to do")."""
    return (
        action in ("drain", "offline")
        and reason is not None
        and node.held is not None
        and node.held_reason is not None
        and node.held_reason != reason
    )


def with_held_why(reason: str | None, node: Node) -> str | None:
    """``reason`` (who, and why after ``": "``) with the why of the node's hold when it gives
    none: ``taken offline by alice`` of a node held as ``drained by bob: bad DIMM`` is
    ``taken offline by alice: bad DIMM``."""
    if reason is None or ": " in reason or node.held_reason is None:
        return reason
    _, sep, why = node.held_reason.partition(": ")
    return f"{reason}: {why}" if sep and why else reason
