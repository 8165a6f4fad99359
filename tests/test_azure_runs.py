"""The control plane with HPC_COMPUTE=azure, driven run by run against the ARM double.

No Azure is reachable here: the provider (built by the real wiring from HPC_AZURE_*
settings) talks to :class:`ArmSimulator` (tests/arm_double.py), a stateful stand-in for
ARM's virtualMachines API, through azure-core's transport. The agents are
:class:`AgentDouble`s speaking the real protocol over the real bus. These tests pin what
one timer run costs in ARM calls, that no run waits on a VM operation (begun in one run,
polled in the next), and how ARM's refusals and failures come back.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from shared.adapters.azure_compute import AzureProvider
from shared.adapters.local_output import LocalOutputStore
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.adapters.sqlite_store import SqliteStore
from shared.domain.growshrink import AutoscalerState, GroupMemory
from shared.domain.states import NodeState, TaskState
from shared.errors import Conflict
from shared.usecases.autoscale_memory import STATE_KEY
from shared.usecases.control_plane import ControlPlane
from shared.usecases.deps import Backoff
from shared.usecases.operations import pending_operations
from shared.wiring import build_compute, declare_queues
from tests.agent_double import AgentDouble
from tests.arm_double import ArmSimulator, FakeCredential
from tests.test_azure_wiring import RG, SUB, azure_settings
from tests.test_control import Clock

AZ = "AzureNodes"
VMS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines"
QUOTA = (
    "Operation could not be completed as it results in exceeding approved standardDSv5Family "
    "Cores quota. Current Limit: 10, Current Usage: 8, Additional Required: 4"
)


class Cluster:
    """A control plane whose compute is the wired AzureProvider over the ARM double."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.arm = ArmSimulator(polls_per_operation=1)  # every operation done at its first poll
        settings = azure_settings(tmp_path)
        compute = build_compute(settings, credential=FakeCredential(), transport=self.arm)
        assert isinstance(compute, AzureProvider)
        bus = SqliteBus(tmp_path / "bus.db")  # the agents' side is played in-process
        declare_queues(SqliteBusAdmin(bus))
        self.cp = ControlPlane(
            store=SqliteStore(tmp_path / "store.db"),
            bus=bus,
            output=LocalOutputStore(tmp_path / "out"),
            settings=settings,
            compute=compute,
            clock=self.clock,
            backoff=Backoff(sleep=lambda _s: None),
        )
        self.cp.set_group(AZ, provider="azure", max_nodes=4, node_cores=4, grow_interval_s=0)

    def run(self) -> list[tuple[str, str]]:
        """One autoscaler timer run; the ARM requests it made, as (method, path tail)."""
        mark = len(self.arm.calls)
        self.cp.autoscale()
        return [(m, _tail(p)) for m, p in self.arm.calls_since(mark)]

    def state(self, name: str) -> NodeState:
        return self.cp.store.get_node(name).state

    def power(self, name: str) -> str | None:
        return self.arm.vms[name].power

    def added(self, count: int) -> list[str]:
        """``hpc node add``, then the runs that see the VMs created and deallocated."""
        names = [n.name for n in self.cp.add_nodes(AZ, count)]
        self.run()  # creates done: each VM (created running, as Azure does) is deallocated
        self.run()  # deallocations done
        assert [self.power(n) for n in names] == ["deallocated"] * count
        assert not pending_operations(self.cp.deps)
        return names


def _tail(path: str) -> str:
    """A VM request's path after the VM collection; ``/op`` for an operation's poll."""
    if "/providers/Microsoft.Compute/locations/" in path and "/operations/" in path:
        return "/op"
    assert path.startswith(VMS), path
    return path.removeprefix(VMS)


@pytest.fixture
def cluster(tmp_path) -> Cluster:
    return Cluster(tmp_path)


def test_added_nodes_are_created_deallocated_started_by_the_autoscaler_and_join_online(cluster):
    cp, clock = cluster.cp, cluster.clock
    # hpc node add: one PUT per VM, begun and not waited on
    added = cp.add_nodes(AZ, 2)
    assert [(n.name, n.state, n.provider) for n in added] == [
        ("azure-1", NodeState.OFFLINE, "azure"),
        ("azure-2", NodeState.OFFLINE, "azure"),
    ]
    assert cluster.arm.calls == [("PUT", f"{VMS}/azure-1"), ("PUT", f"{VMS}/azure-2")]
    assert set(pending_operations(cp.deps)) == {"azure-1", "azure-2"}

    # run 1: each create polled once (done: the VM runs), its deallocation begun; one list
    assert sorted(cluster.run()) == [
        ("GET", ""),
        ("GET", "/op"),
        ("GET", "/op"),
        ("POST", "/azure-1/deallocate"),
        ("POST", "/azure-2/deallocate"),
    ]
    # run 2: each deallocation polled once (done); one list; nothing to do
    clock.advance(5)
    assert sorted(cluster.run()) == [("GET", ""), ("GET", "/op"), ("GET", "/op")]
    assert [cluster.power(n) for n in ("azure-1", "azure-2")] == ["deallocated", "deallocated"]
    assert {cluster.state(n) for n in ("azure-1", "azure-2")} == {NodeState.OFFLINE}

    # a job for AzureNodes: 6 one-core tasks on 4-core nodes need both nodes
    job = cp.submit({"command": "x", "nodeGroups": [AZ], "sweep": "1-6"})
    clock.advance(5)
    calls = cluster.run()  # run 3: one list, one start per node it needs, no polls
    assert sorted(calls) == [("GET", ""), ("POST", "/azure-1/start"), ("POST", "/azure-2/start")]
    assert {cluster.state(n) for n in ("azure-1", "azure-2")} == {NodeState.STARTING}
    assert [e["action"] for e in cp.autoscale_log(group=AZ) if e["action"] == "start"] == [
        "start",
        "start",
    ]
    clock.advance(5)
    assert sorted(cluster.run()) == [("GET", ""), ("GET", "/op"), ("GET", "/op")]  # run 4
    assert [cluster.power(n) for n in ("azure-1", "azure-2")] == ["running", "running"]

    # each VM's agent registers (its custom data started `hpc agent run`): Online, work flows
    agents = [AgentDouble(cp, n, cores=4, groups=(AZ,)) for n in ("azure-1", "azure-2")]
    assert all(a.register().accepted for a in agents)
    assert {cluster.state(n) for n in ("azure-1", "azure-2")} == {NodeState.ONLINE}
    assert cp.schedule_pass() == 6
    assert sum(len(a.runs()) for a in agents) == 6
    assert {t.state for t in cp.list_tasks(job.id)} == {TaskState.DISPATCHING}


def test_a_run_with_nothing_to_do_is_one_list_call(cluster):
    cluster.added(2)
    cluster.clock.advance(60)
    assert cluster.run() == [("GET", "")]


def test_a_conflict_on_start_leaves_the_node_offline_and_the_next_run_starts_it(cluster):
    cluster.added(1)
    cluster.cp.submit({"command": "x", "nodeGroups": [AZ]})
    cluster.arm.refuse("start", "azure-1", 409, "Conflict", "another operation is in progress")
    assert cluster.run() == [("GET", ""), ("POST", "/azure-1/start")]
    assert cluster.state("azure-1") is NodeState.OFFLINE
    cluster.clock.advance(5)
    assert cluster.run() == [("GET", ""), ("POST", "/azure-1/start")]
    assert cluster.state("azure-1") is NodeState.STARTING


def test_an_operation_not_allowed_on_start_backs_the_group_off(cluster):
    """A review: a non-quota OperationNotAllowed (a 409 that does not pass with a retry) was
    retried every run with no back-off, as an in-progress Conflict is."""
    cluster.added(1)
    cluster.cp.submit({"command": "x", "nodeGroups": [AZ]})
    cluster.arm.refuse("start", "azure-1", 409, "OperationNotAllowed", "the VM is being deleted")
    assert cluster.run() == [("GET", ""), ("POST", "/azure-1/start")]
    assert cluster.state("azure-1") is NodeState.OFFLINE
    assert backoff(cluster).backoff_until is not None
    cluster.clock.advance(5)
    assert cluster.run() == [("GET", "")]  # backing off: no start


def test_hpc_node_start_refused_with_429_says_so_and_changes_nothing(cluster):
    cluster.added(1)
    cluster.arm.refuse("start", "azure-1", 429, "TooManyRequests", "slow down", retry_after="17")
    with pytest.raises(
        Conflict, match="could not start azure-1: Throttled: slow down; try again in 17 s"
    ):
        cluster.cp.node_action("start", ["azure-1"])
    assert cluster.state("azure-1") is NodeState.OFFLINE
    assert not pending_operations(cluster.cp.deps)


def test_hpc_node_start_of_a_vm_still_stopping_says_to_start_it_once_the_stop_ends(cluster):
    cluster.added(1)
    cluster.arm.refuse("start", "azure-1", 409, "OperationNotAllowed", "a deallocate is running")
    with pytest.raises(Conflict) as refused:
        cluster.cp.node_action("start", ["azure-1"])
    assert str(refused.value) == (
        "could not start azure-1: Conflict: a deallocate is running; its VM is busy with "
        "another operation (a stop not finished): start it once that ends"
    )
    assert cluster.state("azure-1") is NodeState.OFFLINE
    assert not pending_operations(cluster.cp.deps)


def test_a_sku_not_available_on_add_stores_no_node(cluster):
    cluster.arm.refuse("create", None, 409, "SkuNotAvailable", "Standard_D4s_v5 is not offered")
    with pytest.raises(Conflict, match="SkuNotAvailable: Standard_D4s_v5 is not offered"):
        cluster.cp.add_nodes(AZ, 1)
    assert [n["name"] for n in cluster.cp.list_nodes() if AZ in n["groups"]] == []


def backoff(cluster: Cluster) -> GroupMemory:
    meta = cluster.cp.store.get_meta(STATE_KEY)
    return AutoscalerState.from_dict(meta.data).groups[AZ]


def failed_starts(cluster: Cluster) -> None:
    """Two nodes started for queued work; ARM accepts both starts, then fails them."""
    cluster.added(2)
    cluster.cp.submit({"command": "x", "nodeGroups": [AZ], "cores": 4, "sweep": "1-2"})
    for name in ("azure-1", "azure-2"):
        cluster.arm.fail_operation("start", name, "AllocationFailed", "no capacity for D4s_v5")
    assert sorted(cluster.run()) == [
        ("GET", ""),
        ("POST", "/azure-1/start"),
        ("POST", "/azure-2/start"),
    ]
    cluster.clock.advance(5)
    assert sorted(cluster.run()) == [("GET", ""), ("GET", "/op"), ("GET", "/op")]


def test_an_allocation_failure_is_polled_by_the_next_run_and_backs_the_group_off(cluster):
    """AllocationFailed arrives through the start's operation, polled once by the next run:
    the group backs off (two failures in one run count once) and no run inside the backoff
    begins a start."""
    failed_starts(cluster)
    memory = backoff(cluster)
    assert memory.backoff == timedelta(minutes=1) and "AllocationFailed" in str(memory.last_failure)
    assert memory.backoff_until == cluster.clock.now + timedelta(minutes=1)
    for _ in range(3):
        cluster.clock.advance(10)
        assert cluster.run() == [("GET", "")]


def test_a_node_whose_start_failed_is_offline_again_and_restarted_after_the_backoff(cluster):
    failed_starts(cluster)
    assert {cluster.state(n) for n in ("azure-1", "azure-2")} == {NodeState.OFFLINE}
    cluster.clock.advance(65)
    assert ("POST", "/azure-1/start") in cluster.run()


@pytest.mark.parametrize(
    ("status", "code", "message", "retry_after"),
    [
        (409, "OperationNotAllowed", QUOTA, None),
        (409, "QuotaExceeded", "quota", None),
        (409, "SkuNotAvailable", "not in this zone", None),
        (429, "TooManyRequests", "throttled", "120"),
    ],
)
def test_a_start_refused_for_quota_sku_or_throttling_backs_the_group_off(
    cluster, status, code, message, retry_after
):
    """ARM refuses these starts at once (no operation to poll): the group must still back
    off, not ask again every run (the 'autoscaler loops on quota errors' complaint)."""
    cluster.added(1)
    cluster.cp.submit({"command": "x", "nodeGroups": [AZ]})
    cluster.arm.refuse("start", None, status, code, message, retry_after=retry_after, times=100)
    assert cluster.run() == [("GET", ""), ("POST", "/azure-1/start")]
    assert cluster.state("azure-1") is NodeState.OFFLINE
    starts = 0
    for _ in range(3):
        cluster.clock.advance(10)
        starts += sum(1 for c in cluster.run() if c[1].endswith("/start"))
    assert starts == 0, "the group asked again inside its backoff"
    cluster.clock.advance(timedelta(minutes=30).total_seconds())
    assert ("POST", "/azure-1/start") in cluster.run()  # after the backoff: tried again
