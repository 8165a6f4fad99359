"""The Bus contract: every adapter of :class:`shared.ports.bus.Bus` passes this suite.

Tests use only the port. Adapters come from the ``bus`` / ``open_bus`` /
``bus_spec`` fixtures (``conftest.py``). Each test declares its own uniquely
named queues, so the suite can also run against a shared namespace.

Waiting: tests wait on conditions through the port itself (a receive or an
accept with ``max_wait_ms`` returns as soon as the condition holds). The only
sleeps are short waits for a lock to run out, with lock durations of 100-300 ms.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.ports.bus import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    TTL_EXPIRED,
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
)
from tests.contract.conftest import BusSpec, OpenBus

SHORT_LOCK_MS = 200
"""Lock duration of queues whose tests let locks run out."""
WAIT_MS = 3_000
"""Upper bound for waits that end as soon as their condition holds."""


def new_queue(bus: Bus, **options: Any) -> str:
    name = f"q-{uuid.uuid4().hex[:12]}"
    bus.declare_queue(name, **options)
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


def test_declaring_a_queue_twice_is_harmless_and_keeps_its_messages(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, msg("kept"))
    bus.declare_queue(queue)
    assert bus.count(queue) == 1


def test_undeclared_queue_raises_queue_not_found(bus: Bus) -> None:
    with pytest.raises(QueueNotFound):
        bus.send("never-declared", msg("x"))
    with pytest.raises(QueueNotFound):
        bus.get_receiver("never-declared")
    with pytest.raises(QueueNotFound):
        bus.count("never-declared")


def test_received_message_carries_what_was_sent(bus: Bus) -> None:
    queue = new_queue(bus)
    before = datetime.now(UTC)
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
    assert message.locked_until is not None and message.locked_until > before
    assert before - timedelta(seconds=1) <= message.enqueued_time <= datetime.now(UTC)


def test_default_message_ids_are_unique_uuid_hex(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, [msg("a"), msg("b")])
    ids = [m.message_id for m in bus.get_receiver(queue).receive(max_messages=2)]
    assert len(set(ids)) == 2
    assert all(uuid.UUID(hex=i).hex == i for i in ids)


def test_receive_returns_up_to_max_messages_in_send_order(bus: Bus) -> None:
    queue = new_queue(bus)
    for i in range(5):
        bus.send(queue, msg(str(i)))
    receiver = bus.get_receiver(queue)
    first = receiver.receive(max_messages=3)
    assert bodies(first) == ["0", "1", "2"]
    assert [m.sequence_number for m in first] == sorted(m.sequence_number for m in first)
    assert bodies(receiver.receive(max_messages=10)) == ["3", "4"]


def test_batch_is_sent_in_order(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, [msg(str(i)) for i in range(100)])
    assert bus.count(queue) == 100
    assert bodies(receive_all(bus.get_receiver(queue))) == [str(i) for i in range(100)]


def test_batch_send_is_all_or_none(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    batch = [msg("ok", session_id="s"), msg("no session id"), msg("ok", session_id="s")]
    with pytest.raises((ValueError, BusError)):
        bus.send(queue, batch)
    assert bus.count(queue) == 0


def test_count_includes_active_scheduled_and_locked_messages(bus: Bus) -> None:
    queue = new_queue(bus)
    later = datetime.now(UTC) + timedelta(hours=1)
    bus.send(queue, [msg("locked"), msg("active"), msg("scheduled", scheduled_enqueue_time=later)])
    bus.get_receiver(queue).receive()
    assert bus.count(queue) == 3
    assert bus.count(queue, sub_queue="deadletter") == 0


# --- peek-lock ------------------------------------------------------------------


def test_locked_message_is_invisible_to_other_receivers(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, msg("only"))
    assert bodies(bus.get_receiver(queue).receive()) == ["only"]
    assert bus.get_receiver(queue).receive(max_wait_ms=50) == []


def test_completed_message_is_gone(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, msg("done"))
    receiver = bus.get_receiver(queue)
    [message] = receiver.receive()
    receiver.complete(message)
    assert bus.count(queue) == 0
    assert receiver.receive() == []


def test_message_not_completed_is_redelivered_after_lock_expiry(bus: Bus) -> None:
    queue = new_queue(bus, lock_duration_ms=SHORT_LOCK_MS)
    bus.send(queue, msg("retry me"))
    [first] = bus.get_receiver(queue).receive()
    started = time.monotonic()
    [again] = bus.get_receiver(queue).receive(max_wait_ms=WAIT_MS)
    assert time.monotonic() - started >= SHORT_LOCK_MS / 1000 * 0.8
    assert again.message_id == first.message_id
    assert again.delivery_count == 2


def test_settling_after_lock_expiry_raises_message_lock_lost(bus: Bus) -> None:
    queue = new_queue(bus, lock_duration_ms=SHORT_LOCK_MS)
    bus.send(queue, [msg("a"), msg("b")])
    receiver = bus.get_receiver(queue)
    expired, also_expired = receiver.receive(max_messages=2)
    time.sleep(SHORT_LOCK_MS / 1000 * 1.5)  # let the locks run out
    with pytest.raises(MessageLockLostError):
        receiver.complete(expired)
    with pytest.raises(MessageLockLostError):
        receiver.renew_message_lock(also_expired)
    assert bus.count(queue) == 2


def test_settling_twice_raises_message_lock_lost(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, msg("once"))
    receiver = bus.get_receiver(queue)
    [message] = receiver.receive()
    receiver.complete(message)
    with pytest.raises(MessageLockLostError):
        receiver.complete(message)
    with pytest.raises(MessageLockLostError):
        receiver.abandon(message)


def test_settling_an_earlier_delivery_raises_message_lock_lost(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, msg("twice"))
    receiver = bus.get_receiver(queue)
    [first] = receiver.receive()
    receiver.abandon(first)
    [second] = receiver.receive()
    with pytest.raises(MessageLockLostError):
        receiver.complete(first)
    receiver.complete(second)


def test_renewed_lock_outlives_the_original_lock(bus: Bus) -> None:
    lock_ms = 300
    queue = new_queue(bus, lock_duration_ms=lock_ms)
    bus.send(queue, msg("long task"))
    receiver = bus.get_receiver(queue)
    [message] = receiver.receive()
    original = message.locked_until
    assert original is not None
    time.sleep(lock_ms / 1000 * 0.6)  # part of the lock used up
    renewed = receiver.renew_message_lock(message)
    assert renewed > original
    # Past the original expiry: a renewal that did nothing would let it be redelivered.
    assert bus.get_receiver(queue).receive(max_wait_ms=int(lock_ms * 0.7)) == []
    receiver.complete(message)
    assert bus.count(queue) == 0


def test_abandoned_message_is_redelivered_at_once_with_higher_delivery_count(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, msg("again"))
    receiver = bus.get_receiver(queue)
    [first] = receiver.receive()
    receiver.abandon(first)
    [second] = bus.get_receiver(queue).receive()
    assert second.message_id == first.message_id
    assert second.delivery_count == 2


# --- dead letters ---------------------------------------------------------------


def test_dead_letter_after_max_deliveries_has_reason(bus: Bus) -> None:
    queue = new_queue(bus, max_delivery_count=3)
    bus.send(queue, msg("poison", message_id="p"))
    receiver = bus.get_receiver(queue)
    for delivery in (1, 2, 3):
        [message] = receiver.receive()
        assert message.delivery_count == delivery
        receiver.abandon(message)
    assert receiver.receive() == []
    assert bus.count(queue) == 0
    assert bus.count(queue, sub_queue="deadletter") == 1
    [dead] = bus.get_receiver(queue, sub_queue="deadletter").receive()
    assert dead.message_id == "p"
    assert dead.body == b"poison"
    assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED


def test_message_whose_last_lock_expires_is_dead_lettered(bus: Bus) -> None:
    queue = new_queue(bus, max_delivery_count=1, lock_duration_ms=SHORT_LOCK_MS)
    bus.send(queue, msg("abandoned by a crash", message_id="c"))
    assert len(bus.get_receiver(queue).receive()) == 1  # never settled
    [dead] = bus.get_receiver(queue, sub_queue="deadletter").receive(max_wait_ms=WAIT_MS)
    assert dead.message_id == "c"
    assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED
    assert bus.get_receiver(queue).receive() == []


def test_manual_dead_letter_keeps_reason_and_description(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, msg("bad", message_id="b", application_properties={"k": "v"}))
    receiver = bus.get_receiver(queue)
    [message] = receiver.receive()
    receiver.dead_letter(message, reason="InvalidSpec", error_description="no command")
    assert bus.count(queue) == 0
    [dead] = bus.get_receiver(queue, sub_queue="deadletter").receive()
    assert (dead.message_id, dead.body, dead.application_properties) == ("b", b"bad", {"k": "v"})
    assert dead.dead_letter_reason == "InvalidSpec"
    assert dead.dead_letter_error_description == "no command"


def test_dead_letters_are_peek_locked_and_completed_like_messages(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, msg("bad"))
    receiver = bus.get_receiver(queue)
    receiver.dead_letter(receiver.receive()[0], reason="Bad")
    dead_letters = bus.get_receiver(queue, sub_queue="deadletter")
    [dead] = dead_letters.receive()
    assert bus.get_receiver(queue, sub_queue="deadletter").receive() == []
    dead_letters.abandon(dead)
    [dead] = dead_letters.receive()
    dead_letters.complete(dead)
    assert bus.count(queue, sub_queue="deadletter") == 0


# --- scheduling and expiry -------------------------------------------------------


def test_scheduled_message_is_invisible_until_due(bus: Bus) -> None:
    queue = new_queue(bus)
    due = datetime.now(UTC) + timedelta(milliseconds=250)
    started = time.monotonic()
    bus.send(queue, msg("later", scheduled_enqueue_time=due))
    bus.send(queue, msg("now"))
    receiver = bus.get_receiver(queue)
    [now] = receiver.receive(max_messages=2)
    assert now.body == b"now"
    assert bus.count(queue) == 2
    [later] = receiver.receive(max_wait_ms=WAIT_MS)
    assert time.monotonic() - started >= 0.2
    assert later.body == b"later"
    assert later.scheduled_enqueue_time is not None
    assert abs((later.scheduled_enqueue_time - due).total_seconds()) < 0.01


def test_expired_message_is_not_delivered_and_is_dead_lettered(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, [msg("stale", message_id="s", time_to_live_ms=100), msg("fresh")])
    [dead] = bus.get_receiver(queue, sub_queue="deadletter").receive(max_wait_ms=WAIT_MS)
    assert dead.message_id == "s"
    assert dead.dead_letter_reason == TTL_EXPIRED
    assert bodies(bus.get_receiver(queue).receive(max_messages=2)) == ["fresh"]


def test_message_within_its_time_to_live_is_delivered(bus: Bus) -> None:
    queue = new_queue(bus)
    bus.send(queue, msg("fresh", time_to_live_ms=60_000))
    [message] = bus.get_receiver(queue).receive()
    assert message.expires_at is not None
    assert message.expires_at > datetime.now(UTC) + timedelta(seconds=50)


# --- waiting ----------------------------------------------------------------------


def test_receive_on_empty_queue_waits_about_max_wait_ms(bus: Bus) -> None:
    queue = new_queue(bus)
    receiver = bus.get_receiver(queue)
    started = time.monotonic()
    assert receiver.receive(max_wait_ms=0) == []
    assert time.monotonic() - started < 0.1
    started = time.monotonic()
    assert receiver.receive(max_wait_ms=150) == []
    assert 0.14 <= time.monotonic() - started < 1.0


def _send_later(bus: Bus, queue: str, message: OutgoingMessage, delay_s: float) -> threading.Thread:
    def send() -> None:
        time.sleep(delay_s)  # the sender's own pace, not a wait for a condition
        bus.send(queue, message)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_receive_returns_as_soon_as_a_message_is_sent(bus: Bus) -> None:
    queue = new_queue(bus)
    thread = _send_later(bus, queue, msg("wake"), 0.05)
    started = time.monotonic()
    [message] = bus.get_receiver(queue).receive(max_wait_ms=10_000)
    thread.join()
    assert message.body == b"wake"
    assert time.monotonic() - started < 1.0


def test_receive_sees_a_message_sent_through_another_instance_quickly(
    open_bus: OpenBus,
) -> None:
    receiving, sending = open_bus(), open_bus()
    queue = new_queue(receiving)
    thread = _send_later(sending, queue, msg("from elsewhere"), 0.05)
    started = time.monotonic()
    [message] = receiving.get_receiver(queue).receive(max_wait_ms=10_000)
    thread.join()
    assert message.body == b"from elsewhere"
    assert time.monotonic() - started < 1.0


# --- concurrency -------------------------------------------------------------------


def test_concurrent_threads_never_receive_the_same_message(bus: Bus) -> None:
    queue = new_queue(bus)
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


def test_two_processes_never_receive_the_same_message(bus: Bus, bus_spec: BusSpec) -> None:
    queue = new_queue(bus)
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
    assert bus.count(queue) == 0


# --- sessions ----------------------------------------------------------------------


def test_session_receiver_gets_only_its_sessions_messages_in_order(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    for i in range(10):
        for session in ("a", "b", "c"):
            bus.send(queue, msg(f"{session}{i}", session_id=session))
    with bus.get_session_receiver(queue, session_id="b") as receiver:
        received = receive_all(receiver)
    assert bodies(received) == [f"b{i}" for i in range(10)]
    assert {m.session_id for m in received} == {"b"}
    assert bus.count(queue) == 20


def test_held_session_cannot_be_accepted_twice(open_bus: OpenBus) -> None:
    first, second = open_bus(), open_bus()
    queue = new_queue(first, requires_session=True)
    first.send(queue, msg("x", session_id="node-1"))
    with first.get_session_receiver(queue, session_id="node-1"):
        with pytest.raises(SessionLockedError):
            second.get_session_receiver(queue, session_id="node-1")
        with pytest.raises(SessionLockedError):
            first.get_session_receiver(queue, session_id="node-1")


def test_named_session_can_be_accepted_without_messages(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    with bus.get_session_receiver(queue, session_id="idle-node") as receiver:
        assert receiver.session_id == "idle-node"
        assert receiver.receive(max_wait_ms=20) == []


def test_next_available_session_skips_held_sessions(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    bus.send(queue, [msg("a", session_id="a"), msg("b", session_id="b")])
    with (
        bus.get_session_receiver(queue, session_id="a"),
        bus.get_session_receiver(queue) as other,
    ):
        assert other.session_id == "b"
        assert bodies(other.receive()) == ["b"]
        with pytest.raises(NoSessionAvailable):
            bus.get_session_receiver(queue)


def test_next_available_session_ignores_sessions_without_available_messages(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    later = datetime.now(UTC) + timedelta(hours=1)
    bus.send(queue, msg("later", session_id="scheduled", scheduled_enqueue_time=later))
    with bus.get_session_receiver(queue, session_id="empty"):
        pass
    with pytest.raises(NoSessionAvailable):
        bus.get_session_receiver(queue)


def test_no_session_available_is_raised_after_max_wait_ms(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    started = time.monotonic()
    with pytest.raises(NoSessionAvailable):
        bus.get_session_receiver(queue, max_wait_ms=150)
    assert 0.14 <= time.monotonic() - started < 1.0


def test_next_available_session_is_accepted_as_soon_as_a_message_arrives(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    thread = _send_later(bus, queue, msg("hello", session_id="late"), 0.05)
    started = time.monotonic()
    with bus.get_session_receiver(queue, max_wait_ms=10_000) as receiver:
        assert receiver.session_id == "late"
    thread.join()
    assert time.monotonic() - started < 1.0


def test_session_messages_locked_by_the_holder_go_to_no_one_else(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    bus.send(queue, [msg("1", session_id="s"), msg("2", session_id="s")])
    with bus.get_session_receiver(queue, session_id="s") as holder:
        assert bodies(holder.receive()) == ["1"]
        assert bodies(holder.receive()) == ["2"]  # not "1" again
        assert holder.receive() == []
        with pytest.raises(NoSessionAvailable):
            bus.get_session_receiver(queue)


def test_abandoned_session_message_comes_back_first(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
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
    bus: Bus,
) -> None:
    queue = new_queue(bus, requires_session=True)
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
    open_bus: OpenBus,
) -> None:
    first, second = open_bus(), open_bus()
    queue = new_queue(first, requires_session=True, lock_duration_ms=SHORT_LOCK_MS)
    first.send(queue, [msg("1", session_id="s"), msg("2", session_id="s")])
    lost = first.get_session_receiver(queue, session_id="s")
    [message] = lost.receive()
    with pytest.raises(SessionLockedError):
        second.get_session_receiver(queue, session_id="s")
    taker = second.get_session_receiver(queue, max_wait_ms=WAIT_MS)  # once the lock runs out
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


def test_renewed_session_lock_keeps_the_session(bus: Bus) -> None:
    lock_ms = 300
    queue = new_queue(bus, requires_session=True, lock_duration_ms=lock_ms)
    bus.send(queue, [msg("1", session_id="s"), msg("2", session_id="s")])
    with bus.get_session_receiver(queue, session_id="s") as holder:
        original = holder.session_locked_until
        [message] = holder.receive()
        time.sleep(lock_ms / 1000 * 0.6)  # part of the lock used up
        assert holder.renew_session_lock() > original
        # Past the original expiry: a renewal that did nothing would free the session.
        with pytest.raises(NoSessionAvailable):
            bus.get_session_receiver(queue, max_wait_ms=int(lock_ms * 0.7))
        holder.complete(message)
        assert bodies(holder.receive()) == ["2"]


def test_session_state_round_trips_and_outlives_the_holder(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    with bus.get_session_receiver(queue, session_id="s") as holder:
        assert holder.get_session_state() is None
        holder.set_session_state(b"progress=3")
        assert holder.get_session_state() == b"progress=3"
    with bus.get_session_receiver(queue, session_id="s") as holder:
        assert holder.get_session_state() == b"progress=3"
        holder.set_session_state(None)
        assert holder.get_session_state() is None


def test_session_dead_letters_are_read_without_a_session(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True, max_delivery_count=1)
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


def test_purge_session_deletes_only_that_sessions_pending_messages(bus: Bus) -> None:
    queue = new_queue(bus, requires_session=True)
    later = datetime.now(UTC) + timedelta(hours=1)
    bus.send(
        queue,
        [
            msg("1", session_id="lost-node"),
            msg("2", session_id="lost-node"),
            msg("3", session_id="lost-node", scheduled_enqueue_time=later),
            msg("keep", session_id="other"),
        ],
    )
    assert bus.purge_session(queue, "lost-node") == 3
    assert bus.count(queue) == 1
    with bus.get_session_receiver(queue) as receiver:
        assert receiver.session_id == "other"
    assert bus.purge_session(queue, "lost-node") == 0
