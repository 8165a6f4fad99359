"""The cluster's own records: nodes, node groups, the control plane's meta documents and
the principals tokens belong to. (Jobs and tasks: :mod:`shared.domain.models`.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.domain.records import Record, UtcTime, utcnow
from shared.domain.states import NodeState, check_transition


class Node(Record):
    name: str
    groups: list[str] = Field(default_factory=list)
    cores: int = 1
    state: NodeState = NodeState.OFFLINE
    provider: str = "onprem"
    """Who owns the machine: ``onprem`` (registered by its agent), ``local`` or ``azure``.
    Set when the record is created, never by a registration (shared.domain.ownership)."""
    size: str | None = None
    memory_mb: int | None = None
    """The machine's memory (MB) as its agent said at its last registration; a managed node
    not registered yet has its group's ``node_memory_mb``. None: unknown (it runs no task
    that asks for memory)."""
    spot: bool = False
    """A Spot VM (``hpc node add --spot``): cheaper, and the cloud may evict it at any time;
    its tasks are then requeued at once."""
    added_by: str | None = None
    """The node add that made it (its request's id; None: made otherwise, or before adds
    said): two adds that chose the same name tell their own node from the other's."""
    last_heartbeat: UtcTime | None = None
    incarnation: int = 0
    """Raised by one at every accepted agent registration (0: never registered). Assignments
    and events carry it; anything from an earlier incarnation changes nothing."""
    agent_id: str | None = None
    """The agent process holding the node (its replies session)."""
    host_id: str | None = None
    """The machine and state folder of that agent (see RegisterNode.host_id)."""
    agent_started_at: UtcTime | None = None
    agent_protocol: int = 1
    """The protocol its agent said at its last registration (shared.domain.protocol): the
    scheduler sends it only tasks whose assignments that agent reads. 1 when unknown."""
    runs_as_owner: bool = False
    """Its agent said at its last registration that it runs each task as the job's owner
    (``hpc agent run --run-as-owner``); False: as the agent's own OS user."""
    missing_since: dict[str, UtcTime] = Field(default_factory=dict)
    """Running attempts its heartbeats stopped listing, since when (a lost TaskEnded)."""
    given_up: list[tuple[int, int]] = Field(default_factory=list)
    """(job, task) of the attempts this VM ran when an admin took it offline: their next
    attempts wait while they may still run, until its deallocation is known done (then
    nothing runs there: :func:`shared.domain.lifecycle.machine_gone`)."""
    state_reason: str | None = None
    state_time: UtcTime = Field(default_factory=utcnow)
    held: Literal["drain", "offline"] | None = None
    """An admin's ``hpc node drain`` or ``offline``, kept until an admin starts the node again
    (``hpc node start | online``): a registration (a restarted agent, a rebooted machine)
    keeps it Draining or Offline, and the autoscaler never starts it. As Slurm keeps a
    DRAIN and HPC Pack an Offline node across restarts."""
    start_requested: str | None = None
    """An admin's start of a VM still Stopping (its reason): the autoscaler starts it once
    its stop is done, as Slurm resumes a node powering down once it is down (a start of a
    deallocating VM would be refused by Azure). Any start, stop or hold ends it."""
    held_reason: str | None = None
    """Who held it and why ("drained by alice: disk swap"), as its reason said then: kept
    in the reason a registration of a held node writes (a probe lost it to "agent restarted")."""

    def move_to(
        self, target: NodeState, *, reason: str | None = None, now: datetime | None = None
    ) -> None:
        check_transition(self.state, target)
        self.state = target
        self.state_reason = reason
        self.state_time = now or utcnow()


class NodeGroup(Record):
    name: str
    description: str = ""
    min_nodes: int = 0
    max_nodes: int = 0
    provider: str | None = None
    """The compute provider whose VMs its nodes are (``local``, ``azure``); None: on-prem
    machines whose agents join by themselves (not managed, never autoscaled)."""
    node_cores: int = 2
    """Cores of one node of a managed group (what ``hpc node add`` creates)."""
    node_memory_mb: int | None = None
    """Memory (MB) of one node of a managed group (its VM size's). None: unknown; the
    autoscaler then takes the memory of the group's registered nodes."""
    size: str | None = None
    """The provider's VM size for new nodes (Azure: e.g. Standard_D4s_v5)."""
    autoscale: bool = True
    """The timer autoscaler grows and shrinks this (managed) group."""
    grow_interval_s: float = 60
    shrink_interval_s: float = 60
    shrink_idle_times: int = 3
    grow_threshold: int = 1
    tasks_per_resource_unit: int = 1
    extra_nodes_grow_ratio: int = 0
    grow_by_min: bool = False
    idle_policy: str = "fixed"
    """How long idle nodes stay up (shared.usecases.idle_policy): ``fixed`` stops a node idle
    for ShrinkIdleTimes x ShrinkInterval; ``keep[:S]`` and ``anticipate[:S]`` run the
    simulator's warm-pool policies (``hpc sim replay --idle-policy``), same texts."""
    boot_delay_s: float = 180
    """The warm pool's forecast horizon: set it to the VMs' measured boot time
    (Starting -> Online, shown by ``hpc autoscale log``)."""
    scale_down_delay_s: float | None = None
    """No scale-down of the group this soon after it grew. None: the cluster's
    ``HPC_SCALE_DOWN_DELAY_S`` under ``fixed``, 0 under an idle policy (its plan weighs
    when a stop pays against the boot it costs; a delay on top keeps nodes it would stop:
    KTH-SP2 with ``value`` costs 1.048x the oracle with 600 s, 1.034x with none)."""


DEFAULT_GROUPS: tuple[NodeGroup, ...] = (
    NodeGroup(name="OnPremNodes", description="On-premises nodes running the HybridHPC agent"),
    NodeGroup(name="AzureNodes", description="Azure VMs managed by the cluster"),
)
"""HPC Pack's two hybrid groups; they exist from the start, like in HPC Pack."""


class Meta(Record):
    """A small named document of the control plane's own state (e.g. the reconciler's)."""

    key: str
    data: dict[str, Any] = Field(default_factory=dict)


class Principal(BaseModel):
    """Who a bearer token belongs to."""

    name: str
    role: str = "admin"
    created: UtcTime | None = None
    """When the token was made (None: a token from before this was kept)."""
