"""HPC_COMPUTE=azure: its settings and the wiring that builds the AzureProvider from them
(custom data: tests/test_azure_customdata.py; autoscaler runs: tests/test_azure_runs.py).

No Azure is reachable here: the provider's ARM client talks to :class:`ArmSimulator`
(tests/arm_double.py), a stateful stand-in for ARM's virtualMachines API through
azure-core's transport; the credential is a canned token. Everything else (settings,
wiring, control plane, autoscaler run, store, bus) is the real code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.adapters import azure_setup
from shared.adapters.azure_compute import AzureProvider
from shared.settings import Settings
from shared.wiring import build_compute
from tests.arm_double import ArmSimulator, FakeCredential

ROOT = Path(__file__).resolve().parent.parent
SUB = "00000000-0000-0000-0000-000000000003"
RG = "hpc-rg"
SUBNET = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/v/subnets/nodes"
IDENTITY = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/hpc-nodes"
GALLERY = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/galleries/g/images/hpc-node"
AZ = "AzureNodes"

AZURE = {
    "compute": "azure",
    "azure_subscription_id": SUB,
    "azure_resource_group": RG,
    "azure_location": "westeurope",
    "azure_subnet_id": SUBNET,
    "azure_ssh_public_key": "ssh-ed25519 AAAAC3Nza admin@example",
    "azure_node_identity_id": IDENTITY,
    "azure_node_identity_client_id": "11111111-2222-3333-4444-555555555555",
    "azure_agent_package": "https://st.blob.core.windows.net/dist/hybridhpc-0.1.0-py3-none-any.whl",
    "azure_tags": {"costCenter": "hpc"},
    "bus": "servicebus",
    "servicebus_namespace": "hpc-ns.servicebus.windows.net",
    "output": "blob",
    "blob_account_url": "https://st.blob.core.windows.net",
}
"""Every setting HPC_COMPUTE=azure needs, as a deployment would set them."""


def azure_settings(tmp_path: Path, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path,
        "heartbeat_timeout_s": 10,
        "dispatch_timeout_s": 30,
        **AZURE,
    }
    return Settings(**{**values, **over})


def built(settings: Settings, arm: ArmSimulator) -> AzureProvider:
    provider = build_compute(settings, credential=FakeCredential(), transport=arm)
    assert isinstance(provider, AzureProvider)
    return provider


# ------------------------------------------------------------- settings and wiring


def test_compute_azure_builds_the_azure_provider_from_its_settings(tmp_path):
    arm = ArmSimulator()
    provider = built(azure_settings(tmp_path, azure_image=GALLERY), arm)
    assert (provider.resource_group, provider.location, provider.subnet_id) == (
        RG,
        "westeurope",
        SUBNET,
    )
    assert provider.image == {"id": GALLERY}
    assert (provider.default_size, provider.admin_username, provider.cluster) == (
        "Standard_D2s_v5",
        "hpcadmin",
        "hybridhpc",
    )
    assert provider.node_identity_client_id == AZURE["azure_node_identity_client_id"]
    assert provider.agent_environment["HPC_SERVICEBUS_NAMESPACE"] == AZURE["servicebus_namespace"]
    assert provider.power_states() == {}  # it reaches ARM through the double
    assert arm.calls == [
        (
            "GET",
            f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines",
        )
    ]


@pytest.mark.parametrize("field", sorted(azure_setup.REQUIRED))
def test_a_missing_azure_setting_fails_at_start_naming_it(tmp_path, field):
    settings = azure_settings(tmp_path, **{field: ""})
    with pytest.raises(ValueError, match=re.escape(f"HPC_{field.upper()} (")):
        build_compute(settings, credential=FakeCredential(), transport=ArmSimulator())


@pytest.mark.parametrize(
    ("over", "named"),
    [
        ({"bus": "sqlite"}, "HPC_BUS=servicebus"),
        ({"output": "local"}, "HPC_OUTPUT=blob"),
        (
            {"azure_image": "ubuntu"},
            "HPC_AZURE_IMAGE='ubuntu': expected Publisher:Offer:Sku:Version",
        ),
    ],
)
def test_settings_a_vm_agent_cannot_work_with_fail_at_start(tmp_path, over, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        build_compute(azure_settings(tmp_path, **over), credential=FakeCredential())


def test_the_function_app_refuses_to_start_with_compute_azure_and_nothing_set(
    tmp_path, monkeypatch
):
    """Every missing name in one message, from the environment as in Azure's app settings."""
    from functions import context
    from shared.errors import Misconfigured

    for name in [*azure_setup.REQUIRED, "bus", "output"]:
        monkeypatch.delenv(f"HPC_{name.upper()}", raising=False)
    monkeypatch.setenv("HPC_HOME", str(tmp_path))
    monkeypatch.setenv("HPC_COMPUTE", "azure")
    context.reset()
    with pytest.raises(Misconfigured) as err:  # a 503 saying it, on every route
        context.control()
    context.reset()
    message = str(err.value)
    assert message.startswith("the control plane cannot start: HPC_COMPUTE=azure needs: ")
    for field in azure_setup.REQUIRED:
        assert f"HPC_{field.upper()}" in message
    assert "HPC_BUS=servicebus" in message and "HPC_OUTPUT=blob" in message


def test_azure_settings_are_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HPC_COMPUTE", "azure")
    monkeypatch.setenv("HPC_AZURE_TAGS", '{"costCenter": "hpc", "owner": "team"}')
    monkeypatch.setenv("HPC_AZURE_VM_SIZE", "Standard_HB120rs_v3")
    settings = Settings(home=tmp_path)
    assert settings.compute == "azure"
    assert settings.azure_tags == {"costCenter": "hpc", "owner": "team"}
    assert settings.azure_vm_size == "Standard_HB120rs_v3"
    monkeypatch.setenv("HPC_COMPUTE", "aws")
    with pytest.raises(ValueError, match="'local', 'azure' or 'none'"):
        Settings(home=tmp_path)


@pytest.mark.parametrize(
    ("image", "reference"),
    [
        (
            "Canonical:ubuntu-24_04-lts:server:latest",
            {
                "publisher": "Canonical",
                "offer": "ubuntu-24_04-lts",
                "sku": "server",
                "version": "latest",
            },
        ),
        (GALLERY, {"id": GALLERY}),
        (f"{GALLERY}/versions/1.0.0", {"id": f"{GALLERY}/versions/1.0.0"}),
        (
            " Canonical:o:s:1.2.3 ",
            {"publisher": "Canonical", "offer": "o", "sku": "s", "version": "1.2.3"},
        ),
    ],
)
def test_the_image_setting_becomes_an_image_reference(image, reference):
    assert azure_setup.image_reference(image) == reference


@pytest.mark.parametrize("image", ["", "Canonical:ubuntu", "a:b::d", "ubuntu-24.04"])
def test_a_malformed_image_setting_says_what_is_expected(image):
    with pytest.raises(ValueError, match="expected Publisher:Offer:Sku:Version"):
        azure_setup.image_reference(image)


class _Recorded:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


def test_the_control_planes_credential_is_its_user_assigned_identity_when_named(
    tmp_path, monkeypatch
):
    import azure.identity

    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", _Recorded)
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", _Recorded)
    named = azure_setup.credential_for(azure_settings(tmp_path, azure_client_id="cp-client"))
    assert isinstance(named, _Recorded) and named.kwargs == {"client_id": "cp-client"}
    default = azure_setup.credential_for(azure_settings(tmp_path))
    assert isinstance(default, _Recorded) and default.kwargs == {}


def test_every_azure_setting_is_documented_in_the_readme_and_the_example_settings():
    readme = (ROOT / "README.md").read_text()
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    names = [f"HPC_{f.upper()}" for f in Settings.model_fields if f.startswith("azure_")]
    assert len(names) >= 14
    for name in names:
        assert f"| `{name}` |" in readme, f"{name} is not in README's settings table"
        assert name in example, f"{name} is not in local.settings.json.example"
