"""Fixtures shared by the contract suites.

Bus: ``bus_spec`` is the one place that knows the Bus adapters. It is
parametrized by backend name and gives a picklable zero-argument callable that
opens a Bus on one fresh, empty namespace, so a test can open several
instances (or hand the spec to another process). A Service Bus adapter is one
more entry in ``BUS_BACKENDS``; every test in ``test_bus_contract.py`` then runs
against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest

from shared.adapters.sqlite_bus import SqliteBus
from shared.ports.bus import Bus
from tests.emulators import azurite_blob_endpoint, cosmos_endpoint  # noqa: F401 - fixtures

BusSpec = Callable[[], Bus]
OpenBus = Callable[[], Bus]

SERVICEBUS_TIMING_SKIPS = {
    # Service Bus locks last 5 s at least; these let 200-300 ms locks run out.
    "test_message_not_completed_is_redelivered_after_lock_expiry": "lock < 5 s",
    "test_settling_after_lock_expiry_raises_message_lock_lost": "lock < 5 s",
    "test_renewed_lock_outlives_the_original_lock": "lock < 5 s",
    "test_message_whose_last_lock_expires_is_dead_lettered": "lock < 5 s",
    "test_session_lock_expiry_loses_the_session_and_frees_its_messages": "lock < 5 s",
    "test_renewed_session_lock_keeps_the_session": "lock < 5 s",
    # Sub-second bounds on a wait, which a network round trip does not meet.
    "test_receive_on_empty_queue_waits_about_max_wait_ms": "wait < 0.1 s",
    "test_no_session_available_is_raised_after_max_wait_ms": "wait < 1 s",
}


def _servicebus_spec(request: pytest.FixtureRequest, storage: Path) -> BusSpec:
    """Service Bus, when a namespace is configured (each test declares its own queues)."""
    import os

    connection_string = os.environ.get("SERVICEBUS_CONNECTION_STRING", "")
    namespace = os.environ.get("SERVICEBUS_NAMESPACE", "")
    if not (connection_string or namespace):
        pytest.skip("no Service Bus: set SERVICEBUS_CONNECTION_STRING or SERVICEBUS_NAMESPACE")
    name = request.node.originalname
    if name in SERVICEBUS_TIMING_SKIPS:
        pytest.skip(f"Service Bus timing ({SERVICEBUS_TIMING_SKIPS[name]}): sqlite-only check")
    from shared.adapters.servicebus_bus import ServiceBusBus

    return partial(
        ServiceBusBus,
        connection_string=connection_string or None,
        namespace=namespace or None,
        auto_delete_on_idle=timedelta(minutes=5),  # the test queues go away by themselves
    )


BUS_BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BusSpec]] = {
    "sqlite": lambda request, storage: partial(SqliteBus, storage / "bus.db"),
    "servicebus": _servicebus_spec,
}


@pytest.fixture(params=["sqlite", pytest.param("servicebus", marks=pytest.mark.servicebus)])
def bus_spec(request: pytest.FixtureRequest, tmp_path: Path) -> BusSpec:
    """Opens a Bus on this test's fresh namespace; picklable for other processes."""
    return BUS_BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def open_bus(bus_spec: BusSpec) -> Iterator[OpenBus]:
    """Opens Bus instances on one namespace (like separate processes would), closed after."""
    opened: list[Bus] = []

    def open_() -> Bus:
        bus = bus_spec()
        opened.append(bus)
        return bus

    yield open_
    for bus in opened:
        bus.close()


@pytest.fixture
def bus(open_bus: OpenBus) -> Bus:
    return open_bus()
