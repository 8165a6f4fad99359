"""AzureProvider against recorded-shape ARM traffic.

No Azure is reachable here, so :class:`FakeArm` is a constructed stand-in: an
``azure.core`` ``HttpTransport`` that serves canned ARM answers (shaped as the
ARM REST reference documents them) to the real ComputeManagementClient
pipeline, and records every request. The tests assert each request's method,
path, api-version and body, follow the long-running operations through their
``Azure-AsyncOperation`` / ``Location`` URLs, check that ARM's error answers
come back as values, and count the ARM calls of one autoscaler run.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import urllib3
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.core.rest._requests_basic import RestRequestsTransportResponse

from shared.adapters.azure_compute import AzureProvider
from shared.domain.autoscaler import (
    AutoscalerPolicy,
    AutoscalerState,
    ClusterView,
    GroupPolicy,
    autoscale,
)
from shared.domain.models import Node, Task
from shared.domain.states import NodeState
from shared.ports.compute import ComputeError, ErrorKind, Operation, PowerState, VmSpec
from tests.arm_double import ArmSimulator, FakeCredential
from tests.test_control import Clock, make_cp

API_VERSION = "2026-04-01"
"""What azure-mgmt-compute (39.x) sends for virtualMachines."""
SUB, RG, LOCATION = "00000000-0000-0000-0000-000000000001", "hpc-rg", "westeurope"
ARM = "https://management.azure.com"
VMS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines"
OPS = f"/subscriptions/{SUB}/providers/Microsoft.Compute/locations/{LOCATION}/operations"
SUBNET = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/v/subnets/nodes"
IDENTITY = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nodes"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
AZ = "AzureNodes"


# ------------------------------------------------------------- the stand-in


@dataclass
class Canned:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


class FakeArm(HttpTransport):
    """Canned ARM answers per (method, path), served in order (the last one repeats)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Canned]] = {}
        self.sent: list[Sent] = []

    def on(self, method: str, path: str, *answers: Canned) -> None:
        self.routes.setdefault((method, path), []).extend(answers)

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = urlparse(request.url)
        raw = getattr(request, "content", None)
        if raw is None:
            raw = getattr(request, "data", None)
        body = json.loads(raw) if raw else None
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.sent.append(Sent(request.method, url.path, query, body, dict(request.headers)))
        answers = self.routes.get((request.method, url.path))
        if not answers:
            raise AssertionError(f"unexpected ARM call {request.method} {url.path}")
        canned = answers.pop(0) if len(answers) > 1 else answers[0]
        response = requests.Response()
        response.status_code = canned.status
        response.reason = "canned"
        response.url = request.url
        response.headers.update({"Content-Type": "application/json", **canned.headers})
        content = b"" if canned.body is None else json.dumps(canned.body).encode()
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(content), status=canned.status, preload_content=False
        )
        if hasattr(request, "content"):  # azure.core.rest request: the new response type
            rest = RestRequestsTransportResponse(request=request, internal_response=response)
            if not kwargs.get("stream"):
                rest.read()
            return rest
        return RequestsTransportResponse(request, response)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *args: Any) -> None:
        pass


@pytest.fixture
def arm() -> FakeArm:
    return FakeArm()


@pytest.fixture
def azure(arm: FakeArm) -> Iterator[AzureProvider]:
    provider = AzureProvider(
        subscription_id=SUB,
        resource_group=RG,
        location=LOCATION,
        subnet_id=SUBNET,
        cluster="c1",
        image={
            "publisher": "Canonical",
            "offer": "ubuntu-24_04-lts",
            "sku": "server",
            "version": "latest",
        },
        ssh_public_key="ssh-ed25519 AAAA test",
        agent_environment={"HPC_BUS": "servicebus", "HPC_SERVICEBUS_NAMESPACE": "ns"},
        node_identity_id=IDENTITY,
        node_identity_client_id="client-1",
        tags={"costCenter": "hpc", "cluster": "not-this-one"},
        credential=FakeCredential(),
        transport=arm,
    )
    yield provider


def op_url(op_id: str) -> str:
    return f"{ARM}{OPS}/{op_id}?p=x&api-version={API_VERSION}"


def accepted(op_id: str, status: int = 202, body: Any = None) -> Canned:
    return Canned(
        status,
        body,
        {
            "Azure-AsyncOperation": op_url(op_id),
            "Location": f"{ARM}{OPS}/{op_id}?monitor=true&api-version={API_VERSION}",
            "Retry-After": "10",
        },
    )


def status(state: str, error: dict[str, str] | None = None) -> Canned:
    body: dict[str, Any] = {"name": "op", "status": state, "startTime": "2026-01-01T00:00:00Z"}
    if error:
        body["error"] = error
    return Canned(200, body)


def arm_error(status_code: int, code: str, message: str, **headers: str) -> Canned:
    return Canned(status_code, {"error": {"code": code, "message": message}}, headers)


def op(result: Operation | ComputeError) -> Operation:
    assert isinstance(result, Operation), result
    return result


# ------------------------------------------------------------------ shapes


def test_create_puts_the_vm_and_deallocates_it_once_created(azure, arm):
    arm.on(
        "PUT",
        f"{VMS}/az-1",
        accepted("op-c", 201, {"name": "az-1", "properties": {"provisioningState": "Creating"}}),
    )
    arm.on("GET", f"{OPS}/op-c", status("InProgress"), status("Succeeded"))
    arm.on("POST", f"{VMS}/az-1/deallocate", accepted("op-d"))
    arm.on("GET", f"{OPS}/op-d", status("Succeeded"))

    create = op(
        azure.create(VmSpec("az-1", AZ, 4, size="Standard_D4s_v5"), request_id="r1", now=NOW)
    )
    put = arm.sent[0]
    assert (put.method, put.path, put.query["api-version"]) == ("PUT", f"{VMS}/az-1", API_VERSION)
    assert put.headers["Authorization"] == "Bearer canned-token"
    body = put.body
    assert body["location"] == LOCATION
    # extra tags from settings, but cluster/group/node are always the provider's own
    assert body["tags"] == {"costCenter": "hpc", "cluster": "c1", "group": AZ, "node": "az-1"}
    assert body["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {IDENTITY: {}}}
    props = body["properties"]
    assert props["hardwareProfile"] == {"vmSize": "Standard_D4s_v5"}
    assert props["storageProfile"]["imageReference"]["publisher"] == "Canonical"
    assert props["storageProfile"]["osDisk"]["deleteOption"] == "Delete"
    nic = props["networkProfile"]["networkInterfaceConfigurations"][0]["properties"]
    assert nic["ipConfigurations"][0]["properties"]["subnet"]["id"] == SUBNET
    script = base64.b64decode(props["osProfile"]["customData"], validate=True).decode()
    assert script.startswith("#cloud-config\n")
    files = {f["path"]: f["content"] for f in json.loads(script.partition("\n")[2])["write_files"]}
    unit = files["/etc/systemd/system/hybridhpc-agent.service"]
    assert (
        "ExecStart=/opt/hybridhpc/bin/hpc agent run --name az-1 --group AzureNodes --cores 4\n"
        in unit
    )
    env = files["/etc/hybridhpc/agent.env"].splitlines()
    assert {"HPC_BUS=servicebus", "HPC_SERVICEBUS_NAMESPACE=ns", "AZURE_CLIENT_ID=client-1"} <= set(
        env
    )
    assert props["osProfile"]["linuxConfiguration"]["disablePasswordAuthentication"] is True

    assert azure.poll(create, now=NOW).status == "running"  # InProgress
    created = azure.poll(create, now=NOW)
    assert created.status == "running" and created.next is not None  # now deallocating
    assert created.next.action == "deallocate"
    post = arm.sent[-1]
    assert (post.method, post.path, post.query["api-version"], post.body) == (
        "POST",
        f"{VMS}/az-1/deallocate",
        API_VERSION,
        None,
    )
    assert azure.poll(created.next, now=NOW).status == "succeeded"
    assert [s.method for s in arm.sent] == ["PUT", "GET", "GET", "POST", "GET"]


def test_start_deallocate_delete_are_begun_and_polled_later(azure, arm):
    arm.on("POST", f"{VMS}/az-1/start", accepted("op-s"))
    arm.on("GET", f"{OPS}/op-s", status("InProgress"), status("Succeeded"))
    arm.on("POST", f"{VMS}/az-1/deallocate", accepted("op-d"))
    arm.on("GET", f"{OPS}/op-d", status("Succeeded"))
    location = f"{ARM}{VMS}/az-1/operationResults/op-x?api-version={API_VERSION}"
    arm.on("DELETE", f"{VMS}/az-1", Canned(202, None, {"Location": location}))
    arm.on("GET", f"{VMS}/az-1/operationResults/op-x", Canned(202), Canned(204))

    start = op(azure.start("az-1", request_id="s", now=NOW))
    assert start.token == f"async {op_url('op-s')}"
    assert len(arm.sent) == 1  # begun, not waited on
    assert [azure.poll(start, now=NOW).status for _ in range(2)] == ["running", "succeeded"]
    stop = op(azure.deallocate("az-1", request_id="d", now=NOW))
    assert azure.poll(stop, now=NOW).status == "succeeded"
    delete = op(azure.delete("az-1", request_id="x", now=NOW))
    assert delete.token.startswith("location ")
    assert [azure.poll(delete, now=NOW).status for _ in range(2)] == ["running", "succeeded"]
    calls = [(s.method, s.path.removeprefix(VMS), s.query.get("api-version")) for s in arm.sent]
    assert calls[0] == ("POST", "/az-1/start", API_VERSION)
    assert ("POST", "/az-1/deallocate", API_VERSION) in calls
    assert ("DELETE", "/az-1", API_VERSION) in calls


def test_a_repeated_request_id_begins_nothing_new(azure, arm):
    arm.on("POST", f"{VMS}/az-1/start", accepted("op-s"))
    first = azure.start("az-1", request_id="same", now=NOW)
    again = azure.start("az-1", request_id="same", now=NOW)
    assert first == again and len(arm.sent) == 1


# ------------------------------------------------------------------ errors


QUOTA_MESSAGE = (
    "Operation could not be completed as it results in exceeding approved standardDSv5Family "
    "Cores quota. Additional details - Deployment Model: Resource Manager, Location: westeurope, "
    "Current Limit: 10, Current Usage: 8, Additional Required: 4"
)


@pytest.mark.parametrize(
    ("answer", "kind", "retry_after"),
    [
        (arm_error(409, "OperationNotAllowed", QUOTA_MESSAGE), ErrorKind.QUOTA_EXCEEDED, None),
        (arm_error(409, "QuotaExceeded", "quota"), ErrorKind.QUOTA_EXCEEDED, None),
        (
            arm_error(409, "SkuNotAvailable", "The requested size is not available in westeurope"),
            ErrorKind.SKU_NOT_AVAILABLE,
            None,
        ),
        (
            arm_error(
                409,
                "Conflict",
                "Operation 'start' is not allowed: another one is in progress",
                **{"Retry-After": "5"},
            ),
            ErrorKind.CONFLICT,
            5.0,
        ),
        (
            arm_error(429, "TooManyRequests", "throttled", **{"Retry-After": "17"}),
            ErrorKind.THROTTLED,
            17.0,
        ),
        (arm_error(404, "ResourceNotFound", "no VM az-1"), ErrorKind.NOT_FOUND, None),
        (arm_error(500, "InternalServerError", "oops"), ErrorKind.FAILED, None),
    ],
)
def test_arm_errors_come_back_as_values_at_once(azure, arm, answer, kind, retry_after):
    arm.on("POST", f"{VMS}/az-1/start", answer)
    error = azure.start("az-1", request_id="s", now=NOW)
    assert isinstance(error, ComputeError)
    assert (error.kind, error.retry_after_s, error.vm) == (kind, retry_after, "az-1")
    assert len(arm.sent) == 1  # the SDK did not retry (and sleep): backing off is the policy's


def test_sku_not_available_on_create_is_a_value(azure, arm):
    arm.on("PUT", f"{VMS}/az-9", arm_error(409, "SkuNotAvailable", "not in this zone"))
    error = azure.create(VmSpec("az-9", AZ, 4), request_id="c", now=NOW)
    assert isinstance(error, ComputeError) and error.kind is ErrorKind.SKU_NOT_AVAILABLE


def test_allocation_failure_arrives_through_the_operation(azure, arm):
    arm.on("POST", f"{VMS}/az-1/start", accepted("op-s"))
    failed = {"code": "AllocationFailed", "message": "Allocation failed. Try another size."}
    arm.on("GET", f"{OPS}/op-s", status("Failed", failed))
    result = azure.poll(op(azure.start("az-1", request_id="s", now=NOW)), now=NOW)
    assert result.status == "failed" and result.error is not None
    assert (
        result.error.kind is ErrorKind.ALLOCATION_FAILED
        and "Allocation failed" in result.error.message
    )


def test_a_throttled_poll_keeps_the_operation_running(azure, arm):
    arm.on("POST", f"{VMS}/az-1/start", accepted("op-s"))
    arm.on(
        "GET",
        f"{OPS}/op-s",
        arm_error(429, "TooManyRequests", "slow down", **{"Retry-After": "30"}),
        status("Succeeded"),
    )
    start = op(azure.start("az-1", request_id="s", now=NOW))
    throttled = azure.poll(start, now=NOW)
    assert throttled.status == "running" and throttled.error is not None
    assert throttled.error.kind is ErrorKind.THROTTLED and throttled.error.retry_after_s == 30.0
    assert azure.poll(start, now=NOW).status == "succeeded"


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
