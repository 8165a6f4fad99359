"""Builds the ports from settings: the one place that picks adapters.

Today only the embedded adapters exist (SQLite store and bus, local output
folder); the Azure adapters plug in here, chosen by settings.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

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
from shared.ports.busadmin import BusAdmin
from shared.ports.compute import ComputeProvider
from shared.ports.output import OutputStore
from shared.ports.store import Store
from shared.settings import Settings

SDK_HTTP_LOGGERS = (
    "azure.core.pipeline.policies.http_logging_policy",  # Blob, Service Bus admin, ARM
    "azure.cosmos._cosmos_http_logging_policy",  # Cosmos DB has a policy of its own
)


def quiet_azure_sdk_logs() -> None:
    """The Azure SDKs log every HTTP request and response, headers included, at INFO: with
    Cosmos DB and Blob output that was 39,000 lines (43 MB) of control plane log in 12
    minutes of a probe, burying what the cluster says. Their warnings and errors still show."""
    for name in SDK_HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


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
    HPC_BUS=servicebus: Azure Service Bus (HPC_SERVICEBUS_*), one client per process too; its
    queues are declared by the deployment (Bicep) or ``declare_queues(build_bus_admin(...))``,
    which need Manage rights the data-plane identity does not have. The embedded bus declares
    its own queues here."""
    if settings.bus == "servicebus":
        return _servicebus_bus(
            settings.servicebus_connection_string,
            settings.servicebus_namespace,
            settings.servicebus_transport == "websockets",
        )
    return _sqlite_bus(str(settings.bus_path))


def bus_env(settings: Settings) -> dict[str, str]:
    """The HPC_* variables that make :func:`build_bus` in another process open this bus: for
    the agent's lifeline, which reports the ends its agent, silent or dead, does not."""
    env = {"HPC_BUS": settings.bus, "HPC_HOME": str(settings.home_dir)}
    if settings.bus == "servicebus":
        env["HPC_SERVICEBUS_NAMESPACE"] = settings.servicebus_namespace
        env["HPC_SERVICEBUS_CONNECTION_STRING"] = settings.servicebus_connection_string
        env["HPC_SERVICEBUS_TRANSPORT"] = settings.servicebus_transport
    return env


@functools.cache
def _servicebus_bus(connection_string: str, namespace: str, websockets: bool = False) -> Bus:
    from shared.adapters.servicebus_bus import ServiceBusBus

    return ServiceBusBus(
        connection_string=connection_string or None,
        namespace=namespace or None,
        websockets=websockets,
    )


@functools.cache
def _sqlite_bus(path: str) -> Bus:
    from shared.adapters.sqlite_bus import SqliteBus
    from shared.adapters.sqlite_busadmin import SqliteBusAdmin

    bus = SqliteBus(path)
    declare_queues(SqliteBusAdmin(bus))
    return bus


def build_bus_admin(settings: Settings) -> BusAdmin:
    """Queue administration (HPC_BUS): on the process's embedded bus, or a Service Bus
    ``ServiceBusAdministrationClient`` (Manage rights)."""
    if settings.bus == "servicebus":
        from shared.adapters.servicebus_busadmin import ServiceBusAdmin

        return ServiceBusAdmin(
            connection_string=settings.servicebus_connection_string or None,
            namespace=settings.servicebus_namespace or None,
        )
    from shared.adapters.sqlite_bus import SqliteBus
    from shared.adapters.sqlite_busadmin import SqliteBusAdmin

    bus = _sqlite_bus(str(settings.bus_path))
    assert isinstance(bus, SqliteBus)
    return SqliteBusAdmin(bus)


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


def build_compute(settings: Settings, **azure_client: Any) -> ComputeProvider | None:
    """The provider of managed nodes (HPC_COMPUTE): local agent processes, Azure VMs
    (HPC_AZURE_*; a missing setting raises ValueError naming it), or none.
    ``azure_client``: ARM client options (tests pass ``transport`` and ``credential``)."""
    if settings.compute == "local":
        from shared.adapters.local_compute import LocalProvider

        return LocalProvider(
            settings.home_dir,
            boot_delay_s=settings.local_boot_delay_s,
            faults_file=Path(settings.local_faults) if settings.local_faults else None,
        )
    if settings.compute == "azure":
        from shared.adapters.azure_setup import azure_provider

        return azure_provider(settings, **azure_client)
    if settings.compute == "none":
        return None
    raise ValueError(f"HPC_COMPUTE={settings.compute!r}: expected local, azure or none")


def declare_queues(admin: BusAdmin) -> None:
    """The queues of the message flow (idempotent; Bicep declares them in Azure)."""
    admin.declare_queue(NODES_QUEUE, requires_session=True, lock_duration_ms=NODES_LOCK_MS)
    admin.declare_queue(EVENTS_QUEUE, max_delivery_count=10, lock_duration_ms=EVENTS_LOCK_MS)
    admin.declare_queue(REPLIES_QUEUE, requires_session=True, lock_duration_ms=30_000)
    admin.declare_queue(REJECTED_QUEUE)
    admin.declare_queue(SCHEDULER_QUEUE, requires_session=True, lock_duration_ms=SCHEDULER_LOCK_MS)
