"""What the Bus contract suites share: their timings and helpers to declare queues and move messages.

Every adapter of :class:`shared.ports.bus.Bus` passes the tests/contract/test_bus_*.py suites.
Tests use only the ports (Bus and BusAdmin). Adapters come from the ``bus`` /
``open_bus`` / ``bus_spec`` / ``admin`` fixtures (``conftest.py``). Each test
declares its own uniquely named queues, so the suites can also run against a
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

import threading
import time
import uuid
from typing import Any

from shared.ports.bus import (
    Bus,
    OutgoingMessage,
    ReceivedMessage,
    Receiver,
)
from shared.ports.busadmin import BusAdmin

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
