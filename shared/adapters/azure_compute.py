"""AzureProvider: the Compute port over azure-mgmt-compute, authenticated by azure-identity.

Every ARM call goes through one seam, :meth:`AzureProvider._call`, which
captures the raw response (for the operation URL and Retry-After) and turns
an ARM error into a :class:`ComputeError` value (:mod:`.azure_errors`).
Long-running operations are begun with ``polling=False`` and never waited on:
the handle keeps the operation's ``Azure-AsyncOperation`` URL (or its
``Location``), and :meth:`poll` GETs it once. The client is built with
``retry_total=0`` so a 429 comes back at once with its Retry-After instead of
sleeping in the SDK's retry policy; backing off is the autoscaler's decision.

A created VM is tagged ``cluster``, ``group`` and ``node`` (``power_states``
lists only this cluster's VMs, in one ARM call), has the node identity (a
user-assigned managed identity: the agent's only credential) attached,
carries custom data that installs and starts the agent as a systemd service
(:mod:`.azure_customdata`), and is deallocated once created. Built from
settings by :mod:`.azure_setup`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.rest import HttpRequest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import VirtualMachine

from shared.adapters.azure_customdata import AGENT_USER, cloud_config, encode
from shared.adapters.azure_errors import body_error, error_from, error_of
from shared.ports.compute import (
    Action,
    ComputeError,
    ComputeProvider,
    ErrorKind,
    Operation,
    OperationResult,
    PowerState,
    VmSpec,
    to_power_state,
)

NETWORK_API_VERSION = "2022-11-01"
"""Lets the VM create (and delete with it) its own NIC: no azure-mgmt-network needed."""


class AzureProvider(ComputeProvider):
    name = "azure"

    def __init__(
        self,
        *,
        subscription_id: str,
        resource_group: str,
        location: str,
        subnet_id: str,
        cluster: str,
        image: Mapping[str, str],
        ssh_public_key: str,
        agent_package: str = "hybridhpc[azure]",
        agent_environment: Mapping[str, str] | None = None,
        node_identity_id: str = "",
        node_identity_client_id: str = "",
        tags: Mapping[str, str] | None = None,
        default_size: str = "Standard_D2s_v5",
        admin_username: str = "hpcadmin",
        spot: bool = False,
        credential: Any = None,
        **client_kwargs: Any,
    ) -> None:
        """``image``: an ARM imageReference (publisher, offer, sku, version; or ``id``).
        ``agent_environment``: the agent's settings (``azure_customdata.agent_settings``).
        ``node_identity_id``/``node_identity_client_id``: the user-assigned identity every VM
        gets, and the agent's AZURE_CLIENT_ID. ``spot``: every VM is a Spot VM (else those
        whose VmSpec says so: ``hpc node add --spot``): priority Spot, evicted by
        deallocation, billed at most the pay-as-you-go price (maxPrice -1). ``client_kwargs``
        go to ComputeManagementClient (tests pass ``transport``)."""
        if admin_username == AGENT_USER:
            raise ValueError(
                f"the admin user must not be {AGENT_USER!r}: that is the agent's own "
                "unprivileged user (HPC_AZURE_ADMIN_USERNAME)"
            )
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self.client = ComputeManagementClient(
            credential, subscription_id, retry_total=0, **client_kwargs
        )
        self.resource_group = resource_group
        self.location = location
        self.subnet_id = subnet_id
        self.cluster = cluster
        self.image = dict(image)
        self.ssh_public_key = ssh_public_key
        self.agent_package = agent_package
        self.agent_environment = dict(agent_environment or {})
        self.node_identity_id = node_identity_id
        self.node_identity_client_id = node_identity_client_id
        self.tags = dict(tags or {})
        self.default_size = default_size
        self.admin_username = admin_username
        self.spot = spot
        self._requests: dict[str, Operation] = {}

    # ----------------------------------------------------------------- calls

    def create(self, spec: VmSpec, *, request_id: str, now: datetime) -> Operation | ComputeError:
        if request_id in self._requests:
            return self._requests[request_id]
        vms = self.client.virtual_machines
        body = VirtualMachine(self.vm_body(spec))
        return self._begin(
            "create",
            spec.name,
            request_id,
            now,
            lambda hook: vms.begin_create_or_update(
                self.resource_group, spec.name, body, polling=False, raw_response_hook=hook
            ),
        )

    def start(self, vm: str, *, request_id: str, now: datetime) -> Operation | ComputeError:
        begin = self.client.virtual_machines.begin_start
        return self._begin(
            "start",
            vm,
            request_id,
            now,
            lambda hook: begin(self.resource_group, vm, polling=False, raw_response_hook=hook),
        )

    def deallocate(self, vm: str, *, request_id: str, now: datetime) -> Operation | ComputeError:
        begin = self.client.virtual_machines.begin_deallocate
        return self._begin(
            "deallocate",
            vm,
            request_id,
            now,
            lambda hook: begin(self.resource_group, vm, polling=False, raw_response_hook=hook),
        )

    def delete(self, vm: str, *, request_id: str, now: datetime) -> Operation | ComputeError:
        begin = self.client.virtual_machines.begin_delete
        return self._begin(
            "delete",
            vm,
            request_id,
            now,
            lambda hook: begin(self.resource_group, vm, polling=False, raw_response_hook=hook),
        )

    def poll(self, operation: Operation, *, now: datetime) -> OperationResult:
        result = self._status(operation)
        if operation.action == "create" and result.status == "succeeded":
            # Created running, as Azure does: deallocate it so it costs nothing until started.
            follow = self.deallocate(
                operation.vm, request_id=f"{operation.request_id}/deallocate", now=now
            )
            if isinstance(follow, ComputeError):
                return OperationResult("running", error=follow)  # poll again: it retries
            return OperationResult("running", next=follow)
        return result

    def power_states(self) -> dict[str, PowerState] | ComputeError:
        """One ARM list call (paged) of the resource group's VMs with their instance views."""
        states: dict[str, PowerState] = {}
        try:
            pages = self.client.virtual_machines.list(self.resource_group, expand="instanceView")
            for vm in pages:
                if (vm.tags or {}).get("cluster") != self.cluster or vm.name is None:
                    continue
                states[vm.name] = _power_of(vm)
        except HttpResponseError as exc:
            return error_of(exc)
        except AzureError as exc:
            return ComputeError(ErrorKind.FAILED, str(exc))
        return states

    def close(self) -> None:
        """Close the ARM client's connections (the function host calls it at exit)."""
        self.client.close()

    # ---------------------------------------------------------------- helpers

    def vm_body(self, spec: VmSpec) -> dict[str, Any]:
        """The ARM VirtualMachine resource for a node (camelCase, as the REST API takes it)."""
        custom = cloud_config(
            spec,
            package=self.agent_package,
            identity_client_id=self.node_identity_client_id,
            environment=self.agent_environment,
        )
        properties: dict[str, Any] = {
            "hardwareProfile": {"vmSize": spec.size or self.default_size},
            "storageProfile": {
                "imageReference": self.image,
                "osDisk": {
                    "createOption": "FromImage",
                    "deleteOption": "Delete",
                    "managedDisk": {"storageAccountType": "StandardSSD_LRS"},
                },
            },
            "osProfile": {
                "computerName": spec.name,
                "adminUsername": self.admin_username,
                "customData": encode(custom),
                "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {
                        "publicKeys": [
                            {
                                "path": f"/home/{self.admin_username}/.ssh/authorized_keys",
                                "keyData": self.ssh_public_key,
                            }
                        ]
                    },
                },
            },
            "networkProfile": {
                "networkApiVersion": NETWORK_API_VERSION,
                "networkInterfaceConfigurations": [
                    {
                        "name": f"{spec.name}-nic",
                        "properties": {
                            "primary": True,
                            "deleteOption": "Delete",
                            "ipConfigurations": [
                                {
                                    "name": "ipconfig1",
                                    "properties": {"subnet": {"id": self.subnet_id}},
                                }
                            ],
                        },
                    }
                ],
            },
        }
        if spec.spot or self.spot:  # evicted VMs are deallocated, not deleted: they restart
            properties |= {
                "priority": "Spot",
                "evictionPolicy": "Deallocate",
                "billingProfile": {"maxPrice": -1},
            }
        tags = {
            **self.tags,
            **spec.tags,
            "cluster": self.cluster,
            "group": spec.group,
            "node": spec.name,
        }
        body: dict[str, Any] = {"location": self.location, "tags": tags, "properties": properties}
        if self.node_identity_id:  # the agent's credential: no secret on the VM
            body["identity"] = {
                "type": "UserAssigned",
                "userAssignedIdentities": {self.node_identity_id: {}},
            }
        return body

    def _begin(
        self,
        action: Action,
        vm: str,
        request_id: str,
        now: datetime,
        call: Callable[[Callable[[PipelineResponse], None]], object],
    ) -> Operation | ComputeError:
        if request_id in self._requests:
            return self._requests[request_id]
        result = self._call(call, vm)
        if isinstance(result, ComputeError):
            return result
        headers = result
        url = headers.get("Azure-AsyncOperation")
        token = f"async {url}" if url else ""
        if not token and headers.get("Location"):
            token = f"location {headers['Location']}"
        operation = Operation(
            action=action, vm=vm, request_id=request_id, begun_at=now, token=token
        )
        self._requests[request_id] = operation
        return operation

    def _call(
        self, call: Callable[[Callable[[PipelineResponse], None]], object], vm: str
    ) -> dict[str, str] | ComputeError:
        """The one seam every ARM call goes through: run it, keep the response headers, and
        turn an error answer into a value."""
        captured: dict[str, str] = {}

        def hook(response: PipelineResponse) -> None:
            captured.clear()
            captured.update(response.http_response.headers)

        try:
            call(hook)
        except HttpResponseError as exc:
            return error_of(exc, vm)
        except AzureError as exc:
            return ComputeError(ErrorKind.FAILED, str(exc), vm=vm)
        return captured

    def _status(self, operation: Operation) -> OperationResult:
        if not operation.token:
            return OperationResult("succeeded")
        kind, url = operation.token.split(" ", 1)
        try:
            response = self.client.send_request(HttpRequest("GET", url))
        except AzureError as exc:
            return OperationResult(
                "running", ComputeError(ErrorKind.FAILED, str(exc), operation.vm)
            )
        status = response.status_code
        if status >= 400:
            error = body_error(response.text(), status, response.headers, operation.vm)
            if operation.action == "delete" and error.kind is ErrorKind.NOT_FOUND:
                return OperationResult("succeeded")
            if status == 429 or status >= 500:
                return OperationResult("running", error)  # the operation itself goes on
            return OperationResult("failed", error)
        if kind == "location":
            return OperationResult("running" if status == 202 else "succeeded")
        body = json.loads(response.text() or "{}")
        state = str(body.get("status", "InProgress"))
        if state == "Succeeded":
            return OperationResult("succeeded")
        if state in ("Failed", "Canceled"):
            err = body.get("error") or {}
            error = error_from(None, err.get("code"), err.get("message", state), vm=operation.vm)
            return OperationResult("failed", error)
        return OperationResult("running")


def _power_of(vm: Any) -> PowerState:
    view = getattr(getattr(vm, "properties", None), "instance_view", None)
    codes = [s.code for s in (getattr(view, "statuses", None) or []) if s.code]
    for code in codes:  # a provisioning state that is not "succeeded" says more
        if code.lower() in (
            "provisioningstate/creating",
            "provisioningstate/deleting",
            "provisioningstate/failed",
        ):
            return to_power_state(code)
    for code in codes:
        if code.startswith("PowerState/"):
            return to_power_state(code)
    return to_power_state(codes[-1] if codes else None)
