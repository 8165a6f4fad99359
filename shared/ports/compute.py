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
from typing import Literal

from shared.domain.power import (  # noqa: F401 - the port's values, importable from here too
    OFF_STATES,
    ComputeError,
    ErrorKind,
    PowerState,
)

log = logging.getLogger(__name__)


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
    memory_mb: int | None = None
    """Its group's nodeMemoryMb: what a local "VM"'s agent reports (a real VM's agent reads
    its machine's); None: the agent's own reading."""


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
