"""The Bus contract, sessions: ordered delivery per session id, session locks and state.

Part of the Bus contract (tests/contract/bus_fixtures.py says how time and waiting work).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from shared.ports.bus import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    Bus,
    NoSessionAvailable,
    SessionLockedError,
    SessionLockLostError,
)
from shared.ports.busadmin import BusAdmin
from tests.contract.bus_fixtures import (
    LOCK_MS,
    LOCK_S,
    LONG_WAIT_MS,
    MARGIN_S,
    WAIT_MS,
    _ended_early,
    _send_later,
    bodies,
    msg,
    new_queue,
    receive_all,
)
from tests.contract.conftest import BusClock, OpenBus

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
