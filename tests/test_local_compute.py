"""LocalProvider with real agent processes against a temporary HPC_HOME bus.

The test plays the control plane on the embedded bus (``ControlPlane`` from
tests/agent_fixtures.py). Waits are on conditions (an event arrives, a power
state changes), never fixed sleeps.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters import local_compute
from shared.adapters.local_compute import LocalProvider
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.domain.autoscaler import AutoscalerPolicy, ClusterView, GroupPolicy, autoscale
from shared.domain.autoscaler import AutoscalerState as State
from shared.domain.cluster import Node
from shared.domain.messages import NodeStopping, RegisterNode
from shared.domain.states import NodeState
from shared.ports.compute import ComputeError, ErrorKind, Operation, PowerState, VmSpec
from shared.wiring import declare_queues
from tests.agent_fixtures import ControlPlane
from tests.helpers import ROOT, child_env, process_alive, wait_until

NOW = datetime(2026, 1, 1, tzinfo=UTC)
AZ = "AzureNodes"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def bus(home: Path) -> Iterator[SqliteBus]:
    bus = SqliteBus(home / "bus.db")
    declare_queues(SqliteBusAdmin(bus))
    yield bus
    bus.close()


@pytest.fixture
def provider(home: Path) -> Iterator[LocalProvider]:
    provider = LocalProvider(home, env=child_env(home), cwd=ROOT)
    yield provider
    provider.close()


def spec(name: str, cores: int = 2) -> VmSpec:
    return VmSpec(name=name, group=AZ, cores=cores)


def op(result: Operation | ComputeError) -> Operation:
    assert isinstance(result, Operation), result
    return result


def created(provider: LocalProvider, name: str) -> None:
    operation = op(provider.create(spec(name), request_id=f"create-{name}", now=NOW))
    assert provider.poll(operation, now=NOW).status == "succeeded"


def registered(cp: ControlPlane, name: str) -> RegisterNode:
    return cp.wait_for(RegisterNode, lambda e: e.node == name, timeout=30)


def test_created_vm_is_deallocated_until_started_then_its_agent_joins_and_stops_cleanly(
    provider, bus
):
    created(provider, "az-1")
    assert provider.power_states() == {"az-1": PowerState.DEALLOCATED}
    start = op(provider.start("az-1", request_id="start-1", now=NOW))
    cp = ControlPlane(bus, node="az-1")
    joined = registered(cp, "az-1")
    assert (joined.groups, joined.cores) == ([AZ], 2)
    assert provider.poll(start, now=NOW).status == "succeeded"
    assert provider.power_states() == {"az-1": PowerState.RUNNING}

    stop = op(provider.deallocate("az-1", request_id="stop-1", now=NOW))
    wait_until(lambda: provider.poll(stop, now=NOW).status == "succeeded", 15, "deallocated")
    cp.wait_for(NodeStopping)  # SIGTERM: the agent said goodbye
    assert provider.power_states() == {"az-1": PowerState.DEALLOCATED}


def test_start_waits_out_the_boot_delay_without_blocking(home, bus):
    provider = LocalProvider(home, env=child_env(home), cwd=ROOT, boot_delay_s=0.5)
    try:
        created(provider, "slow")
        start = op(provider.start("slow", request_id="s", now=NOW))
        assert provider.power_states()["slow"] is PowerState.STARTING
        assert provider.poll(start, now=NOW).status == "running"
        wait_until(lambda: provider.poll(start, now=NOW).status == "succeeded", 10, "booted")
        registered(ControlPlane(bus, node="slow"), "slow")
    finally:
        provider.close()


def test_calls_are_idempotent_per_request_id(provider):
    created(provider, "az-1")
    first = op(provider.start("az-1", request_id="start-1", now=NOW))
    pid = provider.pid("az-1")
    again = op(provider.start("az-1", request_id="start-1", now=NOW))
    assert again == first and provider.pid("az-1") == pid
    # A start of a running VM with a new request id starts nothing new either.
    op(provider.start("az-1", request_id="start-2", now=NOW))
    assert provider.pid("az-1") == pid


def test_delete_forgets_the_vm_and_kills_its_process(provider, bus):
    created(provider, "az-1")
    op(provider.start("az-1", request_id="s", now=NOW))
    registered(ControlPlane(bus, node="az-1"), "az-1")
    pid = provider.pid("az-1")
    assert pid is not None
    delete = op(provider.delete("az-1", request_id="d", now=NOW))
    assert provider.poll(delete, now=NOW).status == "succeeded"
    assert provider.power_states() == {} and not process_alive(pid)
    missing = provider.start("az-1", request_id="s2", now=NOW)
    assert isinstance(missing, ComputeError) and missing.kind is ErrorKind.NOT_FOUND


def test_a_vm_started_from_a_thread_that_ends_lives_on(provider, bus):
    """A VM dies with the control plane that runs it (Linux's parent-death signal), which
    Linux sends when the *thread* that forked it ends: VMs started from a web server's worker
    thread were SIGTERMed when it was retired (a fault probe). They are forked from the
    provider's own thread."""
    created(provider, "az-1")
    caller = threading.Thread(target=lambda: provider.start("az-1", request_id="s", now=NOW))
    caller.start()
    caller.join()
    cp = ControlPlane(bus, node="az-1")
    registered(cp, "az-1")
    spare = ControlPlane(bus, node="az-2")  # a second VM: the provider's thread is reused
    created(provider, "az-2")
    op(provider.start("az-2", request_id="s2", now=NOW))
    registered(spare, "az-2")
    assert not any(isinstance(e, NodeStopping) for e in cp.events)  # az-1 was not stopped
    assert provider.power_states()["az-1"] is PowerState.RUNNING


def test_a_restarted_provider_boots_again_at_once_the_vms_that_were_on_and_only_those(home, bus):
    """Its VMs outlive the provider, as Azure's outlive the control plane (shared/adapters/
    local_vms.py): a fault probe's kill of the whole cluster left a task that ended on a VM
    unreported, and the task ran again. The new VM agent waits for the old one to exit."""
    before = LocalProvider(home, env=child_env(home), cwd=ROOT, boot_delay_s=30)
    created(before, "on-1")
    created(before, "off-1")
    before.boot_delay_s = 0
    op(before.start("on-1", request_id="s", now=NOW))
    cp = ControlPlane(bus, node="on-1")
    registered(cp, "on-1")
    old = before.pid("on-1")
    assert old is not None
    # The control plane that ran `before` is killed: nothing of it runs any more, but its VM
    # still does, and a new provider starts on the same home.
    after = LocalProvider(home, env=child_env(home), cwd=ROOT, boot_delay_s=30)
    try:
        assert after.power_states() == {"on-1": PowerState.RUNNING, "off-1": PowerState.DEALLOCATED}
        assert after.pid("on-1") not in (None, old)
        os.kill(old, signal.SIGTERM)  # the old agent stops (PDEATHSIG does this for real)
        cp.wait_for(NodeStopping, lambda e: e.node == "on-1", timeout=30)
        registered(ControlPlane(bus, node="on-1"), "on-1")  # the new one took the name over
        assert after.power_states()["on-1"] is PowerState.RUNNING
        stop = op(after.deallocate("on-1", request_id="d", now=NOW))
        wait_until(lambda: after.poll(stop, now=NOW).status == "succeeded", 15, "deallocated")
        op(after.delete("off-1", request_id="x", now=NOW))
    finally:
        after.close()
    again = LocalProvider(home, env=child_env(home), cwd=ROOT)
    assert again.power_states() == {"on-1": PowerState.DEALLOCATED}  # off, and off-1 deleted
    assert again.pid("on-1") is None


# ----------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", [ErrorKind.ALLOCATION_FAILED, ErrorKind.SKU_NOT_AVAILABLE])
def test_fault_creation_fails_as_a_value(provider, kind):
    provider.faults.fail_create = kind
    error = provider.create(spec("az-1"), request_id="c", now=NOW)
    assert isinstance(error, ComputeError) and error.kind is kind
    assert provider.power_states() == {}


def test_fault_quota_exceeded_refuses_creates_and_starts(provider):
    created(provider, "az-1")
    provider.faults.quota_exceeded = True
    for result in (
        provider.create(spec("az-2"), request_id="c2", now=NOW),
        provider.start("az-1", request_id="s1", now=NOW),
    ):
        assert isinstance(result, ComputeError) and result.kind is ErrorKind.QUOTA_EXCEEDED
    assert provider.pid("az-1") is None


def test_fault_vm_runs_but_its_agent_never_joins(provider, bus):
    created(provider, "mute")
    created(provider, "ok")
    provider.faults.never_joins.add("mute")
    mute = op(provider.start("mute", request_id="m", now=NOW))
    op(provider.start("ok", request_id="o", now=NOW))
    cp = ControlPlane(bus, node="ok")
    registered(cp, "ok")  # started after "mute", and it joined
    assert provider.poll(mute, now=NOW).status == "succeeded"  # the cloud says: running
    assert provider.power_states()["mute"] is PowerState.RUNNING
    assert [e.node for e in cp.of(RegisterNode)] == ["ok"]
    cmdline = Path(f"/proc/{provider.pid('mute')}/cmdline").read_bytes()
    assert b"agent" not in cmdline


def test_fault_eviction_kills_the_agent_and_the_autoscaler_marks_the_node_offline(provider, bus):
    created(provider, "spot")
    op(provider.start("spot", request_id="s", now=NOW))
    cp = ControlPlane(bus, node="spot")
    registered(cp, "spot")
    pid = provider.pid("spot")
    assert pid is not None
    provider.evict("spot")
    assert not process_alive(pid)
    assert provider.power_states() == {"spot": PowerState.DEALLOCATED}
    assert cp.of(NodeStopping) == []  # killed: no clean goodbye

    node = Node(name="spot", groups=[AZ], cores=2, state=NodeState.ONLINE, provider="local")
    power = provider.power_states()
    view = ClusterView(nodes=[node], queued=[], used_cores={"spot": 1}, power=power)
    decision = autoscale(view, AutoscalerPolicy(groups={AZ: GroupPolicy(2)}), State(), NOW)
    assert [(o.action, o.node) for o in decision.orders] == [("offline", "spot")]


def test_a_hung_vm_is_killed_a_grace_after_its_deallocation_and_may_start_again(
    provider, bus, monkeypatch, caplog
):
    """A probe's `hpc node stop` of a VM whose agent was SIGSTOPped: SIGTERM never ended it,
    so it stayed deallocating and its start was refused ("being deallocated") until resumed
    by hand. As Azure's deallocate always ends, SIGKILL follows a grace, checked when the
    provider is next asked (no call waits for it)."""
    monkeypatch.setattr(local_compute, "DEALLOCATE_GRACE_S", 0.3, raising=False)
    created(provider, "hung")
    op(provider.start("hung", request_id="s1", now=NOW))
    registered(ControlPlane(bus, node="hung"), "hung")  # a real agent: it handles SIGTERM
    pid = provider.pid("hung")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # frozen: the SIGTERM it handles stays pending
    stop = op(provider.deallocate("hung", request_id="d1", now=NOW))
    assert provider.poll(stop, now=NOW).status == "running"  # within its grace
    assert process_alive(pid)
    time.sleep(0.35)  # past its grace: the next two asks, back to back, find it due
    provider.power_states()
    provider.power_states()
    wait_until(lambda: provider.poll(stop, now=NOW).status == "succeeded", 10, "deallocated")
    assert not process_alive(pid)
    kills = [r for r in caplog.records if "did not stop" in r.getMessage()]
    assert len(kills) == 1  # one kill, said once (a probe read each twice)
    assert provider.power_states() == {"hung": PowerState.DEALLOCATED}
    assert isinstance(provider.start("hung", request_id="s2", now=NOW), Operation)
    assert provider.power_states()["hung"] is not PowerState.DEALLOCATING
