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
from functools import partial
from pathlib import Path

import pytest

from shared.adapters.sqlite_bus import SqliteBus
from shared.ports.bus import Bus

BusSpec = Callable[[], Bus]
OpenBus = Callable[[], Bus]

BUS_BACKENDS: dict[str, Callable[[Path], BusSpec]] = {
    "sqlite": lambda storage: partial(SqliteBus, storage / "bus.db"),
}


@pytest.fixture(params=sorted(BUS_BACKENDS))
def bus_spec(request: pytest.FixtureRequest, tmp_path: Path) -> BusSpec:
    """Opens a Bus on this test's fresh namespace; picklable for other processes."""
    return BUS_BACKENDS[request.param](tmp_path)


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
