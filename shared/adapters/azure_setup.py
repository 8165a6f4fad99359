"""HPC_COMPUTE=azure: the AzureProvider built from settings (HPC_AZURE_*), checked first.

A missing setting fails when the control plane is built, with one message naming every
missing setting, rather than at the first ``hpc node add``. The control plane's ARM
credential is its managed identity: ``ManagedIdentityCredential(client_id=...)`` when
HPC_AZURE_CLIENT_ID names a user-assigned one, else ``DefaultAzureCredential`` (the
Function App's system-assigned identity in Azure; ``az login`` on a workstation).
"""

from __future__ import annotations

from typing import Any

from shared.adapters.azure_compute import AzureProvider
from shared.adapters.azure_customdata import agent_settings
from shared.settings import Settings

REQUIRED: dict[str, str] = {
    "azure_subscription_id": "the subscription of the node VMs",
    "azure_resource_group": "the resource group the VMs are created in",
    "azure_location": "the VMs' region, e.g. westeurope",
    "azure_subnet_id": "the resource id of the subnet the VMs join",
    "azure_ssh_public_key": "the admin user's SSH public key",
    "azure_node_identity_id": "the resource id of the user-assigned identity the VMs get",
    "azure_node_identity_client_id": "that identity's client id (the agent's AZURE_CLIENT_ID)",
    "azure_agent_package": "the pip requirement a VM installs the agent from",
    "servicebus_namespace": "the Service Bus namespace the VMs' agents reach with their identity",
    "blob_account_url": "the Blob storage account the VMs' agents write task output to",
}
"""Settings HPC_COMPUTE=azure cannot start without, and what each is."""


def env_name(field: str) -> str:
    return f"HPC_{field.upper()}"


def problems(settings: Settings) -> list[str]:
    """What is missing or wrong for HPC_COMPUTE=azure, one line each (empty: all set)."""
    out = [
        f"{env_name(field)} ({what})"
        for field, what in REQUIRED.items()
        if not str(getattr(settings, field)).strip()
    ]
    if settings.bus != "servicebus":
        out.append("HPC_BUS=servicebus (a VM's agent cannot reach an embedded bus)")
    if settings.output != "blob":
        out.append("HPC_OUTPUT=blob (a VM's task output must reach the control plane)")
    try:
        image_reference(settings.azure_image)
    except ValueError as exc:
        out.append(str(exc))
    return out


def image_reference(image: str) -> dict[str, str]:
    """HPC_AZURE_IMAGE as an ARM imageReference: a resource id (a gallery image or image
    version, a managed image) or a marketplace ``Publisher:Offer:Sku:Version``."""
    text = image.strip()
    if text.lower().startswith("/subscriptions/"):
        return {"id": text}
    parts = text.split(":")
    if len(parts) == 4 and all(p.strip() for p in parts):
        return dict(zip(("publisher", "offer", "sku", "version"), parts, strict=True))
    raise ValueError(
        f"HPC_AZURE_IMAGE={image!r}: expected Publisher:Offer:Sku:Version "
        "(e.g. Canonical:ubuntu-24_04-lts:server:latest) or an image resource id "
        "(/subscriptions/.../galleries/G/images/I)"
    )


def credential_for(settings: Settings) -> Any:
    """The control plane's credential for ARM (see the module docstring)."""
    if settings.azure_client_id:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=settings.azure_client_id)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def azure_provider(settings: Settings, **client_kwargs: Any) -> AzureProvider:
    """The provider HPC_COMPUTE=azure selects. ``client_kwargs`` go to the ARM client
    (tests pass ``transport`` and ``credential``). Raises ValueError naming what is missing."""
    wrong = problems(settings)
    if wrong:
        raise ValueError("HPC_COMPUTE=azure needs: " + "; ".join(wrong))
    credential = client_kwargs.pop("credential", None) or credential_for(settings)
    return AzureProvider(
        subscription_id=settings.azure_subscription_id,
        resource_group=settings.azure_resource_group,
        location=settings.azure_location,
        subnet_id=settings.azure_subnet_id,
        cluster=settings.azure_cluster,
        image=image_reference(settings.azure_image),
        ssh_public_key=settings.azure_ssh_public_key,
        agent_package=settings.azure_agent_package,
        agent_environment=agent_settings(settings),
        node_identity_id=settings.azure_node_identity_id,
        node_identity_client_id=settings.azure_node_identity_client_id,
        tags=settings.azure_tags,
        default_size=settings.azure_vm_size,
        admin_username=settings.azure_admin_username,
        credential=credential,
        **client_kwargs,
    )
