"""The Compute port: the machines behind the nodes of a managed group (Azure VMs, local agents).

A provider is as plain as Parsl's ``ExecutionProvider`` or Ray's node provider:
create, start, deallocate, delete a VM, and read the power states of all of
them in one call. The autoscaler decides; the provider only does what it is
told and reports what happened.

VM lifecycle (power states, :class:`PowerState`)::

    create ──> CREATING ──> DEALLOCATED ──start──> STARTING ──> RUNNING
                                 ^                                  │
                                 └──── DEALLOCATING <──deallocate───┘
    delete (from any state) ──> DELETING ──> (gone: absent from power_states)

A created VM is left deallocated (HPC Pack's "not deployed"): creating costs
nothing, starting it is the autoscaler's call. A VM can also be deallocated
from outside (a Spot eviction) or vanish; the next :meth:`power_states` says so.

Guarantees every provider gives:

- **Never blocks.** ``create``/``start``/``deallocate``/``delete`` begin the
  work and return an :class:`Operation` handle at once; the caller stores it
  and calls :meth:`poll` on a later run (a timer function must not wait minutes).
- **Idempotent per request id.** A call repeated with the same ``request_id``
  begins nothing new (it returns the same handle while this provider instance
  remembers it, and the cloud call itself is idempotent: a PUT by name, a
  start of a running VM).
- **Errors are values.** A refused or failed call returns a
  :class:`ComputeError` with its :class:`ErrorKind` (quota, allocation,
  SKU, conflict, throttled with Retry-After). It never raises for a cloud
  answer; backing off is the policy's decision
  (:mod:`shared.domain.autoscaler`), not the provider's.
- **Power states are cheap to read.** :meth:`power_states` is one call (one
  ARM list request on Azure) for every VM of the cluster; it may be cached
  for one autoscaler run, no longer.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

log = logging.getLogger(__name__)


class PowerState(StrEnum):
    """Where a VM is in its lifecycle (see the module docstring)."""

    CREATING = "creating"
    """Being created; it becomes DEALLOCATED (the provider deallocates it once created)."""
    DEALLOCATED = "deallocated"
    """Exists, costs no compute, runs nothing: the node is Offline."""
    STARTING = "starting"
    """Booting; its agent has not necessarily registered yet."""
    RUNNING = "running"
    """Powered on. Whether its agent joined is the control plane's knowledge, not the provider's."""
    STOPPED = "stopped"
    """Powered off but still allocated (still billed): deallocate it."""
    DEALLOCATING = "deallocating"
    """Being deallocated."""
    DELETING = "deleting"
    """Being deleted."""
    FAILED = "failed"
    """Provisioning failed; it runs nothing and should be deleted or recreated."""
    UNKNOWN = "unknown"
    """A provider state this table does not know (logged)."""


OFF_STATES: frozenset[PowerState] = frozenset(
    {PowerState.DEALLOCATED, PowerState.STOPPED, PowerState.DEALLOCATING, PowerState.FAILED}
)
"""The VM runs no agent: a node that believes otherwise was evicted or stopped outside."""

PROVIDER_POWER_STATES: dict[str, PowerState] = {
    # Azure: instance view status codes (statuses[].code), and provisioning states.
    "PowerState/starting": PowerState.STARTING,
    "PowerState/running": PowerState.RUNNING,
    "PowerState/stopping": PowerState.STOPPED,
    "PowerState/stopped": PowerState.STOPPED,
    "PowerState/deallocating": PowerState.DEALLOCATING,
    "PowerState/deallocated": PowerState.DEALLOCATED,
    "ProvisioningState/creating": PowerState.CREATING,
    "ProvisioningState/deleting": PowerState.DELETING,
    "ProvisioningState/failed": PowerState.FAILED,
    # Local provider (agent processes): it reports our names directly.
    **{state.value: state for state in PowerState},
}
"""Provider power state -> ours. One table, never scattered ``if``s (as Parsl does)."""


def to_power_state(code: str | None) -> PowerState:
    """Our power state for a provider's code; :attr:`PowerState.UNKNOWN` (logged) otherwise."""
    if code is None:
        return PowerState.UNKNOWN
    state = PROVIDER_POWER_STATES.get(code)
    if state is None:
        for known, ours in PROVIDER_POWER_STATES.items():
            if known.lower() == code.lower():
                return ours
        log.warning("unknown provider power state %r; treated as unknown", code)
        return PowerState.UNKNOWN
    return state


class ErrorKind(StrEnum):
    """Why a provider call failed: what the policy needs to decide a backoff."""

    QUOTA_EXCEEDED = "QuotaExceeded"
    """The subscription's core quota for the family or region is used up."""
    ALLOCATION_FAILED = "AllocationFailed"
    """The region has no capacity for this size right now."""
    SKU_NOT_AVAILABLE = "SkuNotAvailable"
    """The size is not offered in this region or zone (a configuration error)."""
    CONFLICT = "Conflict"
    """409: another operation on the VM is in progress."""
    THROTTLED = "Throttled"
    """429: too many requests; ``retry_after_s`` says how long to wait."""
    NOT_FOUND = "NotFound"
    """The VM does not exist (any more)."""
    FAILED = "Failed"
    """Anything else (the message says what)."""


@dataclass(frozen=True)
class ComputeError:
    """A failed provider call or operation, as a value."""

    kind: ErrorKind
    message: str
    vm: str | None = None
    retry_after_s: float | None = None
    """From a Retry-After header (429, some 409s): the earliest sensible retry."""
    code: str | None = None
    """The provider's own error code (e.g. ``OperationNotAllowed``), for the log."""


Action = Literal["create", "start", "deallocate", "delete"]


@dataclass(frozen=True)
class VmSpec:
    """What to create: a VM that becomes node ``name`` of ``group`` with ``cores`` cores."""

    name: str
    group: str
    cores: int
    size: str | None = None
    """Provider size (e.g. ``Standard_D4s_v5``); None: the provider's default."""
    tags: dict[str, str] = field(default_factory=dict)
    spot: bool = False
    """A Spot VM: the provider may evict it (deallocate it from outside) at any time."""


@dataclass(frozen=True)
class Operation:
    """Handle of a begun operation: plain data, so the caller can store it and poll later."""

    action: Action
    vm: str
    request_id: str
    begun_at: datetime
    token: str = ""
    """Provider-specific way back to the operation (Azure: its Azure-AsyncOperation URL);
    empty when it completed at once."""


OpStatus = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class OperationResult:
    """One poll of an operation."""

    status: OpStatus
    error: ComputeError | None = None
    next: Operation | None = None
    """A follow-up the provider began itself (a created VM is deallocated next): poll this
    handle from now on instead of the polled one (status is then "running")."""

    @property
    def done(self) -> bool:
        return self.status != "running"


class ComputeProvider(ABC):
    """A source of VMs for managed node groups. See the module docstring for the contract."""

    name: str
    """Stored in :attr:`Node.provider` (``local``, ``azure``)."""

    @abstractmethod
    def create(self, spec: VmSpec, *, request_id: str, now: datetime) -> Operation | ComputeError:
        """Begin creating the VM; it ends deallocated (the provider deallocates it)."""

    @abstractmethod
    def start(self, vm: str, *, request_id: str, now: datetime) -> Operation | ComputeError:
        """Begin starting the VM; its agent registers on its own once it boots."""

    @abstractmethod
    def deallocate(self, vm: str, *, request_id: str, now: datetime) -> Operation | ComputeError:
        """Begin stopping and deallocating the VM (its agent gets SIGTERM, stops cleanly)."""

    @abstractmethod
    def delete(self, vm: str, *, request_id: str, now: datetime) -> Operation | ComputeError:
        """Begin deleting the VM and what it owns (disk, NIC)."""

    @abstractmethod
    def poll(self, operation: Operation, *, now: datetime) -> OperationResult:
        """Check a begun operation once, without waiting."""

    @abstractmethod
    def power_states(self) -> dict[str, PowerState] | ComputeError:
        """Power state of every VM of this cluster, in one call."""
