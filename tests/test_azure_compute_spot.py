"""AzureProvider's Spot VMs: the request that asks for one, and evictions.

Against recorded-shape ARM traffic (tests/azure_compute_fixtures.py).
"""

from __future__ import annotations

from shared.adapters.azure_compute import AzureProvider
from shared.ports.compute import VmSpec
from tests.arm_double import ArmSimulator, FakeCredential
from tests.azure_compute_fixtures import AZ, LOCATION, NOW, RG, SUB, SUBNET, op
from tests.test_control import Clock, make_cp

# -------------------------------------------------------------------- spot


def simulated(arm: ArmSimulator) -> AzureProvider:
    """An AzureProvider over the stateful ARM double (which keeps each PUT's body)."""
    return AzureProvider(
        subscription_id=SUB,
        resource_group=RG,
        location=LOCATION,
        subnet_id=SUBNET,
        cluster="c1",
        image={"publisher": "Canonical", "offer": "o", "sku": "s", "version": "latest"},
        ssh_public_key="ssh-ed25519 AAAA test",
        credential=FakeCredential(),
        transport=arm,
    )


SPOT = {"priority": "Spot", "evictionPolicy": "Deallocate", "billingProfile": {"maxPrice": -1}}


def test_a_spot_vm_is_put_with_spot_priority_deallocated_on_eviction_at_any_price():
    arm = ArmSimulator()
    azure = simulated(arm)
    op(azure.create(VmSpec("az-1", AZ, 4, spot=True), request_id="c1", now=NOW))
    op(azure.create(VmSpec("az-2", AZ, 4), request_id="c2", now=NOW))
    assert [c[0] for c in arm.calls] == ["PUT", "PUT"]
    spot, regular = arm.vms["az-1"].body["properties"], arm.vms["az-2"].body["properties"]
    assert {k: spot.get(k) for k in SPOT} == SPOT
    assert not set(SPOT) & set(regular)  # a regular VM is not a Spot one


def test_hpc_node_add_spot_reaches_arm_and_marks_the_nodes(tmp_path):
    cp = make_cp(tmp_path, Clock())
    arm = ArmSimulator()
    cp.deps.compute = simulated(arm)
    cp.set_group(AZ, provider="azure", max_nodes=4, node_cores=4)
    added = cp.add_nodes("azurenodes", 2, spot=True, size="Standard_D4s_v5")
    assert [(n.name, n.spot, n.groups) for n in added] == [
        ("azure-1", True, [AZ]),
        ("azure-2", True, [AZ]),
    ]
    assert [n["spot"] for n in cp.list_nodes()] == [True, True]
    for name in ("azure-1", "azure-2"):
        props = arm.vms[name].body["properties"]
        assert {k: props.get(k) for k in SPOT} == SPOT
        assert props["hardwareProfile"] == {"vmSize": "Standard_D4s_v5"}
    [plain] = cp.add_nodes(AZ, 1)
    assert not plain.spot and "priority" not in arm.vms[plain.name].body["properties"]
