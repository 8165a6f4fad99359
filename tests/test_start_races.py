"""A managed node's start against what can happen meanwhile: another start of the same node,
its removal, a start the provider ends with a 409; and the local provider's faults file.

The races are played on the local provider (its "VMs" are processes that run no agent
here); Azure's error shapes against the ARM double (tests/arm_double.py) and recorded-shape
ARM traffic (tests/azure_compute_fixtures.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.domain.states import NodeState
from shared.errors import Conflict, NotFound
from shared.ports.compute import ErrorKind, PowerState
from shared.usecases.autoscale_log import read_log
from tests.azure_compute_fixtures import NOW, OPS, VMS, accepted, op, status
from tests.test_autoscale_faults_local import faults, spec, write  # noqa: F401 - fixture
from tests.test_autoscale_faults_usecases import backoff_until, managed, provider  # noqa: F401
from tests.test_azure_runs import AZ, Cluster, backoff
from tests.test_control import clock, cp  # noqa: F401 - fixtures

OFF = (PowerState.DEALLOCATED, PowerState.DEALLOCATING)

# --------------------------------------------------------- two starts racing


def race(provider: LocalProvider, meanwhile: Callable[[str], Any]) -> None:  # noqa: F811
    """The next start of a VM runs ``meanwhile`` once the provider's start is begun, before
    the node is written (the window an autoscaler run and an admin's start share)."""
    start = provider.start

    def racing_start(vm: str, **kw: Any) -> Any:
        result = start(vm, **kw)
        provider.start = start  # type: ignore[method-assign]
        meanwhile(vm)
        return result

    provider.start = racing_start  # type: ignore[method-assign]


def test_a_start_racing_another_start_of_the_node_keeps_its_vm_running(cp, provider, clock):  # noqa: F811
    """Two `hpc node start` (or the autoscaler and an admin): the start whose write lost
    deallocated the VM the other had just started, leaving the node Starting with its VM off
    until the deployment timeout, counted as capacity all the while."""
    provider.boot_delay_s = 30
    [name] = managed(cp, provider, 1)
    race(provider, lambda vm: cp.node_action("start", [vm]))
    [node] = cp.node_action("start", [name])  # no "the later action wins: not started"
    assert node.state is NodeState.STARTING
    assert provider.power_states()[name] not in OFF
    clock.advance(1)
    cp.autoscale()  # polls the start: still booting, no preemption
    assert cp.store.get_node(name).state is NodeState.STARTING
    assert provider.power_states()[name] not in OFF
    assert backoff_until(cp) is None
    assert not [e for e in read_log(cp.deps) if e["action"] == "start failed"]


def test_an_autoscaler_start_racing_an_admins_start_is_no_refusal(cp, provider, clock):  # noqa: F811
    provider.boot_delay_s = 30
    [name] = managed(cp, provider, 1)
    cp.submit({"command": "x", "nodeGroups": [AZ]})
    race(provider, lambda vm: cp.node_action("start", [vm]))
    clock.advance(1)
    cp.autoscale()  # its start lost the write to the admin's
    assert cp.store.get_node(name).state is NodeState.STARTING
    assert provider.power_states()[name] not in OFF
    assert backoff_until(cp) is None


def test_a_stop_racing_a_start_still_wins(cp, provider, clock):  # noqa: F811
    """Only another start keeps the VM: an admin's stop (Stopping) still undoes the start."""
    provider.boot_delay_s = 30
    [name] = managed(cp, provider, 1)

    def start_then_stop(vm: str) -> None:
        cp.node_action("start", [vm])
        cp.node_action("stop", [vm])

    race(provider, start_then_stop)
    with pytest.raises(Conflict, match="later action wins"):
        cp.node_action("start", [name])
    assert cp.store.get_node(name).state is NodeState.STOPPING
    assert provider.power_states()[name] in OFF


# ------------------------------------------------------ a removal mid-start


def test_a_node_removed_during_its_start_leaves_no_vm_running(cp, provider, clock):  # noqa: F811
    """The removal deleted the VM and the record; the start found no VM, created it again
    and started it: a running VM no record owns, that nothing would ever stop."""
    [name] = managed(cp, provider, 1)
    start = provider.start

    def removed_first(vm: str, **kw: Any) -> Any:
        provider.start = start  # type: ignore[method-assign]
        cp.node_action("remove", [vm])
        return start(vm, **kw)

    provider.start = removed_first  # type: ignore[method-assign]
    with pytest.raises(NotFound):
        cp.node_action("start", [name])
    assert name not in provider.power_states()
    assert provider.pid(name) is None


def test_a_vm_started_for_a_node_deleted_at_its_write_is_deleted(cp, provider, clock):  # noqa: F811
    """A store that says NotFound at the write itself (Cosmos, a replace of a deleted
    document): the VM the start began is deleted too."""
    [name] = managed(cp, provider, 1)

    def gone(vm: str) -> None:
        store = cp.store
        store.delete_node(store.get_node(vm))

    race(provider, gone)
    put = cp.store.put_node

    def put_node(node: Any) -> None:
        if node.name == name:
            raise NotFound(f"node {name!r} does not exist")
        put(node)

    cp.store.put_node = put_node  # type: ignore[method-assign]
    try:
        with pytest.raises(NotFound):
            cp.node_action("start", [name])
    finally:
        cp.store.put_node = put  # type: ignore[method-assign]
    assert name not in provider.power_states()


# ------------------------------------------ a start the provider ends with a 409


def started(cluster: Cluster, code: str, message: str) -> str:
    """One node started for queued work; ARM accepts the start, then fails its operation."""
    [name] = cluster.added(1)
    cluster.cp.submit({"command": "x", "nodeGroups": [AZ]})
    cluster.arm.fail_operation("start", name, code, message)
    assert ("POST", f"/{name}/start") in cluster.run()
    assert cluster.state(name) is NodeState.STARTING
    cluster.clock.advance(5)
    cluster.run()  # polls the start's operation: Failed
    return name


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("Conflict", "The operation 'start' is not allowed: the VM is marked for deletion"),
        ("OperationNotAllowed", "Operation 'start' is not allowed on a VM being migrated"),
    ],
)
def test_an_azure_start_failed_with_a_409_is_a_failure_not_a_preemption(tmp_path, code, message):
    """Only a preempted start is the cluster's own doing: ARM's other 409s left the node
    Starting with its VM off until the deployment timeout, with no backoff."""
    cluster = Cluster(tmp_path)
    name = started(cluster, code, message)
    node = cluster.cp.store.get_node(name)
    assert node.state is NodeState.OFFLINE and message in (node.state_reason or "")
    assert message in str(backoff(cluster).last_failure)
    assert backoff(cluster).backoff_until is not None
    assert [e for e in cluster.cp.autoscale_log(group=AZ) if e["action"] == "start failed"]


def test_an_azure_start_preempted_by_a_later_operation_backs_nothing_off(tmp_path):
    cluster = Cluster(tmp_path)
    started(cluster, "OperationPreempted", "Operation execution has been preempted")
    assert backoff(cluster).backoff_until is None
    assert not [e for e in cluster.cp.autoscale_log(group=AZ) if e["action"] == "start failed"]


def test_arm_operation_preempted_is_a_conflict_that_keeps_its_code(azure, arm):
    arm.on("POST", f"{VMS}/az-1/start", accepted("op-s"))
    preempted = {"code": "OperationPreempted", "message": "preempted by a more recent operation"}
    arm.on("GET", f"{OPS}/op-s", status("Failed", preempted))
    result = azure.poll(op(azure.start("az-1", request_id="s", now=NOW)), now=NOW)
    assert result.status == "failed" and result.error is not None
    assert (result.error.kind, result.error.code) == (ErrorKind.CONFLICT, "OperationPreempted")


def test_a_local_start_preempted_by_a_deallocation_backs_nothing_off(cp, provider, clock):  # noqa: F811
    provider.boot_delay_s = 30
    [name] = managed(cp, provider, 1)
    cp.node_action("start", [name])
    provider.deallocate(name, request_id="outside", now=clock())
    clock.advance(1)
    cp.autoscale()
    assert backoff_until(cp) is None
    assert not [e for e in read_log(cp.deps) if e["action"] == "start failed"]


def test_a_start_of_a_lost_vm_says_a_new_start_creates_it(cp, provider, clock):  # noqa: F811
    [name] = managed(cp, provider, 1)
    cp.node_action("start", [name])
    provider.delete(name, request_id="lost", now=clock())  # the provider forgot it
    clock.advance(1)
    cp.autoscale()
    node = cp.store.get_node(name)
    assert node.state is NodeState.OFFLINE
    assert node.state_reason == (
        "its VM was lost (the provider forgot it, e.g. after a restart, or it was deleted); "
        "Offline: a new start creates it again"
    )  # not "it starts again": nothing restarts it unless the autoscaler still wants it
    # in hpc autoscale log too, with no back-off (a re-probe found it in the host's log only)
    [entry] = [e for e in read_log(cp.deps) if e["action"] == "start lost"]
    assert entry["node"] == name and "its VM was lost" in entry["reason"]
    assert backoff_until(cp) is None


def test_a_log_entry_speaks_of_no_back_off_that_is_over():
    """A probe, after a control-plane crash: "start lost ... AzureNodes backs off -25 s (until
    05:58:10)", a back-off already over (a lost VM backs nothing off)."""
    from datetime import UTC, datetime, timedelta

    from shared.domain.autoscaler import AutoscalerState, Decision, StartFailure
    from shared.domain.growshrink import GroupMemory
    from shared.usecases.autoscale_log import failure_entry

    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    lost = StartFailure("AzureNodes", "azure-1", "azure-1: its VM was lost")
    for until, says in ((now - timedelta(seconds=25), False), (now + timedelta(seconds=60), True)):
        state = AutoscalerState(groups={"AzureNodes": GroupMemory(backoff_until=until)})
        entry = failure_entry(lost, "start lost", Decision([], state, []), now)
        assert ("backs off" in entry["reason"]) is says
        assert "-25 s" not in entry["reason"]


# ------------------------------------------------------------ the faults file


@pytest.fixture
def faulty(tmp_path: Path, faults: Path) -> Iterator[LocalProvider]:  # noqa: F811
    """A local provider reading its switches from ``faults`` (``HPC_LOCAL_FAULTS``)."""
    p = LocalProvider(tmp_path / "vms", faults_file=faults)
    yield p
    p.close()


def test_a_faults_file_whose_never_joins_is_a_string_is_refused(faulty, faults):  # noqa: F811
    write(faults, {"never_joins": ["a-1"]}, 1)
    faulty.create(spec("a-2"), request_id="c0", now=NOW)
    write(faults, {"never_joins": "a-1"}, 2)  # not {"a", "-", "1"}
    faulty.create(spec("a-3"), request_id="c1", now=NOW)
    assert faulty.faults.never_joins == {"a-1"}  # the last good file's
    write(faults, {"evict": "a-2"}, 3)
    faulty.create(spec("a-4"), request_id="c2", now=NOW)
    assert faulty.faults.never_joins == {"a-1"}


def test_a_faults_file_rewritten_for_another_switch_evicts_nothing_again(faulty, faults):  # noqa: F811
    write(faults, {"never_joins": ["a-1", "a-2"]}, 1)
    for vm in ("a-1", "a-2"):
        faulty.create(spec(vm), request_id=f"c-{vm}", now=NOW)
        faulty.start(vm, request_id=f"s-{vm}", now=NOW)
    write(faults, {"never_joins": ["a-1", "a-2"], "evict": ["a-1"]}, 2)
    assert faulty.power_states()["a-1"] is PowerState.DEALLOCATED
    faulty.start("a-1", request_id="s2", now=NOW)
    write(faults, {"never_joins": ["a-1", "a-2"], "evict": ["a-1"], "quota_exceeded": False}, 3)
    assert faulty.power_states()["a-1"] is PowerState.RUNNING  # named already: not again
    write(faults, {"never_joins": ["a-1", "a-2"], "evict": ["a-1", "a-2"]}, 4)
    states = faulty.power_states()
    assert (states["a-1"], states["a-2"]) == (PowerState.RUNNING, PowerState.DEALLOCATED)


def test_a_vm_named_again_after_leaving_the_evict_list_is_evicted_again(faulty, faults):  # noqa: F811
    write(faults, {"never_joins": ["a-1"], "evict": ["a-1"]}, 1)
    faulty.create(spec("a-1"), request_id="c", now=NOW)
    faulty.start("a-1", request_id="s1", now=NOW)
    write(faults, {"never_joins": ["a-1"]}, 2)
    assert faulty.power_states()["a-1"] is PowerState.RUNNING
    write(faults, {"never_joins": ["a-1"], "evict": ["a-1"]}, 3)
    assert faulty.power_states()["a-1"] is PowerState.DEALLOCATED
