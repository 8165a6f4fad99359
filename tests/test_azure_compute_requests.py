"""AzureProvider's requests: method, path, api-version and body of each ARM call.

Against recorded-shape ARM traffic (tests/azure_compute_fixtures.py).
"""

from __future__ import annotations

import base64
import json

from shared.ports.compute import VmSpec
from tests.azure_compute_fixtures import (
    API_VERSION,
    ARM,
    AZ,
    IDENTITY,
    LOCATION,
    NOW,
    OPS,
    SUBNET,
    VMS,
    Canned,
    accepted,
    op,
    op_url,
    status,
)

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
