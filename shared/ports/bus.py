"""The Bus port: queues between the control plane and the agents, with Service Bus semantics.

It is shaped like ``azure-servicebus`` (a client that hands out senders and
receivers) so that the Service Bus adapter is a thin translation, and the
embedded SQLite adapter is a faithful twin of it. Guarantees, checked by
the ``tests/contract/test_bus_*.py`` suites on every adapter:

- Named queues, declared (and counted, and purged) through the separate
  :class:`~shared.ports.busadmin.BusAdmin` port: sending and receiving need
  data-plane rights only (Service Bus Data Sender/Receiver), administration
  needs Manage rights, which agents never get.
- Peek-lock: a received message is invisible to other receivers until its
  lock expires (then it is delivered again) or it is completed, abandoned or
  dead-lettered. ``renew_message_lock`` extends the lock.
- ``delivery_count`` is 1 on first delivery and grows with each delivery.
  A message delivered ``max_delivery_count`` times and not completed goes to
  the dead-letter queue with reason ``MaxDeliveryCountExceeded``.
- Dead-lettering by hand keeps the given reason and description;
  dead letters are read with ``get_receiver(queue, sub_queue="deadletter")``.
- Sessions (on queues declared ``requires_session=True``): every message has
  a session id; a session is held by one receiver at a time (its session
  lock), which receives that session's messages in order. Accepting a session
  that another receiver holds raises :class:`SessionLockedError`; asking for
  the next available session when none has messages raises
  :class:`NoSessionAvailable` after ``max_wait_ms``.
- Scheduled messages (``scheduled_enqueue_time``) are invisible until their time.
- Receives wait at most ``max_wait_ms`` and return what arrived (maybe nothing);
  they never sleep longer than needed when a message arrives.
- Size: a message is at most :data:`MAX_MESSAGE_BYTES` (Service Bus Standard's
  256 KB, properties included), refused with :class:`MessageTooLargeError`
  before anything is sent. A list is sent in batches of at most
  :data:`MAX_BATCH_BYTES` and :data:`MAX_BATCH_MESSAGES`, in order; each batch
  is all or none, and a list whose messages are invalid (too large, or without
  a session id on a session queue) sends nothing.
- A received message carries in :attr:`ReceivedMessage.handle` what its
  adapter needs to settle or renew it (the SDK message on Service Bus); it is
  settled through the receiver that received it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Self

DEFAULT_LOCK_DURATION_MS = 30_000
DEFAULT_MAX_DELIVERY_COUNT = 10
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
TTL_EXPIRED = "TTLExpiredException"
MAX_MESSAGE_BYTES = 256 * 1024
"""Largest message, body and properties (Service Bus Standard: 256 KB)."""
MAX_BATCH_BYTES = 256 * 1024
"""Largest batch sent at once (Service Bus Standard: 256 KB, the link's frame)."""
MAX_BATCH_MESSAGES = 4_500
"""Most messages in one batch (Service Bus's limit on one batch's messages)."""
MESSAGE_OVERHEAD_BYTES = 64
"""Bytes counted per message beyond its fields (AMQP headers and encoding), so that the
embedded bus refuses what Service Bus would."""


class BusError(Exception):
    """Base class of bus errors."""


class MessageLockLostError(BusError):
    """The message's lock expired or it was settled already; settle nothing twice."""


class SessionLockedError(BusError):
    """Another receiver holds this session."""


class SessionLockLostError(BusError):
    """This receiver's session lock expired; another receiver may hold the session now."""


class NoSessionAvailable(BusError):
    """No unlocked session with messages arrived within the wait."""


class QueueNotFound(BusError):
    """The queue was never declared."""


class MessageTooLargeError(BusError, ValueError):
    """A message exceeds :data:`MAX_MESSAGE_BYTES`; nothing was sent."""


@dataclass
class OutgoingMessage:
    """A message to send. ``body`` is bytes; use :meth:`json` to build one from data."""

    body: bytes
    session_id: str | None = None
    message_id: str | None = None
    subject: str | None = None
    content_type: str | None = None
    application_properties: dict[str, Any] = field(default_factory=dict)
    scheduled_enqueue_time: datetime | None = None
    time_to_live_ms: int | None = None

    @classmethod
    def json(cls, data: Any, **kwargs: Any) -> OutgoingMessage:
        return cls(
            body=json.dumps(data, separators=(",", ":")).encode(),
            content_type="application/json",
            **kwargs,
        )

    def size_bytes(self) -> int:
        """The message's size as the byte budgets count it: body, text fields, properties
        (as JSON) and :data:`MESSAGE_OVERHEAD_BYTES`."""
        text = (self.session_id, self.message_id, self.subject, self.content_type)
        properties = (
            len(json.dumps(self.application_properties, separators=(",", ":")))
            if self.application_properties
            else 0
        )
        return (
            len(self.body)
            + sum(len(t.encode()) for t in text if t)
            + properties
            + MESSAGE_OVERHEAD_BYTES
        )


def check_sizes(messages: Sequence[OutgoingMessage]) -> None:
    """Refuse a list holding a message over :data:`MAX_MESSAGE_BYTES` (before any is sent)."""
    for index, message in enumerate(messages):
        size = message.size_bytes()
        if size > MAX_MESSAGE_BYTES:
            raise MessageTooLargeError(
                f"message {index} ({message.message_id or 'no id'}) is {size} bytes; a bus "
                f"message is at most {MAX_MESSAGE_BYTES} bytes (Service Bus Standard): send "
                "a reference to the data (e.g. in the store or output) instead"
            )


def split_batches(
    messages: Sequence[OutgoingMessage],
    *,
    max_bytes: int = MAX_BATCH_BYTES,
    max_messages: int = MAX_BATCH_MESSAGES,
) -> list[list[OutgoingMessage]]:
    """Consecutive batches within both budgets, in order (each message fits alone)."""
    batches: list[list[OutgoingMessage]] = []
    batch: list[OutgoingMessage] = []
    size = 0
    for message in messages:
        grown = size + message.size_bytes()
        if batch and (grown > max_bytes or len(batch) >= max_messages):
            batches.append(batch)
            batch, grown = [], message.size_bytes()
        batch.append(message)
        size = grown
    if batch:
        batches.append(batch)
    return batches


@dataclass
class ReceivedMessage:
    """A peek-locked message, settled through the receiver that received it."""

    body: bytes
    message_id: str
    sequence_number: int
    delivery_count: int
    enqueued_time: datetime
    session_id: str | None = None
    subject: str | None = None
    content_type: str | None = None
    application_properties: dict[str, Any] = field(default_factory=dict)
    locked_until: datetime | None = None
    lock_token: str | None = None
    scheduled_enqueue_time: datetime | None = None
    expires_at: datetime | None = None
    dead_letter_reason: str | None = None
    dead_letter_error_description: str | None = None
    handle: Any = field(default=None, repr=False, compare=False)
    """What the adapter needs to settle or renew this delivery (opaque to callers): the
    SDK's message on Service Bus, the row and lock token in the embedded bus."""

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver(ABC):
    """Receives peek-locked messages from one queue (or one session of it)."""

    queue: str

    @abstractmethod
    def receive(self, *, max_messages: int = 1, max_wait_ms: int = 0) -> list[ReceivedMessage]:
        """Up to ``max_messages``; waits up to ``max_wait_ms`` for the first one."""

    @abstractmethod
    def complete(self, message: ReceivedMessage) -> None:
        """Remove the message. Raises MessageLockLostError if its lock is gone."""

    @abstractmethod
    def abandon(self, message: ReceivedMessage) -> None:
        """Release the lock now so it is delivered again (or dead-lettered if out of deliveries)."""

    @abstractmethod
    def dead_letter(
        self, message: ReceivedMessage, *, reason: str, error_description: str | None = None
    ) -> None:
        """Move the message to the queue's dead-letter queue with this reason."""

    @abstractmethod
    def renew_message_lock(self, message: ReceivedMessage) -> datetime:
        """Extend the message's lock by the queue's lock duration; returns the new expiry."""

    @abstractmethod
    def close(self) -> None:
        """Release the receiver (and its session lock, if any)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SessionReceiver(Receiver):
    """Holds one session's lock; receives only that session's messages."""

    session_id: str

    @property
    @abstractmethod
    def session_locked_until(self) -> datetime:
        """When the session lock expires unless renewed."""

    @abstractmethod
    def renew_session_lock(self) -> datetime:
        """Extend the session lock; raises SessionLockLostError if it already expired."""

    @abstractmethod
    def get_session_state(self) -> bytes | None:
        """The session's state blob (Service Bus session state)."""

    @abstractmethod
    def set_session_state(self, state: bytes | None) -> None:
        """Replace the session's state blob."""


class Bus(ABC):
    """A namespace of queues, for sending and receiving (administration: BusAdmin)."""

    @abstractmethod
    def send(self, queue: str, messages: OutgoingMessage | Sequence[OutgoingMessage]) -> None:
        """Send one message or a list, in order, in batches within the byte and count budgets
        (each batch all or none). Session queues need a session id on each message.
        Raises MessageTooLargeError (nothing sent) for a message over MAX_MESSAGE_BYTES."""

    @abstractmethod
    def get_receiver(
        self, queue: str, *, sub_queue: Literal["deadletter"] | None = None
    ) -> Receiver:
        """A receiver of a queue without sessions, or of any queue's dead letters."""

    @abstractmethod
    def get_session_receiver(
        self, queue: str, *, session_id: str | None = None, max_wait_ms: int = 0
    ) -> SessionReceiver:
        """Accept a session: the named one (SessionLockedError if held) or, with
        ``session_id=None``, the next one that has messages and no holder
        (NoSessionAvailable if none within ``max_wait_ms``)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
