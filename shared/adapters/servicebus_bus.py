"""The Bus on Azure Service Bus (``azure-servicebus``): the port is shaped like the SDK,
so this adapter is a translation. Administration (declare, count, purge) is apart, in
:mod:`shared.adapters.servicebus_busadmin`: this side needs data-plane rights only
(Service Bus Data Sender and Receiver), never Manage.

- Messages map field for field (:func:`to_servicebus_message`,
  :func:`from_servicebus_message`); a message without an id gets ``uuid4().hex``
  so duplicate detection sees the same id on a resend.
- A list is sent in :class:`ServiceBusMessageBatch` objects, which measure each
  message as the broker will (the link's size limit, 256 KB on Standard); all the
  batches are built before the first is sent, so a message too large for any
  batch (:class:`MessageTooLargeError`) sends nothing.
- The adapter does not read queue properties (that needs Manage rights): a list that
  mixes messages with and without a session id is refused before sending, and a
  session queue's refusal of a message without one comes from the broker.
- Receivers are peek-lock with no prefetch; a received message's ``handle`` is the
  SDK message, settled through the receiver that got it.
- Session receivers accept their session at once (``NEXT_AVAILABLE_SESSION`` when no
  id is given), so a held session raises :class:`SessionLockedError` and no session
  :class:`NoSessionAvailable`, as the port says.

Connects with a connection string, or a fully qualified namespace and
``DefaultAzureCredential`` (managed identity in Azure).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from azure.core.exceptions import ResourceNotFoundError
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSender,
    ServiceBusSubQueue,
    TransportType,
)
from azure.servicebus import exceptions as sbx

from shared.ports.bus import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    Bus,
    BusError,
    MessageLockLostError,
    MessageTooLargeError,
    NoSessionAvailable,
    OutgoingMessage,
    QueueNotFound,
    ReceivedMessage,
    Receiver,
    SessionLockedError,
    SessionLockLostError,
    SessionReceiver,
    check_sizes,
)

MIN_WAIT_S = 0.5
"""Shortest receive wait sent to Service Bus (a zero wait would be an unbounded one)."""


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
        handle=message,
    )


def translate_error(exc: Exception) -> Exception:
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

    def receive(self, *, max_messages: int = 1, max_wait_ms: int = 0) -> list[ReceivedMessage]:
        try:
            got = self._receiver.receive_messages(
                max_message_count=max_messages, max_wait_time=_wait_s(max_wait_ms)
            )
        except sbx.ServiceBusError as exc:
            raise translate_error(exc) from exc
        return [from_servicebus_message(raw) for raw in got]

    @staticmethod
    def _raw(message: ReceivedMessage) -> ServiceBusReceivedMessage:
        raw = message.handle
        if not isinstance(raw, ServiceBusReceivedMessage):
            raise MessageLockLostError(f"message {message.message_id} was not received here")
        return raw

    def _settle(self, message: ReceivedMessage, action: str, **kwargs: Any) -> None:
        raw = self._raw(message)
        try:
            getattr(self._receiver, action)(raw, **kwargs)
        except sbx.ServiceBusError as exc:
            raise translate_error(exc) from exc

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
            raise translate_error(exc) from exc
        message.locked_until = _utc(until)
        return message.locked_until or until

    def close(self) -> None:
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
            raise translate_error(exc) from exc

    def get_session_state(self) -> bytes | None:
        try:
            state = self._session.get_state()
        except sbx.ServiceBusError as exc:
            raise translate_error(exc) from exc
        return bytes(state) if state else None

    def set_session_state(self, state: bytes | None) -> None:
        try:
            self._session.set_state(state)
        except sbx.ServiceBusError as exc:
            raise translate_error(exc) from exc


def connection_target(
    connection_string: str | None, namespace: str | None, credential: Any
) -> tuple[str, Any]:
    """``(connection string or namespace, credential)``; the credential only with a namespace."""
    if connection_string:
        return connection_string, None
    if namespace:
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return namespace, credential
    raise ValueError(
        "HPC_BUS=servicebus needs HPC_SERVICEBUS_CONNECTION_STRING or "
        "HPC_SERVICEBUS_NAMESPACE (NAME.servicebus.windows.net)"
    )


def build_batches(
    sender: ServiceBusSender,
    messages: Sequence[OutgoingMessage],
    *,
    max_bytes: int = MAX_BATCH_BYTES,
    max_messages: int = MAX_BATCH_MESSAGES,
) -> list[ServiceBusMessageBatch]:
    """Consecutive SDK batches of ``messages``, each within the broker's size (as the SDK
    measures it, capped at ``max_bytes``) and ``max_messages``. Raises MessageTooLargeError
    for a message that fits no batch."""
    batches: list[ServiceBusMessageBatch] = []
    batch = sender.create_message_batch(max_size_in_bytes=max_bytes)
    for index, message in enumerate(messages):
        sb = to_servicebus_message(message)
        if len(batch) >= max_messages:
            batches.append(batch)
            batch = sender.create_message_batch(max_size_in_bytes=max_bytes)
        try:
            batch.add_message(sb)
            continue
        except sbx.MessageSizeExceededError:
            if len(batch) == 0:
                raise MessageTooLargeError(
                    f"message {index} ({sb.message_id}) does not fit a Service Bus batch of "
                    f"{batch.max_size_in_bytes} bytes"
                ) from None
        batches.append(batch)
        batch = sender.create_message_batch(max_size_in_bytes=max_bytes)
        try:
            batch.add_message(sb)
        except sbx.MessageSizeExceededError:
            raise MessageTooLargeError(
                f"message {index} ({sb.message_id}) does not fit a Service Bus batch of "
                f"{batch.max_size_in_bytes} bytes"
            ) from None
    if len(batch):
        batches.append(batch)
    return batches


class ServiceBusBus(Bus):
    def __init__(
        self,
        *,
        connection_string: str | None = None,
        namespace: str | None = None,
        credential: Any = None,
        websockets: bool = False,
    ) -> None:
        """A connection string, or a fully qualified namespace (``NAME.servicebus.windows.net``)
        with ``credential`` (default ``DefaultAzureCredential``). ``websockets``: AMQP over
        WebSockets on port 443 (outbound HTTPS only, as an on-prem agent behind a firewall)."""
        target, credential = connection_target(connection_string, namespace, credential)
        transport = TransportType.AmqpOverWebsocket if websockets else TransportType.Amqp
        self.client = (
            ServiceBusClient(target, credential, transport_type=transport)
            if credential is not None
            else ServiceBusClient.from_connection_string(target, transport_type=transport)
        )

    def send(self, queue: str, messages: OutgoingMessage | Sequence[OutgoingMessage]) -> None:
        batch = [messages] if isinstance(messages, OutgoingMessage) else list(messages)
        if not batch:
            return
        with_session = {m.session_id is not None for m in batch}
        if len(with_session) > 1:
            raise ValueError(
                f"queue {queue!r}: some messages have a session id and some do not; a session "
                "queue needs one on every message"
            )
        check_sizes(batch)
        try:
            with self.client.get_queue_sender(queue) as sender:
                for part in build_batches(sender, batch):
                    sender.send_messages(part)
        except sbx.ServiceBusError as exc:
            if isinstance(exc, sbx.MessageSizeExceededError):
                raise MessageTooLargeError(str(exc)) from exc
            raise translate_error(exc) from exc

    def get_receiver(
        self, queue: str, *, sub_queue: Literal["deadletter"] | None = None
    ) -> Receiver:
        """Opened lazily by the SDK: an unknown queue raises QueueNotFound on the first receive."""
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
            raise translate_error(exc) from exc
        return ServiceBusSessionReceiver(queue, receiver)

    def close(self) -> None:
        self.client.close()
