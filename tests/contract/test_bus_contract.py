"""The Bus contract: every adapter of :class:`shared.ports.bus.Bus` passes this suite.

Tests use only the ports (Bus and BusAdmin). Adapters come from the ``bus`` /
``open_bus`` / ``bus_spec`` / ``admin`` fixtures (``conftest.py``). Each test
declares its own uniquely named queues, so the suite can also run against a
shared namespace.

Time: locks, schedules and expiry are driven through ``bus_clock``. The embedded
bus takes a clock, and the suite moves it by hand, so nothing sleeps and a slow
machine changes nothing; on Service Bus (real time) ``advance`` sleeps, so the
durations here (10 s locks, 2 s margins) are chosen to hold there with room.
Waiting: tests wait on conditions through the port itself (a receive or an
accept with ``max_wait_ms`` returns as soon as the condition holds); no test
asserts a latency, only that a wait ended because its condition held, well
before its ``max_wait_ms``.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from shared.ports.bus import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_DELIVERY_COUNT_EXCEEDED,
    MAX_MESSAGE_BYTES,
    TTL_EXPIRED,
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
    split_batches,
)
from shared.ports.busadmin import BusAdmin
from tests.contract.conftest import BusClock, BusSpec, OpenBus

LOCK_MS = 10_000
"""Lock duration of queues whose tests let locks run out or renew them (Service Bus: 5 s-5 min)."""
LOCK_S = LOCK_MS / 1000
MARGIN_S = 2.0
"""Time moved past an expiry, so real time (Service Bus) has passed it for sure."""
TTL_MS = 5_000
SCHEDULE_S = 5.0
WAIT_MS = 10_000
"""Upper bound for waits that end as soon as their condition holds."""
LONG_WAIT_MS = 60_000
"""A wait that must end early, because a message arrives."""


def new_queue(admin: BusAdmin, **options: Any) -> str:
    name = f"q-{uuid.uuid4().hex[:12]}"
    admin.declare_queue(name, **options)
    return name


def msg(body: str, **kwargs: Any) -> OutgoingMessage:
    return OutgoingMessage(body=body.encode(), **kwargs)


def bodies(messages: list[ReceivedMessage]) -> list[str]:
    return [m.body.decode() for m in messages]


def receive_all(receiver: Receiver) -> list[ReceivedMessage]:
    """Receive and complete until nothing is available."""
    received: list[ReceivedMessage] = []
    while batch := receiver.receive(max_messages=10):
        for message in batch:
            receiver.complete(message)
        received += batch
    return received


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


# --- peek-lock ------------------------------------------------------------------


def test_locked_message_is_invisible_to_other_receivers(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    bus.send(queue, msg("only"))
    assert bodies(bus.get_receiver(queue).receive()) == ["only"]
    assert bus.get_receiver(queue).receive(max_wait_ms=50) == []


def test_completed_message_is_gone(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    bus.send(queue, msg("done"))
    receiver = bus.get_receiver(queue)
    [message] = receiver.receive()
    receiver.complete(message)
    assert admin.count(queue) == 0
    assert receiver.receive() == []


def test_message_not_completed_is_redelivered_after_lock_expiry(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin, lock_duration_ms=LOCK_MS)
    bus.send(queue, msg("retry me"))
    [first] = bus.get_receiver(queue).receive()
    bus_clock.advance(LOCK_S / 2)
    assert bus.get_receiver(queue).receive() == []  # still locked
    bus_clock.advance(LOCK_S / 2 + MARGIN_S)
    [again] = bus.get_receiver(queue).receive(max_wait_ms=WAIT_MS)
    assert again.message_id == first.message_id
    assert again.delivery_count == 2


def test_settling_after_lock_expiry_raises_message_lock_lost(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin, lock_duration_ms=LOCK_MS)
    bus.send(queue, [msg("a"), msg("b")])
    receiver = bus.get_receiver(queue)
    expired, also_expired = receiver.receive(max_messages=2)
    bus_clock.advance(LOCK_S + MARGIN_S)  # let the locks run out
    with pytest.raises(MessageLockLostError):
        receiver.complete(expired)
    with pytest.raises(MessageLockLostError):
        receiver.renew_message_lock(also_expired)
    assert admin.count(queue) == 2


def test_settling_twice_raises_message_lock_lost(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    bus.send(queue, msg("once"))
    receiver = bus.get_receiver(queue)
    [message] = receiver.receive()
    receiver.complete(message)
    with pytest.raises(MessageLockLostError):
        receiver.complete(message)
    with pytest.raises(MessageLockLostError):
        receiver.abandon(message)


def test_settling_an_earlier_delivery_raises_message_lock_lost(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    bus.send(queue, msg("twice"))
    receiver = bus.get_receiver(queue)
    [first] = receiver.receive()
    receiver.abandon(first)
    [second] = receiver.receive()
    with pytest.raises(MessageLockLostError):
        receiver.complete(first)
    receiver.complete(second)


def test_renewed_lock_outlives_the_original_lock(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin, lock_duration_ms=LOCK_MS)
    bus.send(queue, msg("long task"))
    receiver = bus.get_receiver(queue)
    [message] = receiver.receive()
    original = message.locked_until
    assert original is not None
    bus_clock.advance(LOCK_S / 2)  # half of the lock used up
    renewed = receiver.renew_message_lock(message)
    assert renewed > original
    bus_clock.advance(LOCK_S / 2 + MARGIN_S)  # past the original expiry, inside the renewed one
    assert bus.get_receiver(queue).receive() == []  # a renewal that did nothing frees it
    receiver.complete(message)
    assert admin.count(queue) == 0


def test_abandoned_message_is_redelivered_at_once_with_higher_delivery_count(
    bus: Bus, admin: BusAdmin
) -> None:
    queue = new_queue(admin)
    bus.send(queue, msg("again"))
    receiver = bus.get_receiver(queue)
    [first] = receiver.receive()
    receiver.abandon(first)
    [second] = bus.get_receiver(queue).receive()
    assert second.message_id == first.message_id
    assert second.delivery_count == 2


# --- dead letters ---------------------------------------------------------------


def test_dead_letter_after_max_deliveries_has_reason(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin, max_delivery_count=3)
    bus.send(queue, msg("poison", message_id="p"))
    receiver = bus.get_receiver(queue)
    for delivery in (1, 2, 3):
        [message] = receiver.receive()
        assert message.delivery_count == delivery
        receiver.abandon(message)
    assert receiver.receive() == []
    assert admin.count(queue) == 0
    assert admin.count(queue, sub_queue="deadletter") == 1
    [dead] = bus.get_receiver(queue, sub_queue="deadletter").receive()
    assert dead.message_id == "p"
    assert dead.body == b"poison"
    assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED


def test_message_whose_last_lock_expires_is_dead_lettered(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin, max_delivery_count=1, lock_duration_ms=LOCK_MS)
    bus.send(queue, msg("abandoned by a crash", message_id="c"))
    assert len(bus.get_receiver(queue).receive()) == 1  # never settled
    bus_clock.advance(LOCK_S + MARGIN_S)
    assert bus.get_receiver(queue).receive() == []
    [dead] = bus.get_receiver(queue, sub_queue="deadletter").receive(max_wait_ms=WAIT_MS)
    assert dead.message_id == "c"
    assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED


def test_manual_dead_letter_keeps_reason_and_description(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    bus.send(queue, msg("bad", message_id="b", application_properties={"k": "v"}))
    receiver = bus.get_receiver(queue)
    [message] = receiver.receive()
    receiver.dead_letter(message, reason="InvalidSpec", error_description="no command")
    assert admin.count(queue) == 0
    [dead] = bus.get_receiver(queue, sub_queue="deadletter").receive()
    assert (dead.message_id, dead.body, dead.application_properties) == ("b", b"bad", {"k": "v"})
    assert dead.dead_letter_reason == "InvalidSpec"
    assert dead.dead_letter_error_description == "no command"


def test_dead_letters_are_peek_locked_and_completed_like_messages(
    bus: Bus, admin: BusAdmin
) -> None:
    queue = new_queue(admin)
    bus.send(queue, msg("bad"))
    receiver = bus.get_receiver(queue)
    receiver.dead_letter(receiver.receive()[0], reason="Bad")
    dead_letters = bus.get_receiver(queue, sub_queue="deadletter")
    [dead] = dead_letters.receive()
    assert bus.get_receiver(queue, sub_queue="deadletter").receive() == []
    dead_letters.abandon(dead)
    [dead] = dead_letters.receive()
    dead_letters.complete(dead)
    assert admin.count(queue, sub_queue="deadletter") == 0


# --- scheduling and expiry -------------------------------------------------------


def test_scheduled_message_is_invisible_until_due(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin)
    due = bus_clock.now() + timedelta(seconds=SCHEDULE_S)
    bus.send(queue, msg("later", scheduled_enqueue_time=due))
    bus.send(queue, msg("now"))
    receiver = bus.get_receiver(queue)
    [now] = receiver.receive(max_messages=2)
    assert now.body == b"now"
    assert admin.count(queue) == 2
    bus_clock.advance(SCHEDULE_S / 2)
    assert receiver.receive() == []  # not due yet
    bus_clock.advance(SCHEDULE_S / 2 + MARGIN_S)
    [later] = receiver.receive(max_wait_ms=WAIT_MS)
    assert later.body == b"later"
    assert later.scheduled_enqueue_time is not None
    assert abs((later.scheduled_enqueue_time - due).total_seconds()) < 0.01


def test_expired_message_is_not_delivered_and_is_dead_lettered(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin)
    bus.send(queue, [msg("stale", message_id="s", time_to_live_ms=TTL_MS), msg("fresh")])
    bus_clock.advance(TTL_MS / 1000 + MARGIN_S)
    assert bodies(bus.get_receiver(queue).receive(max_messages=2, max_wait_ms=WAIT_MS)) == ["fresh"]
    [dead] = bus.get_receiver(queue, sub_queue="deadletter").receive(max_wait_ms=WAIT_MS)
    assert dead.message_id == "s"
    assert dead.dead_letter_reason == TTL_EXPIRED


def test_message_within_its_time_to_live_is_delivered(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin)
    bus.send(queue, msg("fresh", time_to_live_ms=60_000))
    bus_clock.advance(MARGIN_S)
    [message] = bus.get_receiver(queue).receive()
    assert message.expires_at is not None
    assert message.expires_at > bus_clock.now() + timedelta(seconds=50)


# --- waiting ----------------------------------------------------------------------


def test_receive_on_empty_queue_returns_nothing_after_max_wait_ms(
    bus: Bus, admin: BusAdmin
) -> None:
    queue = new_queue(admin)
    receiver = bus.get_receiver(queue)
    assert receiver.receive(max_wait_ms=0) == []
    started = time.monotonic()
    assert receiver.receive(max_wait_ms=600) == []
    elapsed = time.monotonic() - started
    assert elapsed >= 0.55  # waited (a slow machine only makes this longer)
    assert elapsed < WAIT_MS / 1000  # and gave up


def _send_later(bus: Bus, queue: str, message: OutgoingMessage, delay_s: float) -> threading.Thread:
    def send() -> None:
        time.sleep(delay_s)  # the sender's own pace, not a wait for a condition
        bus.send(queue, message)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def _ended_early(started: float) -> bool:
    """A wait of LONG_WAIT_MS ended because its condition held, not because it ran out."""
    return time.monotonic() - started < LONG_WAIT_MS / 1000 / 2


def test_receive_returns_when_a_message_is_sent_not_when_the_wait_ends(
    bus: Bus, admin: BusAdmin
) -> None:
    queue = new_queue(admin)
    thread = _send_later(bus, queue, msg("wake"), 0.05)
    started = time.monotonic()
    [message] = bus.get_receiver(queue).receive(max_wait_ms=LONG_WAIT_MS)
    thread.join()
    assert message.body == b"wake"
    assert _ended_early(started)


def test_receive_sees_a_message_sent_through_another_instance(
    open_bus: OpenBus, admin: BusAdmin
) -> None:
    receiving, sending = open_bus(), open_bus()
    queue = new_queue(admin)
    thread = _send_later(sending, queue, msg("from elsewhere"), 0.05)
    started = time.monotonic()
    [message] = receiving.get_receiver(queue).receive(max_wait_ms=LONG_WAIT_MS)
    thread.join()
    assert message.body == b"from elsewhere"
    assert _ended_early(started)


# --- concurrency -------------------------------------------------------------------


def test_concurrent_threads_never_receive_the_same_message(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    bus.send(queue, [msg(str(i)) for i in range(300)])
    received: list[list[str]] = [[] for _ in range(4)]

    def drain(index: int) -> None:
        received[index] = bodies(receive_all(bus.get_receiver(queue)))

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [body for part in received for body in part]
    assert sorted(everything, key=int) == [str(i) for i in range(300)]


def _drain_in_process(
    spec: BusSpec, queue: str, ready: Any, results: Any
) -> None:  # runs in a child process
    bus = spec()
    receiver = bus.get_receiver(queue)
    ready.wait()
    ids: list[str] = []
    while batch := receiver.receive(max_messages=5, max_wait_ms=300):
        for message in batch:
            receiver.complete(message)
            ids.append(message.message_id)
    results.put(ids)
    bus.close()


def test_two_processes_never_receive_the_same_message(
    bus: Bus, admin: BusAdmin, bus_spec: BusSpec
) -> None:
    queue = new_queue(admin)
    expected = [f"m{i}" for i in range(500)]
    bus.send(queue, [msg("x", message_id=i) for i in expected])
    context = multiprocessing.get_context("spawn")  # separate interpreters, like agents
    ready, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_drain_in_process, args=(bus_spec, queue, ready, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    parts = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0
    delivered = parts[0] + parts[1]
    assert sorted(delivered) == sorted(expected)  # each one exactly once
    assert all(parts), "both processes should have taken part"
    assert admin.count(queue) == 0


# --- sessions ----------------------------------------------------------------------


def test_session_receiver_gets_only_its_sessions_messages_in_order(
    bus: Bus, admin: BusAdmin
) -> None:
    queue = new_queue(admin, requires_session=True)
    for i in range(10):
        for session in ("a", "b", "c"):
            bus.send(queue, msg(f"{session}{i}", session_id=session))
    with bus.get_session_receiver(queue, session_id="b") as receiver:
        received = receive_all(receiver)
    assert bodies(received) == [f"b{i}" for i in range(10)]
    assert {m.session_id for m in received} == {"b"}
    assert admin.count(queue) == 20


def test_held_session_cannot_be_accepted_twice(open_bus: OpenBus, admin: BusAdmin) -> None:
    first, second = open_bus(), open_bus()
    queue = new_queue(admin, requires_session=True)
    first.send(queue, msg("x", session_id="node-1"))
    with first.get_session_receiver(queue, session_id="node-1"):
        with pytest.raises(SessionLockedError):
            second.get_session_receiver(queue, session_id="node-1")
        with pytest.raises(SessionLockedError):
            first.get_session_receiver(queue, session_id="node-1")


def test_named_session_can_be_accepted_without_messages(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin, requires_session=True)
    with bus.get_session_receiver(queue, session_id="idle-node") as receiver:
        assert receiver.session_id == "idle-node"
        assert receiver.receive(max_wait_ms=20) == []


def test_next_available_session_skips_held_sessions(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin, requires_session=True)
    bus.send(queue, [msg("a", session_id="a"), msg("b", session_id="b")])
    with (
        bus.get_session_receiver(queue, session_id="a"),
        bus.get_session_receiver(queue) as other,
    ):
        assert other.session_id == "b"
        assert bodies(other.receive()) == ["b"]
        with pytest.raises(NoSessionAvailable):
            bus.get_session_receiver(queue)


def test_next_available_session_ignores_sessions_without_available_messages(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin, requires_session=True)
    later = bus_clock.now() + timedelta(hours=1)
    bus.send(queue, msg("later", session_id="scheduled", scheduled_enqueue_time=later))
    with bus.get_session_receiver(queue, session_id="empty"):
        pass
    with pytest.raises(NoSessionAvailable):
        bus.get_session_receiver(queue)


def test_no_session_available_is_raised_after_max_wait_ms(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin, requires_session=True)
    started = time.monotonic()
    with pytest.raises(NoSessionAvailable):
        bus.get_session_receiver(queue, max_wait_ms=600)
    elapsed = time.monotonic() - started
    assert 0.55 <= elapsed < WAIT_MS / 1000


def test_next_available_session_is_accepted_when_a_message_arrives(
    bus: Bus, admin: BusAdmin
) -> None:
    queue = new_queue(admin, requires_session=True)
    thread = _send_later(bus, queue, msg("hello", session_id="late"), 0.05)
    started = time.monotonic()
    with bus.get_session_receiver(queue, max_wait_ms=LONG_WAIT_MS) as receiver:
        assert receiver.session_id == "late"
    thread.join()
    assert _ended_early(started)


def test_session_messages_locked_by_the_holder_go_to_no_one_else(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin, requires_session=True)
    bus.send(queue, [msg("1", session_id="s"), msg("2", session_id="s")])
    with bus.get_session_receiver(queue, session_id="s") as holder:
        assert bodies(holder.receive()) == ["1"]
        assert bodies(holder.receive()) == ["2"]  # not "1" again
        assert holder.receive() == []
        with pytest.raises(NoSessionAvailable):
            bus.get_session_receiver(queue)


def test_abandoned_session_message_comes_back_first(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin, requires_session=True)
    bus.send(queue, [msg(str(i), session_id="s") for i in range(3)])
    with bus.get_session_receiver(queue, session_id="s") as receiver:
        first, second = receiver.receive(max_messages=2)
        receiver.abandon(first)
        [again] = receiver.receive()
        assert (again.body, again.delivery_count) == (b"0", 2)
        receiver.complete(second)
        receiver.complete(again)
        assert bodies(receive_all(receiver)) == ["2"]


def test_closed_session_is_released_at_once_and_its_unsettled_messages_return(
    bus: Bus, admin: BusAdmin
) -> None:
    queue = new_queue(admin, requires_session=True)
    bus.send(queue, [msg("1", session_id="s"), msg("2", session_id="s")])
    receiver = bus.get_session_receiver(queue, session_id="s")
    receiver.receive(max_messages=2)
    receiver.close()
    with bus.get_session_receiver(queue) as next_holder:
        assert next_holder.session_id == "s"
        again = next_holder.receive(max_messages=2)
        assert bodies(again) == ["1", "2"]
        assert [m.delivery_count for m in again] == [2, 2]


def test_session_lock_expiry_loses_the_session_and_frees_its_messages(
    open_bus: OpenBus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    first, second = open_bus(), open_bus()
    queue = new_queue(admin, requires_session=True, lock_duration_ms=LOCK_MS)
    first.send(queue, [msg("1", session_id="s"), msg("2", session_id="s")])
    lost = first.get_session_receiver(queue, session_id="s")
    [message] = lost.receive()
    with pytest.raises(SessionLockedError):
        second.get_session_receiver(queue, session_id="s")
    bus_clock.advance(LOCK_S + MARGIN_S)  # the lock runs out
    taker = second.get_session_receiver(queue, max_wait_ms=WAIT_MS)
    assert taker.session_id == "s"
    with pytest.raises(SessionLockLostError):
        lost.complete(message)
    with pytest.raises(SessionLockLostError):
        lost.receive()
    with pytest.raises(SessionLockLostError):
        lost.renew_session_lock()
    with pytest.raises(SessionLockLostError):
        lost.get_session_state()
    lost.close()  # must not release the new holder's lock
    with pytest.raises(SessionLockedError):
        first.get_session_receiver(queue, session_id="s")
    again = taker.receive(max_messages=2)
    assert bodies(again) == ["1", "2"]
    assert again[0].delivery_count == 2
    taker.close()


def test_renewed_session_lock_keeps_the_session(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin, requires_session=True, lock_duration_ms=LOCK_MS)
    bus.send(queue, [msg("1", session_id="s"), msg("2", session_id="s")])
    with bus.get_session_receiver(queue, session_id="s") as holder:
        original = holder.session_locked_until
        [message] = holder.receive()
        bus_clock.advance(LOCK_S / 2)  # half of the lock used up
        assert holder.renew_session_lock() > original
        bus_clock.advance(LOCK_S / 2 + MARGIN_S)  # past the original expiry
        with pytest.raises(NoSessionAvailable):  # a renewal that did nothing frees it
            bus.get_session_receiver(queue)
        holder.complete(message)
        assert bodies(holder.receive()) == ["2"]


def test_session_state_round_trips_and_outlives_the_holder(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin, requires_session=True)
    with bus.get_session_receiver(queue, session_id="s") as holder:
        assert holder.get_session_state() is None
        holder.set_session_state(b"progress=3")
        assert holder.get_session_state() == b"progress=3"
    with bus.get_session_receiver(queue, session_id="s") as holder:
        assert holder.get_session_state() == b"progress=3"
        holder.set_session_state(None)
        assert holder.get_session_state() is None


def test_session_dead_letters_are_read_without_a_session(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin, requires_session=True, max_delivery_count=1)
    bus.send(queue, [msg("bad", session_id="s"), msg("poison", session_id="s")])
    with bus.get_session_receiver(queue, session_id="s") as holder:
        bad, poison = holder.receive(max_messages=2)
        holder.dead_letter(bad, reason="Bad", error_description="why")
        holder.abandon(poison)
    dead = bus.get_receiver(queue, sub_queue="deadletter").receive(max_messages=2)
    assert [(m.body, m.session_id, m.dead_letter_reason) for m in dead] == [
        (b"bad", "s", "Bad"),
        (b"poison", "s", MAX_DELIVERY_COUNT_EXCEEDED),
    ]
    assert dead[0].dead_letter_error_description == "why"


def test_purge_session_deletes_only_that_sessions_pending_messages(
    bus: Bus, admin: BusAdmin, bus_clock: BusClock
) -> None:
    queue = new_queue(admin, requires_session=True)
    later = bus_clock.now() + timedelta(hours=1)
    bus.send(
        queue,
        [
            msg("1", session_id="lost-node"),
            msg("2", session_id="lost-node"),
            msg("3", session_id="lost-node", scheduled_enqueue_time=later),
            msg("keep", session_id="other"),
        ],
    )
    assert admin.purge_session(queue, "lost-node") == 3
    assert admin.count(queue) == 1
    with bus.get_session_receiver(queue) as receiver:
        assert receiver.session_id == "other"
    assert admin.purge_session(queue, "lost-node") == 0
