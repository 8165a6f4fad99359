"""The BusAdmin port: declaring, counting and purging queues, apart from the Bus.

Administration needs rights that sending and receiving do not (on Service Bus,
the Manage claim, through ``ServiceBusAdministrationClient``): the control
plane's deployment (Bicep) or ``hpc up`` declare the queues, and agents hold
only a :class:`~shared.ports.bus.Bus`. Guarantees, checked by
the ``tests/contract/test_bus_*.py`` suites on every adapter:

- ``declare_queue`` creates a queue with its options and is idempotent: a queue
  that exists keeps its options and its messages. Queues are created with
  duplicate detection and dead-lettering on expiry (see the adapters).
- ``count`` is the queue's messages (active, scheduled and locked) or its dead
  letters; on Service Bus it lags the broker by seconds.
- ``purge_session`` deletes a session's pending messages, scheduled ones
  included (a lost node's stale assignments).
- A queue never declared raises :class:`~shared.ports.bus.QueueNotFound`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from shared.ports.bus import DEFAULT_LOCK_DURATION_MS, DEFAULT_MAX_DELIVERY_COUNT


class BusAdmin(ABC):
    """Administration of a namespace of queues."""

    @abstractmethod
    def declare_queue(
        self,
        name: str,
        *,
        requires_session: bool = False,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS,
    ) -> None:
        """Create the queue if it does not exist (idempotent)."""

    @abstractmethod
    def purge_session(self, queue: str, session_id: str) -> int:
        """Delete the session's pending messages (a lost node's stale assignments); returns how many."""

    @abstractmethod
    def count(self, queue: str, *, sub_queue: Literal["deadletter"] | None = None) -> int:
        """Messages in the queue (active, scheduled and locked), or in its dead letters."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
