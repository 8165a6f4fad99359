"""The Bus contract, time: scheduled messages, expiry, and waits that end on their condition.

Part of the Bus contract (tests/contract/bus_fixtures.py says how time and waiting work).
"""

from __future__ import annotations

import time
from datetime import timedelta

from shared.ports.bus import (
    TTL_EXPIRED,
    Bus,
)
from shared.ports.busadmin import BusAdmin
from tests.contract.bus_fixtures import (
    LONG_WAIT_MS,
    MARGIN_S,
    SCHEDULE_S,
    TTL_MS,
    WAIT_MS,
    _ended_early,
    _send_later,
    bodies,
    msg,
    new_queue,
)
from tests.contract.conftest import BusClock, OpenBus

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
