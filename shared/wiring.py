"""Builds the ports from settings: the one place that picks adapters.

Today only the embedded adapters exist (SQLite store and bus, local output
folder); the Azure adapters plug in here, chosen by settings.
"""

from __future__ import annotations

import functools

from shared.domain.messages import (
    EVENTS_LOCK_MS,
    EVENTS_QUEUE,
    NODES_LOCK_MS,
    NODES_QUEUE,
    REJECTED_QUEUE,
    REPLIES_QUEUE,
    SCHEDULER_LOCK_MS,
    SCHEDULER_QUEUE,
)
from shared.ports.bus import Bus
from shared.ports.output import OutputStore
from shared.ports.store import Store
from shared.settings import Settings


def build_store(settings: Settings) -> Store:
    from shared.adapters.sqlite_store import SqliteStore

    return SqliteStore(settings.store_path)


def build_bus(settings: Settings) -> Bus:
    """One bus object per file and process: senders and receivers in one process (the local
    host and the function app) then share it, and a send wakes a waiting receive at once."""
    return _sqlite_bus(str(settings.bus_path))


@functools.cache
def _sqlite_bus(path: str) -> Bus:
    from shared.adapters.sqlite_bus import SqliteBus

    bus = SqliteBus(path)
    declare_queues(bus)
    return bus


def build_output(settings: Settings) -> OutputStore:
    from shared.adapters.local_output import LocalOutputStore

    return LocalOutputStore(settings.output_dir)


def declare_queues(bus: Bus) -> None:
    """The queues of the message flow (idempotent; Bicep declares them in Azure)."""
    bus.declare_queue(NODES_QUEUE, requires_session=True, lock_duration_ms=NODES_LOCK_MS)
    bus.declare_queue(EVENTS_QUEUE, max_delivery_count=10, lock_duration_ms=EVENTS_LOCK_MS)
    bus.declare_queue(REPLIES_QUEUE, requires_session=True, lock_duration_ms=30_000)
    bus.declare_queue(REJECTED_QUEUE)
    bus.declare_queue(SCHEDULER_QUEUE, requires_session=True, lock_duration_ms=SCHEDULER_LOCK_MS)
