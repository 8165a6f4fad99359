"""What the decision code knows of a managed node's VM: its power state, and why a provider
call failed. Pure values: the Compute port (shared.ports.compute) and its adapters produce
them, the autoscaler (shared.domain.autoscaler) decides on them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
