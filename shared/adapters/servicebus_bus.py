"""The Bus on Azure Service Bus (``azure-servicebus``): the port is shaped like the SDK,
so this adapter is a translation.

- Queues are declared through ``ServiceBusAdministrationClient`` (Bicep declares
  them in Azure; declaring is idempotent). Service Bus allows lock durations of
  5 s to 5 min: shorter or longer ones are clamped (:func:`lock_duration`).
- Messages map field for field (:func:`to_servicebus_message`,
  :func:`from_servicebus_message`); a message without an id gets ``uuid4().hex``
  so duplicate detection sees the same id on a resend.
- Receivers are peek-lock with no prefetch; a received message is settled through
  the receiver that got it (it keeps the SDK message by lock token).
- Session receivers accept their session at once (``NEXT_AVAILABLE_SESSION`` when no
  id is given), so a held session raises :class:`SessionLockedError` and no session
  :class:`NoSessionAvailable`, as the port says.
- ``count`` reads runtime properties, which Service Bus updates within seconds (not
  at once, unlike the SQLite bus).

Connects with a connection string, or a fully qualified namespace and
``DefaultAzureCredential`` (managed identity in Azure).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSubQueue,
)
from azure.servicebus import exceptions as sbx
from azure.servicebus.management import ServiceBusAdministrationClient

from shared.ports.bus import (
    DEFAULT_LOCK_DURATION_MS,
    DEFAULT_MAX_DELIVERY_COUNT,
    Bus,
    BusError,
    MessageLockLostError,
    NoSessionAvailable,
    OutgoingMessage,
    QueueNotFound,
    ReceivedMessage,
    Receiver,
    SessionLockedError,
    SessionLockLostError,
    SessionReceiver,
)

MIN_LOCK_MS = 5_000
MAX_LOCK_MS = 300_000
MIN_WAIT_S = 0.5
"""Shortest receive wait sent to Service Bus (a zero wait would be an unbounded one)."""


def lock_duration(ms: int) -> timedelta:
    """The queue lock duration Service Bus accepts nearest to ``ms`` (5 s to 5 min)."""
    return timedelta(milliseconds=min(max(ms, MIN_LOCK_MS), MAX_LOCK_MS))


def _wait_s(max_wait_ms: int) -> float:
    return max(max_wait_ms / 1000, MIN_WAIT_S)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def to_servicebus_message(message: OutgoingMessage) -> ServiceBusMessage:
    """The SDK message for one port message (an id is given if it has none)."""
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id or uuid.uuid4().hex,
        session_id=message.session_id,
        subject=message.subject,
        content_type=message.content_type,
        application_properties=cast(Any, dict(message.application_properties) or None),
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time,
        time_to_live=(
            timedelta(milliseconds=message.time_to_live_ms)
            if message.time_to_live_ms is not None
            else None
        ),
    )


def from_servicebus_message(message: ServiceBusReceivedMessage) -> ReceivedMessage:
    """The port message for one received SDK message (properties' bytes decoded to str)."""
    body = message.body
    data = body if isinstance(body, bytes | bytearray) else b"".join(body)
    properties = {_text(k): _text(v) for k, v in (message.application_properties or {}).items()}
    enqueued = _utc(message.enqueued_time_utc) or datetime.now(UTC)
    lock_token = message.lock_token
    return ReceivedMessage(
        body=bytes(data),
        message_id=str(message.message_id),
        sequence_number=int(message.sequence_number or 0),
        # The AMQP header holds prior deliveries (the broker's count - 1, as AMQP says) and
        # the Python SDK passes it through; the port counts from 1 like Service Bus does.
        delivery_count=int(message.delivery_count or 0) + 1,
        enqueued_time=enqueued,
        session_id=message.session_id,
        subject=message.subject,
        content_type=message.content_type,
        application_properties=properties,
        locked_until=_utc(message.locked_until_utc),
        lock_token=str(lock_token) if lock_token is not None else None,
        scheduled_enqueue_time=_utc(message.scheduled_enqueue_time_utc),
        expires_at=_utc(message.expires_at_utc),
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_error_description=message.dead_letter_error_description,
    )


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, sbx.MessageLockLostError | sbx.MessageAlreadySettled):
        return MessageLockLostError(str(exc))
    if isinstance(exc, sbx.SessionLockLostError):
        return SessionLockLostError(str(exc))
    if isinstance(exc, sbx.SessionCannotBeLockedError):
        return SessionLockedError(str(exc))
    if isinstance(exc, sbx.MessagingEntityNotFoundError | ResourceNotFoundError):
        return QueueNotFound(str(exc))
    if isinstance(exc, sbx.ServiceBusError):
        return BusError(str(exc))
    return exc


class ServiceBusQueueReceiver(Receiver):
    def __init__(self, queue: str, receiver: ServiceBusReceiver) -> None:
        self.queue = queue
        self._receiver = receiver
        self._held: dict[str, ServiceBusReceivedMessage] = {}

    def receive(self, *, max_messages: int = 1, max_wait_ms: int = 0) -> list[ReceivedMessage]:
        try:
            got = self._receiver.receive_messages(
                max_message_count=max_messages, max_wait_time=_wait_s(max_wait_ms)
            )
        except sbx.ServiceBusError as exc:
            raise _translate(exc) from exc
        out = []
        for raw in got:
            message = from_servicebus_message(raw)
            if message.lock_token:
                self._held[message.lock_token] = raw
            out.append(message)
        return out

    def _raw(self, message: ReceivedMessage) -> ServiceBusReceivedMessage:
        raw = self._held.get(message.lock_token or "")
        if raw is None:
            raise MessageLockLostError("not received (or already settled) by this receiver")
        return raw

    def _settle(self, message: ReceivedMessage, action: str, **kwargs: Any) -> None:
        raw = self._raw(message)
        try:
            getattr(self._receiver, action)(raw, **kwargs)
        except sbx.ServiceBusError as exc:
            raise _translate(exc) from exc
        finally:
            self._held.pop(message.lock_token or "", None)

    def complete(self, message: ReceivedMessage) -> None:
        self._settle(message, "complete_message")

    def abandon(self, message: ReceivedMessage) -> None:
        self._settle(message, "abandon_message")

    def dead_letter(
        self, message: ReceivedMessage, *, reason: str, error_description: str | None = None
    ) -> None:
        self._settle(
            message, "dead_letter_message", reason=reason, error_description=error_description
        )

    def renew_message_lock(self, message: ReceivedMessage) -> datetime:
        try:
            until = self._receiver.renew_message_lock(self._raw(message))
        except sbx.ServiceBusError as exc:
            raise _translate(exc) from exc
        message.locked_until = _utc(until)
        return message.locked_until or until

    def close(self) -> None:
        self._held.clear()
        self._receiver.close()


class ServiceBusSessionReceiver(ServiceBusQueueReceiver, SessionReceiver):
    def __init__(self, queue: str, receiver: ServiceBusReceiver) -> None:
        super().__init__(queue, receiver)
        session = receiver.session
        assert session is not None
        self._session = session
        self.session_id = session.session_id

    @property
    def session_locked_until(self) -> datetime:
        until = _utc(self._session.locked_until_utc)
        return until or datetime.now(UTC)

    def renew_session_lock(self) -> datetime:
        try:
            return _utc(self._session.renew_lock()) or self.session_locked_until
        except sbx.ServiceBusError as exc:
            raise _translate(exc) from exc

    def get_session_state(self) -> bytes | None:
        try:
            state = self._session.get_state()
        except sbx.ServiceBusError as exc:
            raise _translate(exc) from exc
        return bytes(state) if state else None

    def set_session_state(self, state: bytes | None) -> None:
        try:
            self._session.set_state(state)
        except sbx.ServiceBusError as exc:
            raise _translate(exc) from exc


class ServiceBusBus(Bus):
    def __init__(
        self,
        *,
        connection_string: str | None = None,
        namespace: str | None = None,
        credential: Any = None,
        auto_delete_on_idle: timedelta | None = None,
    ) -> None:
        """A connection string, or a fully qualified namespace (``NAME.servicebus.windows.net``)
        with ``credential`` (default ``DefaultAzureCredential``). ``auto_delete_on_idle`` (at
        least 5 min) is set on the queues this bus creates: tests use it to leave none behind."""
        if connection_string:
            self.client = ServiceBusClient.from_connection_string(connection_string)
            self.admin = ServiceBusAdministrationClient.from_connection_string(connection_string)
        elif namespace:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            self.client = ServiceBusClient(namespace, credential)
            self.admin = ServiceBusAdministrationClient(namespace, credential)
        else:
            raise ValueError(
                "HPC_BUS=servicebus needs HPC_SERVICEBUS_CONNECTION_STRING or "
                "HPC_SERVICEBUS_NAMESPACE (NAME.servicebus.windows.net)"
            )
        self._sessions: dict[str, bool] = {}
        self._auto_delete_on_idle = auto_delete_on_idle

    def _requires_session(self, queue: str) -> bool:
        if queue not in self._sessions:
            try:
                self._sessions[queue] = bool(self.admin.get_queue(queue).requires_session)
            except ResourceNotFoundError as exc:
                raise QueueNotFound(queue) from exc
        return self._sessions[queue]

    def declare_queue(
        self,
        name: str,
        *,
        requires_session: bool = False,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        lock_duration_ms: int = DEFAULT_LOCK_DURATION_MS,
    ) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.admin.create_queue(
                name,
                requires_session=requires_session,
                max_delivery_count=max_delivery_count,
                lock_duration=lock_duration(lock_duration_ms),
                requires_duplicate_detection=True,
                dead_lettering_on_message_expiration=True,
                auto_delete_on_idle=self._auto_delete_on_idle,
            )
        self._sessions[name] = requires_session

    def send(self, queue: str, messages: OutgoingMessage | Sequence[OutgoingMessage]) -> None:
        batch = [messages] if isinstance(messages, OutgoingMessage) else list(messages)
        if self._requires_session(queue) and any(not m.session_id for m in batch):
            raise ValueError(f"queue {queue!r} requires a session id on every message")
        if not batch:
            return
        try:
            with self.client.get_queue_sender(queue) as sender:
                sender.send_messages([to_servicebus_message(m) for m in batch])
        except sbx.ServiceBusError as exc:
            raise _translate(exc) from exc

    def get_receiver(
        self, queue: str, *, sub_queue: Literal["deadletter"] | None = None
    ) -> Receiver:
        requires_session = self._requires_session(queue)
        if requires_session and sub_queue is None:
            raise ValueError(f"queue {queue!r} has sessions: use get_session_receiver")
        receiver = self.client.get_queue_receiver(
            queue,
            receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            sub_queue=ServiceBusSubQueue.DEAD_LETTER if sub_queue == "deadletter" else None,
            prefetch_count=0,
        )
        return ServiceBusQueueReceiver(queue, receiver)

    def get_session_receiver(
        self, queue: str, *, session_id: str | None = None, max_wait_ms: int = 0
    ) -> SessionReceiver:
        if not self._requires_session(queue):
            raise ValueError(f"queue {queue!r} has no sessions")
        receiver = self.client.get_queue_receiver(
            queue,
            session_id=session_id if session_id is not None else NEXT_AVAILABLE_SESSION,
            receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            max_wait_time=_wait_s(max_wait_ms),
            prefetch_count=0,
        )
        try:
            receiver.__enter__()  # accepts the session now
        except sbx.OperationTimeoutError as exc:
            receiver.close()
            raise NoSessionAvailable(queue) from exc
        except sbx.ServiceBusError as exc:
            receiver.close()
            raise _translate(exc) from exc
        return ServiceBusSessionReceiver(queue, receiver)

    def purge_session(self, queue: str, session_id: str) -> int:
        """Completes the session's active messages, then cancels its scheduled ones (found by
        peeking the session, which shows them with state SCHEDULED)."""
        purged = 0
        with self.get_session_receiver(queue, session_id=session_id) as receiver:
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
                    with self.client.get_queue_sender(queue) as sender:
                        sender.cancel_scheduled_messages(scheduled)
            except sbx.ServiceBusError as exc:
                raise _translate(exc) from exc
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
        self.client.close()
        self.admin.close()
