"""AzureProvider's power states, and the ARM calls of one autoscaler run, counted.

Against recorded-shape ARM traffic (tests/azure_compute_fixtures.py).
"""

from __future__ import annotations

import logging
from typing import Any

from shared.domain.autoscaler import (
    AutoscalerPolicy,
    AutoscalerState,
    ClusterView,
    GroupPolicy,
    autoscale,
)
from shared.domain.cluster import Node
from shared.domain.models import Task
from shared.domain.states import NodeState
from shared.ports.compute import ComputeError, Operation, PowerState
from tests.azure_compute_fixtures import (
    API_VERSION,
    AZ,
    LOCATION,
    NOW,
    OPS,
    VMS,
    Canned,
    accepted,
    arm_error,
    op,
    op_url,
    status,
)

# ------------------------------------------------------------ power states


def vm(name: str, cluster: str, *codes: str) -> dict[str, Any]:
    return {
        "name": name,
        "location": LOCATION,
        "tags": {"cluster": cluster, "group": AZ},
        "properties": {"instanceView": {"statuses": [{"code": c} for c in codes]}},
    }


LISTING = {
    "value": [
        vm("az-1", "c1", "ProvisioningState/succeeded", "PowerState/running"),
        vm("az-2", "c1", "ProvisioningState/succeeded", "PowerState/deallocated"),
        vm("az-3", "c1", "ProvisioningState/creating"),
        vm("az-4", "c1", "ProvisioningState/succeeded", "PowerState/hibernated"),
        vm("other", "someone-else", "PowerState/running"),
    ]
}


def test_power_states_are_one_list_call_mapped_through_the_table(azure, arm, caplog):
    arm.on("GET", VMS, Canned(200, LISTING))
    with caplog.at_level(logging.WARNING):
        states = azure.power_states()
    assert states == {
        "az-1": PowerState.RUNNING,
        "az-2": PowerState.DEALLOCATED,
        "az-3": PowerState.CREATING,
        "az-4": PowerState.UNKNOWN,
    }
    assert "PowerState/hibernated" in caplog.text
    (call,) = arm.sent
    assert call.query == {"api-version": API_VERSION, "$expand": "instanceView"}


def test_power_states_throttled_is_a_value(azure, arm):
    arm.on("GET", VMS, arm_error(429, "TooManyRequests", "later", **{"Retry-After": "3"}))
    error = azure.power_states()
    assert isinstance(error, ComputeError) and error.retry_after_s == 3.0


# ----------------------------------------------- one autoscaler run, counted


def test_one_autoscaler_run_makes_one_list_call_one_poll_per_pending_operation_and_one_call_per_start(
    azure, arm
):
    """The run an integrator writes: read power states, poll what is pending, decide, act."""
    arm.on(
        "GET",
        VMS,
        Canned(
            200,
            {
                "value": [vm(f"az-{i}", "c1", "PowerState/deallocated") for i in range(1, 5)]
                + [vm("az-0", "c1", "PowerState/running")]
            },
        ),
    )
    arm.on("GET", f"{OPS}/op-pending", status("InProgress"))
    for i in (1, 2):
        arm.on("POST", f"{VMS}/az-{i}/start", accepted(f"op-{i}"))
    pending = Operation("deallocate", "az-9", "old", NOW, f"async {op_url('op-pending')}")

    nodes = [Node(name="az-0", groups=[AZ], cores=4, state=NodeState.ONLINE, provider="azure")]
    nodes += [Node(name=f"az-{i}", groups=[AZ], cores=4, provider="azure") for i in range(1, 5)]
    queued = [Task(job_id=7, id=i, command="x", cores=2, node_groups=[AZ]) for i in range(1, 5)]

    power = azure.power_states()
    assert not isinstance(power, ComputeError)
    assert azure.poll(pending, now=NOW).status == "running"
    view = ClusterView(nodes=nodes, queued=queued, used_cores={"az-0": 4}, power=power)
    decision = autoscale(
        view, AutoscalerPolicy(groups={AZ: GroupPolicy(4)}), AutoscalerState(), NOW
    )
    starts = [o for o in decision.orders if o.action == "start"]
    for order in starts:
        op(azure.start(order.node, request_id=f"run1/{order.node}", now=NOW))

    assert [o.node for o in starts] == [
        "az-1",
        "az-2",
    ]  # az-0 is full: 4 two-core tasks need 2 nodes
    assert len(arm.sent) == 1 + 1 + len(starts)
