"""A VM that runs while its node is Offline: deallocated once it has run so for the deployment
timeout. Pure.

How it happens: a VM started or left running outside the cluster, an agent that stopped
(``hpc node stop`` of a busy VM's agent, a crash) on a VM that stays up, or a control plane
restarted while its local VMs were on (they are booted again at once: shared/adapters/
local_vms.py). The last case must not be stopped at once: its agent registers within
seconds and reports what ended meanwhile. The others must not bill forever: a fault probe
found the autoscaler ordering such a VM stopped every run, and the stop doing nothing for
an Offline node. So the rule waits the deployment timeout, as for a started VM whose agent
never joins, then its VM is deallocated and the node stays Offline.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from shared.domain.growshrink import NodeMemory
from shared.domain.power import PowerState
from shared.domain.states import NodeState

_VM_ON = frozenset({PowerState.RUNNING, PowerState.STARTING})


def stray_vm(
    state: NodeState,
    power: PowerState | None,
    memory: NodeMemory,
    now: datetime,
    timeout: timedelta,
) -> tuple[NodeMemory, str | None]:
    """The node's memory after this run, and the reason to deallocate its VM now (None: not
    now). A VM the autoscaler itself is starting is judged by the deployment timeout instead."""
    stray = state is NodeState.OFFLINE and power in _VM_ON and memory.start_ordered_at is None
    if not stray:
        return (replace(memory, on_offline_since=None) if memory.on_offline_since else memory), None
    since = memory.on_offline_since or now
    memory = replace(memory, on_offline_since=since)
    if now - since < timeout:
        return memory, None
    ran = (now - since).total_seconds()
    return memory, (
        f"its VM has run for {ran:.0f} s while its node is Offline (no agent joined within the "
        f"deployment timeout, {timeout.total_seconds():.0f} s): deallocated"
    )
