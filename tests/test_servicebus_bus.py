"""The Service Bus adapter without a namespace: message mapping both ways (through the SDK's
own message classes), settings and wiring. The Bus contract suite runs on Service Bus only
when SERVICEBUS_CONNECTION_STRING or SERVICEBUS_NAMESPACE is set (tests/contract)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
)
from azure.servicebus._pyamqp.message import Header  # the SDK's own AMQP types (test only)
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

from shared.adapters.servicebus_bus import (
    ServiceBusBus,
    ServiceBusQueueReceiver,
    build_batches,
    from_servicebus_message,
    to_servicebus_message,
)
from shared.adapters.servicebus_busadmin import (
    DEFAULT_MESSAGE_TTL,
    DUPLICATE_DETECTION_WINDOW,
    MAX_LOCK_MS,
    MIN_LOCK_MS,
    ServiceBusAdmin,
    lock_duration,
    queue_options,
)
from shared.ports.bus import (
    MAX_BATCH_BYTES,
    MessageLockLostError,
    MessageTooLargeError,
    OutgoingMessage,
    ReceivedMessage,
)
from shared.settings import Settings

FAKE_CONNECTION = (
    "Endpoint=sb://example.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=bm90LWEta2V5"
)


def _received(
    sent: ServiceBusMessage, *, prior_deliveries: int = 0, sequence: int = 42
) -> ServiceBusReceivedMessage:
    """What a receiver would hand back for ``sent``: its AMQP message plus broker annotations."""
    amqp = PyamqpTransport.to_outgoing_amqp_message(sent.raw_amqp_message)
    enqueued_ms = int(datetime(2030, 1, 1, 12, tzinfo=UTC).timestamp() * 1000)
    amqp = amqp._replace(
        header=amqp.header._replace(delivery_count=prior_deliveries)
        if amqp.header
        else Header(delivery_count=prior_deliveries),
        message_annotations={
            **(amqp.message_annotations or {}),
            b"x-opt-sequence-number": sequence,
            b"x-opt-enqueued-time": enqueued_ms,
            b"x-opt-locked-until": enqueued_ms + 30_000,
        },
    )
    return ServiceBusReceivedMessage(
        amqp,
        receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
        frame=None,
        receiver=None,
        lock_token=uuid.UUID(int=7),
    )


def test_outgoing_message_maps_to_every_service_bus_field() -> None:
    due = datetime(2030, 1, 1, tzinfo=UTC)
    sb = to_servicebus_message(
        OutgoingMessage.json(
            {"task": 7},
            session_id="node-1",
            message_id="assign-7-0",
            subject="assign",
            application_properties={"attempt": 2, "node": "node-1"},
            scheduled_enqueue_time=due,
            time_to_live_ms=90_000,
        )
    )
    assert isinstance(sb, ServiceBusMessage)
    assert b"".join(sb.body) == b'{"task":7}'
    assert sb.message_id == "assign-7-0"
    assert sb.session_id == "node-1"
    assert sb.subject == "assign"
    assert sb.content_type == "application/json"
    assert sb.application_properties == {"attempt": 2, "node": "node-1"}
    assert sb.scheduled_enqueue_time_utc == due
    assert sb.time_to_live == timedelta(seconds=90)


def test_outgoing_message_without_id_or_options_gets_a_uuid_hex_id_and_no_extras() -> None:
    first, second = (to_servicebus_message(OutgoingMessage(body=b"x")) for _ in range(2))
    assert first.message_id != second.message_id
    assert uuid.UUID(hex=str(first.message_id)).hex == first.message_id
    assert first.session_id is None and first.time_to_live is None
    assert first.scheduled_enqueue_time_utc is None
    assert not first.application_properties


def test_received_message_maps_back_with_decoded_properties_and_counts_from_1() -> None:
    sent = to_servicebus_message(
        OutgoingMessage.json(
            {"task": 7},
            session_id="node-1",
            message_id="m-1",
            subject="run",
            application_properties={"attempt": 2, "node": "n1"},
            time_to_live_ms=60_000,
        )
    )
    message = from_servicebus_message(_received(sent))
    assert message.json() == {"task": 7}
    assert message.message_id == "m-1"
    assert message.session_id == "node-1"
    assert message.subject == "run"
    assert message.content_type == "application/json"
    assert message.application_properties == {"attempt": 2, "node": "n1"}
    assert message.sequence_number == 42
    assert message.delivery_count == 1  # first delivery: 0 prior ones on the AMQP header
    assert message.enqueued_time == datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert message.locked_until == datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
    assert message.lock_token == str(uuid.UUID(int=7))
    assert message.enqueued_time.tzinfo is not None
    assert isinstance(message.handle, ServiceBusReceivedMessage)  # what settling needs


def test_redelivered_message_counts_its_deliveries() -> None:
    sent = to_servicebus_message(OutgoingMessage(body=b"again", message_id="m"))
    assert from_servicebus_message(_received(sent, prior_deliveries=2)).delivery_count == 3


def test_bytes_properties_as_the_sdk_returns_them_are_decoded() -> None:
    sent = to_servicebus_message(OutgoingMessage(body=b"x", message_id="m"))
    sent.application_properties = {b"node": b"n1", b"attempt": 3}
    assert from_servicebus_message(_received(sent)).application_properties == {
        "node": "n1",
        "attempt": 3,
    }


@pytest.mark.parametrize(
    ("asked_ms", "kept_ms"),
    [(100, MIN_LOCK_MS), (30_000, 30_000), (3_600_000, MAX_LOCK_MS)],
)
def test_lock_durations_are_clamped_to_what_service_bus_allows(asked_ms: int, kept_ms: int) -> None:
    assert lock_duration(asked_ms) == timedelta(milliseconds=kept_ms)


def test_settings_choose_the_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().bus == "sqlite"
    monkeypatch.setenv("HPC_BUS", "servicebus")
    monkeypatch.setenv("HPC_SERVICEBUS_NAMESPACE", "hpc.servicebus.windows.net")
    monkeypatch.setenv("HPC_SERVICEBUS_CONNECTION_STRING", FAKE_CONNECTION)
    settings = Settings()
    assert settings.bus == "servicebus"
    assert settings.servicebus_namespace == "hpc.servicebus.windows.net"
    assert settings.servicebus_connection_string == FAKE_CONNECTION
    monkeypatch.setenv("HPC_BUS", "rabbitmq")
    with pytest.raises(ValueError):
        Settings()


def test_a_function_app_reads_the_namespace_from_its_triggers_connection_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One setting names the namespace in a Function App: the one its Service Bus triggers
    read; HPC_SERVICEBUS_NAMESPACE (an agent's) still wins when both are set."""
    monkeypatch.delenv("HPC_SERVICEBUS_NAMESPACE", raising=False)
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "fa.servicebus.windows.net")
    assert Settings().servicebus_namespace == "fa.servicebus.windows.net"
    monkeypatch.setenv("HPC_SERVICEBUS_NAMESPACE", "agent.servicebus.windows.net")
    assert Settings().servicebus_namespace == "agent.servicebus.windows.net"
    assert Settings(servicebus_namespace="x.servicebus.windows.net").servicebus_namespace == (
        "x.servicebus.windows.net"
    )


def test_bus_and_admin_need_a_connection_string_or_a_namespace() -> None:
    with pytest.raises(ValueError, match="HPC_SERVICEBUS_CONNECTION_STRING"):
        ServiceBusBus()
    with pytest.raises(ValueError, match="HPC_SERVICEBUS_NAMESPACE"):
        ServiceBusAdmin()


def test_bus_opens_clients_without_connecting() -> None:
    by_string = ServiceBusBus(connection_string=FAKE_CONNECTION)
    assert by_string.client.fully_qualified_namespace == "example.servicebus.windows.net"
    by_string.close()

    class Credential:
        def get_token(self, *scopes: str, **kwargs: object) -> None:
            raise AssertionError("no token is asked for before a call")

    by_identity = ServiceBusBus(namespace="hpc.servicebus.windows.net", credential=Credential())
    assert by_identity.client.fully_qualified_namespace == "hpc.servicebus.windows.net"
    by_identity.close()


def test_websockets_transport_is_chosen_by_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """HPC_SERVICEBUS_TRANSPORT=websockets: AMQP over WebSockets on 443 (outbound HTTPS
    only, the on-prem agent's firewall); the default is plain AMQP on 5671."""
    from azure.servicebus import TransportType

    assert Settings().servicebus_transport == "amqp"
    monkeypatch.setenv("HPC_SERVICEBUS_TRANSPORT", "websockets")
    assert Settings().servicebus_transport == "websockets"
    monkeypatch.setenv("HPC_SERVICEBUS_TRANSPORT", "http")
    with pytest.raises(ValueError):
        Settings()
    plain = ServiceBusBus(connection_string=FAKE_CONNECTION)
    over_443 = ServiceBusBus(connection_string=FAKE_CONNECTION, websockets=True)
    assert plain.client._config.transport_type is TransportType.Amqp
    assert over_443.client._config.transport_type is TransportType.AmqpOverWebsocket
    plain.close()
    over_443.close()


def test_admin_opens_clients_without_connecting() -> None:
    admin = ServiceBusAdmin(connection_string=FAKE_CONNECTION)
    assert admin.admin.fully_qualified_namespace == "example.servicebus.windows.net"
    admin.close()


def test_queues_are_created_with_sessions_locks_duplicate_detection_and_expiry() -> None:
    options = queue_options(requires_session=True, max_delivery_count=3, lock_duration_ms=100)
    assert options["requires_session"] is True
    assert options["max_delivery_count"] == 3
    assert options["lock_duration"] == timedelta(milliseconds=MIN_LOCK_MS)
    assert options["requires_duplicate_detection"] is True
    assert options["duplicate_detection_history_time_window"] == DUPLICATE_DETECTION_WINDOW
    assert options["dead_lettering_on_message_expiration"] is True
    assert options["default_message_time_to_live"] == DEFAULT_MESSAGE_TTL
    with pytest.raises(ValueError):
        queue_options(requires_session=False, max_delivery_count=0, lock_duration_ms=1000)


class _Sender:
    """Hands out the SDK's own batches, which measure messages as the broker will."""

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch(max_size_in_bytes=max_size_in_bytes)


def test_sends_are_split_into_sdk_batches_by_bytes_and_by_count() -> None:
    large = [OutgoingMessage(body=b"x" * 100_000, message_id=str(i)) for i in range(5)]
    batches = build_batches(_Sender(), large)  # type: ignore[arg-type]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(b.size_in_bytes <= MAX_BATCH_BYTES for b in batches)
    small = [OutgoingMessage(body=b"x") for _ in range(25)]
    assert [len(b) for b in build_batches(_Sender(), small, max_messages=10)] == [10, 10, 5]  # type: ignore[arg-type]
    assert build_batches(_Sender(), []) == []  # type: ignore[arg-type]


def test_a_message_no_batch_can_hold_is_refused() -> None:
    with pytest.raises(MessageTooLargeError, match="does not fit"):
        build_batches(_Sender(), [OutgoingMessage(body=b"x" * MAX_BATCH_BYTES)])  # type: ignore[arg-type]


def test_bus_refuses_a_large_or_mixed_send_before_connecting() -> None:
    bus = ServiceBusBus(connection_string=FAKE_CONNECTION)
    with pytest.raises(MessageTooLargeError):
        bus.send("q", OutgoingMessage(body=b"x" * (256 * 1024)))
    with pytest.raises(ValueError, match="session id"):
        bus.send("q", [OutgoingMessage(body=b"a", session_id="s"), OutgoingMessage(body=b"b")])
    bus.close()


def test_a_message_received_elsewhere_cannot_be_settled_here() -> None:
    class NoReceiver:
        def complete_message(self, message: object) -> None:
            raise AssertionError("must not reach the SDK")

    receiver = ServiceBusQueueReceiver("q", NoReceiver())  # type: ignore[arg-type]
    foreign = ReceivedMessage(
        body=b"x",
        message_id="m",
        sequence_number=1,
        delivery_count=1,
        enqueued_time=datetime(2030, 1, 1, tzinfo=UTC),
        handle=(1, "token"),  # the embedded bus's handle
    )
    with pytest.raises(MessageLockLostError):
        receiver.complete(foreign)
