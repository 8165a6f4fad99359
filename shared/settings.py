"""Every setting, read from the environment (prefix ``HPC_``) by pydantic-settings.

In Azure the same names are app settings; ``local.settings.json.example``
lists them with working local defaults.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.memory import parse_mb

BLOB_CONTAINER = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
"""Azure Blob container names (their own "--" rule is checked beside)."""

MEMORY_SIZE = "MB (16384) or a size (16G, 1.5T), 1 MB to 64 TB"
"""What an agent's memory setting accepts (``--memory-mb``, HPC_AGENT_MEMORY_MB)."""


def memory_size(value: Any) -> int | None:
    """An agent's memory, given as MB (``16384``, ``"16384"``) or a size (``"16G"``), as MB
    (None: not given); else an error saying what is accepted, in one line."""
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError
        return parse_mb(value)
    except ValueError:
        reason = f"expected {MEMORY_SIZE}, got {value!r}"
        raise PydanticCustomError("memory_size", "{reason}", {"reason": reason}) from None


AgentMemory = Annotated[int | None, BeforeValidator(memory_size)]
"""An agent's memory in MB, read from MB or a size; None: not given."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HPC_", extra="ignore", populate_by_name=True)

    home: Path = Field(default=Path("~/.hybridhpc"))
    """Local state: the SQLite store and bus, task output, the admin token."""
    api_url: str = "http://127.0.0.1:7071"
    """Where the CLI finds the control plane."""
    token: str | None = None
    """Bearer token for the CLI; default is the one ``hpc up`` wrote to HPC_HOME/admin.token."""

    heartbeat_interval_s: float = Field(default=2.0, gt=0, allow_inf_nan=False)
    """How often an agent heartbeats."""
    heartbeat_timeout_s: float = Field(default=15.0, gt=0, allow_inf_nan=False)
    """A node silent this long becomes Unreachable and its tasks are requeued."""
    dispatch_timeout_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    """A task Dispatching this long (its agent never confirmed it) is requeued."""
    agent_run_as_owner: bool = False
    """An agent runs each task as the OS user named as its job's owner (``hpc agent run
    --run-as-owner``; the agent must run as root). Off: as the agent's own user."""
    agent_enforce_memory: bool = False
    """An agent kills a task whose processes use more memory than its minMemoryMb, and the
    task fails saying so (``hpc agent run --enforce-memory``; Slurm's ConstrainRAMSpace).
    Off: the ask is the scheduler's accounting only."""
    agent_memory_mb: AgentMemory = None
    """The memory (MB, or a size: 16G) an agent reports for its node (``hpc agent run
    --memory-mb``); unset: the machine's, as the agent reads it (agent/machine.py)."""
    task_grace_s: float = Field(default=15.0, ge=0, le=3600, allow_inf_nan=False)
    """Seconds an agent gives a canceled task, or one past its runtime limit, between SIGTERM
    and SIGKILL (HPC Pack's TaskCancelGracePeriod): to save a checkpoint."""

    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest accepted HTTP request body (413 above)."""
    max_output_bytes: int = Field(default=100 << 20, ge=1)
    """Most bytes kept of each stream (stdout, stderr) of each task attempt; past it the
    agent drops the rest and ends the stream with a line saying it was truncated."""
    max_tasks_per_job: int = Field(default=1_000_000, ge=1)
    """Most tasks one job may have (a sweep is stored as its range: size costs no storage)."""
    scheduler_window: int = Field(default=5000, ge=1)
    """Most queued tasks one scheduler pass looks at (priority order); a pass reads
    max(100, 4 x free cores) of them, up to this."""
    fair_share: bool = True
    """At one priority, serve first the users whose tasks hold the fewest cores now
    (shared/domain/fairshare.py); false: first come, first served across users (HPC Pack's
    Queued mode)."""

    store: Literal["sqlite", "cosmos"] = "sqlite"
    """The Store adapter: ``sqlite`` (a file in HPC_HOME) or ``cosmos`` (Azure Cosmos DB)."""
    cosmos_endpoint: str = ""
    """Cosmos DB account endpoint (``https://ACCOUNT.documents.azure.com:443/``); a plain
    ``http://`` endpoint is the local stand-in (``make emulators``)."""
    cosmos_key: str = ""
    """Cosmos DB account key; empty: DefaultAzureCredential (managed identity in Azure)."""
    cosmos_database: str = "hybridhpc"
    """The database (created with its containers if missing)."""

    output: Literal["local", "blob"] = "local"
    """The Output adapter: ``local`` (a folder in HPC_HOME) or ``blob`` (Azure Blob storage:
    one append blob per task attempt and stream)."""
    blob_connection_string: str = ""
    """Blob storage connection string (Azurite: ``scripts/emulators.sh env``); empty: use
    HPC_BLOB_ACCOUNT_URL with DefaultAzureCredential."""
    blob_account_url: str = ""
    """Blob storage account URL (``https://ACCOUNT.blob.core.windows.net``)."""
    blob_container: str = "output"
    """The container of task output (created if missing)."""

    bus: Literal["sqlite", "servicebus"] = "sqlite"
    """The Bus adapter: ``sqlite`` (a file in HPC_HOME) or ``servicebus`` (Azure Service Bus)."""
    servicebus_namespace: str = Field(
        default="",
        validation_alias=AliasChoices(
            "HPC_SERVICEBUS_NAMESPACE", "ServiceBusConnection__fullyQualifiedNamespace"
        ),
    )
    """Fully qualified Service Bus namespace (``NAME.servicebus.windows.net``), reached with
    DefaultAzureCredential; used when HPC_SERVICEBUS_CONNECTION_STRING is empty. In a Function
    App it is read from the triggers' own identity-based connection setting,
    ``ServiceBusConnection__fullyQualifiedNamespace``, so the namespace is set once; an agent
    (no Functions settings) sets HPC_SERVICEBUS_NAMESPACE."""
    servicebus_connection_string: str = ""
    """Service Bus connection string (a SAS key); empty: HPC_SERVICEBUS_NAMESPACE."""
    servicebus_transport: Literal["amqp", "websockets"] = "amqp"
    """``amqp`` (TCP 5671) or ``websockets`` (AMQP over WebSockets on 443: an on-prem agent
    behind a firewall that lets only outbound HTTPS through)."""

    compute: Literal["local", "azure", "none"] = "local"
    """Who provides managed nodes: ``local`` (each VM an agent process here), ``azure``
    (Azure VMs, HPC_AZURE_*; checked when the control plane is built), or ``none``."""
    azure_subscription_id: str = ""
    """HPC_COMPUTE=azure: the subscription of the node VMs (required)."""
    azure_resource_group: str = ""
    """The resource group the node VMs are created in (required)."""
    azure_location: str = ""
    """The region of the node VMs, e.g. ``westeurope`` (required)."""
    azure_subnet_id: str = ""
    """Resource id of the subnet the VMs' NICs join (required)."""
    azure_image: str = "Canonical:ubuntu-24_04-lts:server:latest"
    """``Publisher:Offer:Sku:Version`` (a marketplace image) or an image resource id
    (``/subscriptions/.../galleries/G/images/I[/versions/V]``): a Linux with cloud-init."""
    azure_vm_size: str = "Standard_D2s_v5"
    """Size of a node VM when neither ``hpc node add --size`` nor its group names one."""
    azure_admin_username: str = "hpcadmin"
    """The VMs' admin user (SSH key only, no password)."""
    azure_ssh_public_key: str = ""
    """The admin user's SSH public key (required: Azure needs one for a Linux VM)."""
    azure_node_identity_id: str = ""
    """Resource id of the user-assigned managed identity attached to every node VM: the
    agent's only credential (Service Bus, Blob), so custom data carries no secret (required)."""
    azure_node_identity_client_id: str = ""
    """That identity's client id: the agent's AZURE_CLIENT_ID (required)."""
    azure_client_id: str = ""
    """Client id of the control plane's own user-assigned managed identity for ARM calls;
    empty: DefaultAzureCredential (the Function App's system-assigned identity)."""
    azure_agent_package: str = ""
    """What a VM pip-installs to get the agent: a pip requirement (a wheel URL in the
    cluster's storage, ``hybridhpc[azure]==0.1.0``...) (required)."""
    azure_cluster: str = "hybridhpc"
    """The ``cluster`` tag of this cluster's VMs: only VMs with it are listed and managed."""
    azure_tags: dict[str, str] = Field(default_factory=dict)
    """Extra tags on every VM, as JSON (``{"costCenter": "hpc"}``)."""
    local_boot_delay_s: float = 0.0
    """How long a local "VM" takes to boot before its agent starts (to mimic Azure)."""
    local_faults: str = ""
    """A JSON file of the local provider's fault switches, read again when it changes (so a
    live cluster can be made to fail like Azure); empty: none."""
    deployment_timeout_s: float = 1200.0
    """A started node whose agent has not joined by then is stopped and counted as failed; a
    VM whose node has been Unreachable that long is deallocated (shared/domain/unreachable)."""
    scale_down_delay_s: float = 600.0
    """No scale-down of a group this soon after it grew."""

    @field_validator("blob_container")
    @classmethod
    def _container_name(cls, v: str) -> str:
        """Azure's rule for a container name, checked at start: a probe's 2-letter name was
        taken, and every task's output upload failed (OutOfRangeInput), each in a traceback."""
        if not BLOB_CONTAINER.fullmatch(v) or "--" in v:
            raise ValueError(
                "not a Blob container name: 3-63 lowercase letters, digits and single "
                "hyphens, starting and ending with a letter or digit"
            )
        return v

    @model_validator(mode="after")
    def _heard_before_lost(self) -> Settings:
        """A node must be able to heartbeat before it is declared lost, or every node flaps."""
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError(
                f"HPC_HEARTBEAT_TIMEOUT_S ({self.heartbeat_timeout_s:g}) must be longer than "
                f"HPC_HEARTBEAT_INTERVAL_S ({self.heartbeat_interval_s:g}), about 3 times or more"
            )
        return self

    @cached_property
    def home_dir(self) -> Path:
        path = self.home.expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def store_path(self) -> Path:
        return self.home_dir / "store.db"

    @property
    def bus_path(self) -> Path:
        return self.home_dir / "bus.db"

    @property
    def output_dir(self) -> Path:
        return self.home_dir / "output"

    @property
    def token_path(self) -> Path:
        return self.home_dir / "admin.token"
