"""The Bus contract, queues and messages: declare, send, receive, and the size limits.

Part of the Bus contract (tests/contract/bus_fixtures.py says how time and waiting work).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from shared.ports.bus import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    Bus,
    BusError,
    MessageTooLargeError,
    OutgoingMessage,
    QueueNotFound,
    split_batches,
)
from shared.ports.busadmin import BusAdmin
from tests.contract.bus_fixtures import bodies, msg, new_queue, receive_all
from tests.contract.conftest import BusClock

# --- queues and messages -------------------------------------------------------


def test_declaring_a_queue_twice_is_harmless_and_keeps_its_messages(
    bus: Bus, admin: BusAdmin
) -> None:
    queue = new_queue(admin)
    bus.send(queue, msg("kept"))
    admin.declare_queue(queue)
    assert admin.count(queue) == 1


def test_undeclared_queue_raises_queue_not_found(bus: Bus, admin: BusAdmin) -> None:
    with pytest.raises(QueueNotFound):
        bus.send("never-declared", msg("x"))
    with pytest.raises(QueueNotFound):
        bus.get_receiver("never-declared").receive()  # refused on opening or on receiving
    with pytest.raises(QueueNotFound):
        admin.count("never-declared")
    with pytest.raises(QueueNotFound):
        admin.purge_session("never-declared", "s")


def test_received_message_carries_what_was_sent(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin)
    before = bus_clock.now()
    bus.send(
        queue,
        OutgoingMessage.json(
            {"task": 7},
            message_id="m-1",
            subject="run",
            application_properties={"attempt": 2, "node": "n1"},
        ),
    )
    [message] = bus.get_receiver(queue).receive()
    assert message.json() == {"task": 7}
    assert message.message_id == "m-1"
    assert message.subject == "run"
    assert message.content_type == "application/json"
    assert message.application_properties == {"attempt": 2, "node": "n1"}
    assert message.delivery_count == 1
    assert message.lock_token
    assert message.handle is not None  # what the receiver settles it by
    assert message.locked_until is not None and message.locked_until > before
    # Service Bus stamps with its own clock: allow it to differ from this machine's a little.
    skew = timedelta(seconds=5)
    assert before - skew <= message.enqueued_time <= bus_clock.now() + skew


def test_default_message_ids_are_unique_uuid_hex(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    bus.send(queue, [msg("a"), msg("b")])
    ids = [m.message_id for m in bus.get_receiver(queue).receive(max_messages=2)]
    assert len(set(ids)) == 2
    assert all(uuid.UUID(hex=i).hex == i for i in ids)


def test_receive_returns_up_to_max_messages_in_send_order(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    for i in range(5):
        bus.send(queue, msg(str(i)))
    receiver = bus.get_receiver(queue)
    first = receiver.receive(max_messages=3)
    assert bodies(first) == ["0", "1", "2"]
    assert [m.sequence_number for m in first] == sorted(m.sequence_number for m in first)
    assert bodies(receiver.receive(max_messages=10)) == ["3", "4"]


def test_batch_is_sent_in_order(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    bus.send(queue, [msg(str(i)) for i in range(100)])
    assert admin.count(queue) == 100
    assert bodies(receive_all(bus.get_receiver(queue))) == [str(i) for i in range(100)]


def test_batch_send_is_all_or_none(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin, requires_session=True)
    batch = [msg("ok", session_id="s"), msg("no session id"), msg("ok", session_id="s")]
    with pytest.raises((ValueError, BusError)):
        bus.send(queue, batch)
    assert admin.count(queue) == 0


def test_count_includes_active_scheduled_and_locked_messages(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin)
    later = bus_clock.now() + timedelta(hours=1)
    bus.send(queue, [msg("locked"), msg("active"), msg("scheduled", scheduled_enqueue_time=later)])
    bus.get_receiver(queue).receive()
    assert admin.count(queue) == 3
    assert admin.count(queue, sub_queue="deadletter") == 0


# --- sizes ----------------------------------------------------------------------


def test_message_over_256_kb_is_refused_and_nothing_is_sent(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    too_big = msg("x" * MAX_MESSAGE_BYTES, message_id="big")
    with pytest.raises(MessageTooLargeError, match=str(MAX_MESSAGE_BYTES)):
        bus.send(queue, [msg("small"), too_big])
    with pytest.raises(MessageTooLargeError):
        bus.send(queue, too_big)
    assert admin.count(queue) == 0


def test_message_under_the_limit_is_delivered_whole(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    body = bytes(range(256)) * 800  # 200 KB
    bus.send(queue, OutgoingMessage(body=body))
    [message] = bus.get_receiver(queue).receive()
    assert message.body == body


def test_list_over_the_byte_budget_is_sent_whole_and_in_order(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    sent = [msg(f"{i:03d}" + "x" * 100_000) for i in range(8)]  # 800 KB: several batches
    assert sum(m.size_bytes() for m in sent) > 3 * MAX_BATCH_BYTES
    bus.send(queue, sent)
    assert admin.count(queue) == len(sent)
    received = receive_all(bus.get_receiver(queue))
    assert [m.body[:3] for m in received] == [f"{i:03d}".encode() for i in range(8)]


def test_batches_keep_order_and_both_budgets() -> None:
    small = [msg(str(i)) for i in range(MAX_BATCH_MESSAGES + 5)]
    by_count = split_batches(small, max_bytes=1 << 30)
    assert [len(b) for b in by_count] == [MAX_BATCH_MESSAGES, 5]
    assert [m for b in split_batches(small) for m in b] == small  # bytes first, at the default
    large = [msg("x" * 100_000) for _ in range(5)]
    by_bytes = split_batches(large)
    assert [len(b) for b in by_bytes] == [2, 2, 1]
    assert all(sum(m.size_bytes() for m in b) <= MAX_BATCH_BYTES for b in by_bytes)
    assert [m for b in by_bytes for m in b] == large
    assert split_batches([]) == []
