"""What the autoscaler (:mod:`shared.domain.autoscaler`) takes and gives: the cluster as the
caller read it, and the orders and notes of one run, each with its reason. Plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from shared.domain.cluster import Node
from shared.domain.growshrink import AutoscalerState
from shared.domain.jobexclusive import Occupancy
from shared.domain.models import Task
from shared.domain.power import ComputeError, ErrorKind, PowerState


@dataclass(frozen=True)
class StartFailure:
    """A start the provider reported failed (an error value from start or its poll)."""

    group: str
    node: str
    reason: str
    retry_after: timedelta | None = None
    kind: ErrorKind | None = None
    """The provider's error kind (None: not the provider's, e.g. a deployment timeout)."""

    @classmethod
    def from_error(cls, group: str, node: str, error: ComputeError) -> StartFailure:
        """From the provider's error value (start refused, or its operation failed); the node
        said once (a provider's message may name it too)."""
        wait = None if error.retry_after_s is None else timedelta(seconds=error.retry_after_s)
        message = error.message.removeprefix(f"{node}: ")
        return cls(group, node, f"{node}: {error.kind}: {message}", wait, error.kind)


@dataclass(frozen=True)
class Reserved:
    """EASY's reservation, as the scheduler's pass makes it: the blocked head task ``task``
    waits on its nodes for ``cores`` per node, and a later task may take them only if it ends
    before ``at`` (epoch seconds; None: unknown, what runs there has no runtime limit, so
    none may). The autoscaler must see that hold, or it counts those cores for later tasks
    and grows nothing while they wait, maybe for hours (:mod:`shared.domain.reservedhold`)."""

    task: tuple[int, int]
    """(job id, task id) of the reserved task: it alone may use the held cores."""
    cores: Mapping[str, int]
    """Reserved node -> its cores free now that a later task not ending first may not take:
    those free less what stays spare at the reserved start (the scheduler's
    :attr:`~shared.domain.reservation.Reservation.held`; all of them for an exclusive task)."""
    at: float | None = None
    """When it is projected to start (epoch seconds); None: unknown."""
    job_exclusive: bool = False
    """Its job is job-exclusive: another job's task takes none of the reserved nodes' cores."""
    memory_mb: int | None = None
    """The memory it asks on each node: another task takes none of it there (memoryfit)."""
    held_mb: Mapping[str, int] | None = None
    """Reserved node -> the memory free now that a later task not ending first may not take
    there (the scheduler's :attr:`Reservation.held_mb`); None: ``memory_mb`` on each."""


@dataclass(frozen=True)
class ClusterView:
    """What the caller read for this run."""

    nodes: Sequence[Node]
    queued: Sequence[Task]
    """Queued tasks in scheduling order (the window the scheduler reads)."""
    used_cores: Mapping[str, int] = field(default_factory=dict)
    """Cores held by active (Dispatching, Running) tasks per node."""
    power: Mapping[str, PowerState] = field(default_factory=dict)
    """VM power states from the provider; a node missing here is not judged by it, unless
    ``listed``."""
    listed: bool = False
    """``power`` is the provider's whole list of the cluster's VMs (its call succeeded): a
    node missing from it has no VM (deleted outside the cluster, or a local provider's
    "VM" lost with a killed ``hpc up``)."""
    failures: Sequence[StartFailure] = ()
    reserved: Reserved | None = None
    """The scheduler's unknown-time reservation, if any (:class:`Reserved`)."""
    occupied: Occupancy = field(default_factory=Occupancy)
    """Which jobs' active tasks use each node (job-level exclusive: jobexclusive)."""
    held_mb: Mapping[str, int] = field(default_factory=dict)
    """Memory active tasks hold per node (consumable memory: shared.domain.memoryfit)."""


OrderAction = Literal["start", "stop", "drain", "offline"]


@dataclass(frozen=True)
class Order:
    """``start``/``stop``: call the provider and move the node Starting/Stopping; ``drain``:
    move it Draining (no new tasks); ``offline``: its VM is off already (evicted), mark it."""

    action: OrderAction
    node: str
    group: str
    reason: str


@dataclass(frozen=True)
class Note:
    """Why nothing happened where something might have (a group in backoff, at max...).
    ``grows``: it says why the group did not grow (what a queued task's pending reason
    shows); otherwise why a node was not stopped."""

    group: str
    text: str
    grows: bool = True
    about: str | None = None
    """The waiting tasks it concerns (:func:`shared.domain.notescope.scope`); None: every
    task that waits for the group."""

    def __str__(self) -> str:
        return f"{self.group}: {self.text}"


@dataclass(frozen=True)
class Decision:
    orders: list[Order]
    state: AutoscalerState
    notes: list[Note]


def request_stop(node: Node, used_cores: int, reason: str) -> Order:
    """A stop asked for (by an admin or the policy): drain first while tasks run."""
    group = node.groups[0] if node.groups else ""
    if used_cores > 0:
        return Order("drain", node.name, group, f"{reason}; draining: tasks still run")
    return Order("stop", node.name, group, reason)
