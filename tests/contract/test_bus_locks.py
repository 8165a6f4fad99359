"""The Bus contract, peek-lock and dead letters: complete, abandon, renew, lost locks.

Part of the Bus contract (tests/contract/bus_fixtures.py says how time and waiting work).
"""

from __future__ import annotations

import pytest

from shared.ports.bus import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    Bus,
    MessageLockLostError,
)
from shared.ports.busadmin import BusAdmin
from tests.contract.bus_fixtures import LOCK_MS, LOCK_S, MARGIN_S, WAIT_MS, bodies, msg, new_queue
from tests.contract.conftest import BusClock

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
