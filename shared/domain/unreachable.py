"""A managed VM whose node stays Unreachable past the deployment timeout is deallocated. Pure.

Why: an agent that hangs (a probe's ``kill -STOP``), a VM whose OS froze, or one cut off
from the bus leaves its node Unreachable; its tasks are requeued at once, but its VM runs
and bills for as long as nobody looks, and at ``maxNodes`` it holds its replacement back.
Slurm powers down a node DOWN past its timeouts; CycleCloud terminates unresponsive nodes.
So once a node has been Unreachable (since its state's time: the reconciler's move) for the
deployment timeout, the time the cluster already gives a VM to be heard from, its VM is
deallocated (a stop: Stopping, then Offline with this reason kept); the autoscaler starts
it last until it joins again (:func:`shared.domain.growshrink.healthy_first`), and a
replacement when work needs one. An agent heard again before then brings the node back
(Online, or Draining if held) and nothing is stopped.

An admin's drain (``Node.held == "drain"``) does not keep an unheard VM billing: a drain
keeps a VM up so an admin can look at it through the cluster, which an unheard VM does not
serve. The hold itself stays: the node is Offline and held, never started by the
autoscaler, until an admin starts it (as after an admin's stop of a drained node). A node
held ``offline`` is Offline already, never Unreachable.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.cluster import Node
from shared.domain.power import PowerState
from shared.domain.states import NodeState

UNREACHABLE_FOR = "unreachable for "
"""How the reason of such a stop begins (kept when the node goes Offline)."""

_VM_ON = frozenset({PowerState.RUNNING, PowerState.STARTING})
"""A VM off already under an Unreachable node is the eviction rule's (it goes Offline at
once); an unknown power (a failed list) judges nothing."""


def unheard_vm(
    node: Node, power: PowerState | None, now: datetime, timeout: timedelta
) -> str | None:
    """The reason to deallocate the VM of ``node`` now (an Unreachable node of a managed
    group whose VM is on, unheard for ``timeout``); None: not now."""
    if node.state is not NodeState.UNREACHABLE or power not in _VM_ON:
        return None
    silent = now - node.state_time
    if silent < timeout:
        return None
    held = "; held by an admin's drain: it stays held" if node.held == "drain" else ""
    return (
        f"{UNREACHABLE_FOR}{_span(silent)} (no agent heard, past the deployment timeout, "
        f"{timeout.total_seconds():g} s): its VM is stopped (it billed with no agent "
        f"heard){held}"
    )


def _span(duration: timedelta) -> str:
    """``90 s``, ``25 min``."""
    seconds = duration.total_seconds()
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds // 60:.0f} min"
