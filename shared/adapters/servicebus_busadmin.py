"""Administration of Azure Service Bus queues (the BusAdmin port), through
``ServiceBusAdministrationClient``: it needs the Manage right, which the control
plane's deployment has and agents do not (in Azure, Bicep declares the queues
with the same options; declaring again is harmless).

Queues are created with:

- ``requires_session``, ``max_delivery_count`` and ``lock_duration`` as asked;
  Service Bus allows lock durations of 5 s to 5 min, so shorter or longer ones
  are clamped (:func:`lock_duration`);
- duplicate detection over :data:`DUPLICATE_DETECTION_WINDOW`, so a resend with
  the same message id (an agent's retry) is dropped by the broker;
- dead-lettering on expiry and a default time to live of
  :data:`DEFAULT_MESSAGE_TTL`, so an expired assignment stays visible (as in
  the embedded bus) and nothing lingers forever.

``count`` reads runtime properties, which Service Bus updates within seconds (not
at once, unlike the SQLite bus).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any, Literal

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.servicebus import ServiceBusMessageState
from azure.servicebus import exceptions as sbx
from azure.servicebus.management import ServiceBusAdministrationClient

from shared.adapters.servicebus_bus import (
    ServiceBusBus,
    ServiceBusQueueReceiver,
    connection_target,
    translate_error,
)
from shared.ports.bus import DEFAULT_LOCK_DURATION_MS, DEFAULT_MAX_DELIVERY_COUNT, QueueNotFound
from shared.ports.busadmin import BusAdmin

MIN_LOCK_MS = 5_000
MAX_LOCK_MS = 300_000
DUPLICATE_DETECTION_WINDOW = timedelta(minutes=10)
"""How long the broker remembers message ids (Service Bus's default, stated)."""
DEFAULT_MESSAGE_TTL = timedelta(days=14)
"""Time to live of a message sent without one."""


def lock_duration(ms: int) -> timedelta:
    """The queue lock duration Service Bus accepts nearest to ``ms`` (5 s to 5 min)."""
    return timedelta(milliseconds=min(max(ms, MIN_LOCK_MS), MAX_LOCK_MS))


def queue_options(
    *,
    requires_session: bool,
    max_delivery_count: int,
    lock_duration_ms: int,
    auto_delete_on_idle: timedelta | None = None,
) -> dict[str, Any]:
    """The ``create_queue`` options of one declaration (tested without a namespace)."""
    if max_delivery_count < 1 or lock_duration_ms <= 0:
        raise ValueError("max_delivery_count must be >= 1 and lock_duration_ms > 0")
    return {
        "requires_session": requires_session,
        "max_delivery_count": max_delivery_count,
        "lock_duration": lock_duration(lock_duration_ms),
        "requires_duplicate_detection": True,
        "duplicate_detection_history_time_window": DUPLICATE_DETECTION_WINDOW,
        "dead_lettering_on_message_expiration": True,
        "default_message_time_to_live": DEFAULT_MESSAGE_TTL,
        "auto_delete_on_idle": auto_delete_on_idle,
    }


class ServiceBusAdmin(BusAdmin):
    def __init__(
        self,
        *,
        connection_string: str | None = None,
        namespace: str | None = None,
        credential: Any = None,
        auto_delete_on_idle: timedelta | None = None,
    ) -> None:
        """Like :class:`ServiceBusBus`. ``auto_delete_on_idle`` (at least 5 min) is set on the
        queues this admin creates: tests use it to leave none behind."""
        target, credential = connection_target(connection_string, namespace, credential)
        self.admin = (
            ServiceBusAdministrationClient(target, credential)
            if credential is not None
            else ServiceBusAdministrationClient.from_connection_string(target)
        )
        self._bus = ServiceBusBus(
            connection_string=connection_string, namespace=namespace, credential=credential
        )
        self._auto_delete_on_idle = auto_delete_on_idle

    def declare_queue(
        self,
        name: str,
        *,
        requires_session: bool = False,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS,
    ) -> None:
        options = queue_options(
            requires_session=requires_session,
            max_delivery_count=max_delivery_count,
            lock_duration_ms=lock_duration_ms,
            auto_delete_on_idle=self._auto_delete_on_idle,
        )
        with contextlib.suppress(ResourceExistsError):
            self.admin.create_queue(name, **options)

    def purge_session(self, queue: str, session_id: str) -> int:
        """Completes the session's active messages, then cancels its scheduled ones (found by
        peeking the session, which shows them with state SCHEDULED)."""
        purged = 0
        with self._bus.get_session_receiver(queue, session_id=session_id) as receiver:
            while batch := receiver.receive(max_messages=100, max_wait_ms=500):
                for message in batch:
                    receiver.complete(message)
                purged += len(batch)
            assert isinstance(receiver, ServiceBusQueueReceiver)
            scheduled: list[int] = []
            sequence = 0
            try:
                while peeked := receiver._receiver.peek_messages(
                    max_message_count=100, sequence_number=sequence
                ):
                    scheduled += [
                        int(m.sequence_number or 0)
                        for m in peeked
                        if m.state == ServiceBusMessageState.SCHEDULED
                    ]
                    sequence = int(peeked[-1].sequence_number or 0) + 1
                if scheduled:
                    with self._bus.client.get_queue_sender(queue) as sender:
                        sender.cancel_scheduled_messages(scheduled)
            except sbx.ServiceBusError as exc:
                raise translate_error(exc) from exc
        return purged + len(scheduled)

    def count(self, queue: str, *, sub_queue: Literal["deadletter"] | None = None) -> int:
        try:
            props = self.admin.get_queue_runtime_properties(queue)
        except ResourceNotFoundError as exc:
            raise QueueNotFound(queue) from exc
        if sub_queue == "deadletter":
            return int(props.dead_letter_message_count or 0)
        return int(props.active_message_count or 0) + int(props.scheduled_message_count or 0)

    def close(self) -> None:
        self._bus.close()
        self.admin.close()
