"""The Compute port's contract, run on every adapter.

``local`` starts real agent processes (against a temporary HPC_HOME nobody
answers, which is enough: the contract is about the machine, not the node).
``azure`` runs AzureProvider over tests/arm_double.py, a stateful stand-in
for ARM, because no Azure is reachable here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.ports.compute import (
    ComputeError,
    ComputeProvider,
    ErrorKind,
    Operation,
    PowerState,
    VmSpec,
)
from tests.arm_double import ArmSimulator, FakeCredential
from tests.helpers import ROOT, child_env, wait_until

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def local(tmp_path: Path) -> ComputeProvider:
    home = tmp_path / "home"
    home.mkdir()
    return LocalProvider(home, env=child_env(home), cwd=ROOT)


def azure(tmp_path: Path) -> ComputeProvider:
    from shared.adapters.azure_compute import AzureProvider

    sub = "00000000-0000-0000-0000-000000000002"
    return AzureProvider(
        subscription_id=sub,
        resource_group="rg",
        location="westeurope",
        subnet_id=f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s",
        cluster="c1",
        image={"publisher": "Canonical", "offer": "o", "sku": "s", "version": "latest"},
        ssh_public_key="ssh-ed25519 AAAA",
        credential=FakeCredential(),
        transport=ArmSimulator(),
    )


PROVIDERS: dict[str, Callable[[Path], ComputeProvider]] = {"local": local, "azure": azure}


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ComputeProvider]:
    made = PROVIDERS[request.param](tmp_path)
    yield made
    if isinstance(made, LocalProvider):
        made.close()


def handle(result: Operation | ComputeError) -> Operation:
    assert isinstance(result, Operation), result
    return result


def settle(provider: ComputeProvider, operation: Operation) -> str:
    """Poll (as later timer runs would) until done, following a provider's follow-up."""
    current = [operation]

    def done() -> str | None:
        result = provider.poll(current[0], now=NOW)
        if result.next is not None:
            current[0] = result.next
            return None
        return result.status if result.done else None

    return wait_until(done, timeout=20, what=f"{operation.action} of {operation.vm}")


def power(provider: ComputeProvider, vm: str) -> PowerState | None:
    states = provider.power_states()
    assert not isinstance(states, ComputeError), states
    return states.get(vm)


def test_created_vm_ends_deallocated(provider):
    create = handle(provider.create(VmSpec("n1", "AzureNodes", 2), request_id="c", now=NOW))
    assert settle(provider, create) == "succeeded"
    assert power(provider, "n1") is PowerState.DEALLOCATED


def test_start_then_deallocate(provider):
    settle(
        provider, handle(provider.create(VmSpec("n1", "AzureNodes", 1), request_id="c", now=NOW))
    )
    assert settle(provider, handle(provider.start("n1", request_id="s", now=NOW))) == "succeeded"
    assert power(provider, "n1") is PowerState.RUNNING
    stop = handle(provider.deallocate("n1", request_id="d", now=NOW))
    assert settle(provider, stop) == "succeeded"
    assert power(provider, "n1") is PowerState.DEALLOCATED


def test_delete_removes_the_vm(provider):
    settle(
        provider, handle(provider.create(VmSpec("n1", "AzureNodes", 1), request_id="c", now=NOW))
    )
    assert settle(provider, handle(provider.delete("n1", request_id="x", now=NOW))) == "succeeded"
    assert power(provider, "n1") is None


def test_a_repeated_request_id_returns_the_same_handle(provider):
    settle(
        provider, handle(provider.create(VmSpec("n1", "AzureNodes", 1), request_id="c", now=NOW))
    )
    first = handle(provider.start("n1", request_id="s", now=NOW))
    assert handle(provider.start("n1", request_id="s", now=NOW)) == first


def test_an_unknown_vm_is_a_not_found_value(provider):
    error = provider.start("nobody", request_id="s", now=NOW)
    assert isinstance(error, ComputeError) and error.kind is ErrorKind.NOT_FOUND
