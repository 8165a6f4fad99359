"""Fixtures shared by the contract suites.

Bus: ``bus_spec`` is the one place that knows the Bus adapters. It is
parametrized by backend name and gives a picklable zero-argument callable that
opens a Bus on one fresh, empty namespace, so a test can open several
instances (or hand the spec to another process); ``admin`` administers that
namespace and ``bus_clock`` is the clock the bus times messages by. Each
adapter is one entry in ``BUS_BACKENDS``; every test in
the ``test_bus_*.py`` suites runs against each. The Store suites' fixtures
(``open_store``, ``store``) are in ``store_fixtures.py``, registered here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.ports.bus import Bus
from shared.ports.busadmin import BusAdmin
from tests.contract.store_fixtures import open_store, store  # noqa: F401 - fixtures

BusSpec = Callable[[], Bus]
OpenBus = Callable[[], Bus]
AdminSpec = Callable[[], BusAdmin]


class ManualClock:
    """The embedded bus's clock in the contract suite: it starts at the real time and moves
    only when a test advances it, so locks, schedules and expiry need no sleeping and do
    not depend on the machine's speed. Picklable: a child process gets a copy."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def advance(self, seconds: float) -> None:
        self.t += seconds


class RealClock:
    """Real time, for adapters whose clock is not ours (Service Bus): advancing it sleeps.
    The suite's times (10 s locks, 2 s margins) are chosen with this in mind."""

    def __call__(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)


BusClock = ManualClock | RealClock


@dataclass(frozen=True)
class BusBackend:
    """One adapter's way to open buses and an admin on a fresh namespace, and its clock."""

    open_bus: BusSpec
    open_admin: AdminSpec
    clock: BusClock


def _servicebus_backend(request: pytest.FixtureRequest, storage: Path) -> BusBackend:
    """Service Bus, when a namespace is configured (each test declares its own queues);
    time is real there, so these runs take seconds where the embedded bus takes none."""
    import os

    connection_string = os.environ.get("SERVICEBUS_CONNECTION_STRING", "")
    namespace = os.environ.get("SERVICEBUS_NAMESPACE", "")
    if not (connection_string or namespace):
        pytest.skip("no Service Bus: set SERVICEBUS_CONNECTION_STRING or SERVICEBUS_NAMESPACE")
    from shared.adapters.servicebus_bus import ServiceBusBus
    from shared.adapters.servicebus_busadmin import ServiceBusAdmin

    where = {"connection_string": connection_string or None, "namespace": namespace or None}
    return BusBackend(
        open_bus=partial(ServiceBusBus, **where),
        # The test queues go away by themselves.
        open_admin=partial(ServiceBusAdmin, **where, auto_delete_on_idle=timedelta(minutes=5)),
        clock=RealClock(),
    )


def _sqlite_backend(request: pytest.FixtureRequest, storage: Path) -> BusBackend:
    clock = ManualClock()
    return BusBackend(
        open_bus=partial(SqliteBus, storage / "bus.db", clock=clock),
        open_admin=partial(SqliteBusAdmin, storage / "bus.db", clock=clock),
        clock=clock,
    )


BUS_BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BusBackend]] = {
    "sqlite": _sqlite_backend,
    "servicebus": _servicebus_backend,
}


@pytest.fixture(params=["sqlite", pytest.param("servicebus", marks=pytest.mark.servicebus)])
def bus_backend(request: pytest.FixtureRequest, tmp_path: Path) -> BusBackend:
    return BUS_BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def bus_spec(bus_backend: BusBackend) -> BusSpec:
    """Opens a Bus on this test's fresh namespace; picklable for other processes."""
    return bus_backend.open_bus


@pytest.fixture
def bus_clock(bus_backend: BusBackend) -> BusClock:
    """The clock the bus times messages by; ``advance`` moves it (or waits, on Service Bus)."""
    return bus_backend.clock


@pytest.fixture
def admin(bus_backend: BusBackend) -> Iterator[BusAdmin]:
    """Administration of this test's namespace (declare, count, purge)."""
    opened = bus_backend.open_admin()
    yield opened
    opened.close()


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
