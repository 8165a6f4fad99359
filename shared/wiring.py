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
from shared.ports.compute import ComputeProvider
from shared.ports.output import OutputStore
from shared.ports.store import Store
from shared.settings import Settings


def build_store(settings: Settings) -> Store:
    """HPC_STORE: ``sqlite`` (the file in HPC_HOME) or ``cosmos`` (HPC_COSMOS_*)."""
    if settings.store == "cosmos":
        if not settings.cosmos_endpoint:
            raise ValueError("HPC_STORE=cosmos needs HPC_COSMOS_ENDPOINT (the account's endpoint)")
        from shared.adapters.cosmos_store import CosmosStore

        return CosmosStore(settings.cosmos_endpoint, settings.cosmos_key, settings.cosmos_database)
    from shared.adapters.sqlite_store import SqliteStore

    return SqliteStore(settings.store_path)


def build_bus(settings: Settings) -> Bus:
    """One bus object per file and process: senders and receivers in one process (the local
    host and the function app) then share it, and a send wakes a waiting receive at once.
    HPC_BUS=servicebus: Azure Service Bus (HPC_SERVICEBUS_*), one client per process too."""
    if settings.bus == "servicebus":
        return _servicebus_bus(settings.servicebus_connection_string, settings.servicebus_namespace)
    return _sqlite_bus(str(settings.bus_path))


@functools.cache
def _servicebus_bus(connection_string: str, namespace: str) -> Bus:
    from shared.adapters.servicebus_bus import ServiceBusBus

    bus = ServiceBusBus(connection_string=connection_string or None, namespace=namespace or None)
    declare_queues(bus)
    return bus


@functools.cache
def _sqlite_bus(path: str) -> Bus:
    from shared.adapters.sqlite_bus import SqliteBus

    bus = SqliteBus(path)
    declare_queues(bus)
    return bus


def build_output(settings: Settings) -> OutputStore:
    """HPC_OUTPUT: ``local`` (the folder in HPC_HOME) or ``blob`` (HPC_BLOB_*; the agent's
    files are still written under HPC_HOME/output first, then published)."""
    if settings.output == "blob":
        from shared.adapters.blob_output import BlobOutputStore

        return BlobOutputStore(
            settings.output_dir,
            connection_string=settings.blob_connection_string or None,
            account_url=settings.blob_account_url or None,
            container=settings.blob_container,
        )
    from shared.adapters.local_output import LocalOutputStore

    return LocalOutputStore(settings.output_dir)


def build_compute(settings: Settings) -> ComputeProvider | None:
    """The provider of managed nodes (HPC_COMPUTE): local agent processes, or Azure VMs."""
    if settings.compute == "local":
        from shared.adapters.local_compute import LocalProvider

        return LocalProvider(settings.home_dir, boot_delay_s=settings.local_boot_delay_s)
    if settings.compute == "none":
        return None
    raise ValueError(
        f"HPC_COMPUTE={settings.compute!r}: the Azure provider is not wired into the control "
        "plane yet; use local (or none)"
    )


def declare_queues(bus: Bus) -> None:
    """The queues of the message flow (idempotent; Bicep declares them in Azure)."""
    bus.declare_queue(NODES_QUEUE, requires_session=True, lock_duration_ms=NODES_LOCK_MS)
    bus.declare_queue(EVENTS_QUEUE, max_delivery_count=10, lock_duration_ms=EVENTS_LOCK_MS)
    bus.declare_queue(REPLIES_QUEUE, requires_session=True, lock_duration_ms=30_000)
    bus.declare_queue(REJECTED_QUEUE)
    bus.declare_queue(SCHEDULER_QUEUE, requires_session=True, lock_duration_ms=SCHEDULER_LOCK_MS)
