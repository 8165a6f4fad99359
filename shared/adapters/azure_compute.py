"""AzureProvider: the Compute port over azure-mgmt-compute, authenticated by azure-identity.

Every ARM call goes through one seam, :meth:`AzureProvider._call`, which
captures the raw response (for the operation URL and Retry-After) and turns
an ARM error into a :class:`ComputeError` value. Long-running operations are
begun with ``polling=False`` and never waited on: the handle keeps the
operation's ``Azure-AsyncOperation`` URL (or its ``Location``), and
:meth:`poll` GETs it once. The client is built with ``retry_total=0`` so a
429 comes back at once with its Retry-After instead of sleeping in the SDK's
retry policy; backing off is the autoscaler's decision.

A created VM is tagged ``cluster`` and ``group`` (``power_states`` lists only
this cluster's VMs, in one ARM call), carries custom data that installs and
starts the agent as a systemd service, and is deallocated once created.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.rest import HttpRequest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import VirtualMachine

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

ERROR_KINDS: dict[str, ErrorKind] = {
    "QuotaExceeded": ErrorKind.QUOTA_EXCEEDED,
    "AllocationFailed": ErrorKind.ALLOCATION_FAILED,
    "ZonalAllocationFailed": ErrorKind.ALLOCATION_FAILED,
    "OverconstrainedAllocationRequest": ErrorKind.ALLOCATION_FAILED,
    "OverconstrainedZonalAllocationRequest": ErrorKind.ALLOCATION_FAILED,
    "SkuNotAvailable": ErrorKind.SKU_NOT_AVAILABLE,
    "ResourceNotFound": ErrorKind.NOT_FOUND,
    "NotFound": ErrorKind.NOT_FOUND,
    "TooManyRequests": ErrorKind.THROTTLED,
    "Conflict": ErrorKind.CONFLICT,
    "OperationNotAllowed": ErrorKind.CONFLICT,
}
"""ARM error code -> ours. OperationNotAllowed is also how ARM says "core quota exceeded"
(its message names the quota), which :func:`error_from` checks."""


def error_from(
    status: int | None,
    code: str | None,
    message: str,
    *,
    retry_after: str | None = None,
    vm: str | None = None,
) -> ComputeError:
    """A :class:`ComputeError` for an ARM error answer (HTTP status and error body)."""
    kind = ERROR_KINDS.get(code or "")
    if kind is ErrorKind.CONFLICT and "quota" in message.lower():
        kind = ErrorKind.QUOTA_EXCEEDED
    if kind is None:
        kind = {429: ErrorKind.THROTTLED, 404: ErrorKind.NOT_FOUND, 409: ErrorKind.CONFLICT}.get(
            status or 0, ErrorKind.FAILED
        )
    seconds: float | None = None
    if retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError:
            seconds = None
    return ComputeError(kind, message, vm=vm, retry_after_s=seconds, code=code)


def agent_custom_data(
    spec: VmSpec, *, package: str, environment: Mapping[str, str], user: str = "hpc"
) -> str:
    """The boot script (cloud-init runs custom data that starts with ``#!``): install the
    package in a venv and run ``python -m agent`` as a systemd service, which SIGTERMs it on
    deallocation so it stops cleanly."""
    env_lines = "\n".join(f"Environment={shlex.quote(f'{k}={v}')}" for k, v in environment.items())
    command = shlex.join(
        [
            "/opt/hybridhpc/bin/python",
            "-m",
            "agent",
            "--name",
            spec.name,
            "--group",
            spec.group,
            "--cores",
            str(spec.cores),
        ]
    )
    return f"""#!/bin/sh
set -e
python3 -m venv /opt/hybridhpc
/opt/hybridhpc/bin/pip install {shlex.quote(package)}
cat > /etc/systemd/system/hybridhpc-agent.service <<'UNIT'
[Unit]
Description=HybridHPC node agent
After=network-online.target
[Service]
User={user}
{env_lines}
ExecStart={command}
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=on-failure
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now hybridhpc-agent
"""


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
        default_size: str = "Standard_D2s_v5",
        admin_username: str = "hpc",
        spot: bool = False,
        credential: Any = None,
        **client_kwargs: Any,
    ) -> None:
        """``image``: an ARM imageReference (publisher, offer, sku, version). ``client_kwargs``
        go to ComputeManagementClient (tests pass ``transport``)."""
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
            return _error(exc)
        except AzureError as exc:
            return ComputeError(ErrorKind.FAILED, str(exc))
        return states

    # ---------------------------------------------------------------- helpers

    def vm_body(self, spec: VmSpec) -> dict[str, Any]:
        """The ARM VirtualMachine resource for a node (camelCase, as the REST API takes it)."""
        custom = agent_custom_data(
            spec,
            package=self.agent_package,
            environment=self.agent_environment,
            user=self.admin_username,
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
                "customData": base64.b64encode(custom.encode()).decode(),
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
        if self.spot:
            properties |= {
                "priority": "Spot",
                "evictionPolicy": "Deallocate",
                "billingProfile": {"maxPrice": -1},
            }
        tags = {**spec.tags, "cluster": self.cluster, "group": spec.group, "node": spec.name}
        return {"location": self.location, "tags": tags, "properties": properties}

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
            return _error(exc, vm)
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
            error = _body_error(response.text(), status, response.headers, operation.vm)
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


def _error(exc: HttpResponseError, vm: str | None = None) -> ComputeError:
    headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
    code = exc.error.code if exc.error is not None else None
    message = exc.error.message if exc.error is not None and exc.error.message else exc.message
    return error_from(exc.status_code, code, message, retry_after=headers.get("Retry-After"), vm=vm)


def _body_error(text: str, status: int, headers: Mapping[str, str], vm: str) -> ComputeError:
    try:
        err = json.loads(text or "{}").get("error") or {}
    except ValueError:
        err = {}
    return error_from(
        status,
        err.get("code"),
        err.get("message", f"HTTP {status}"),
        retry_after=headers.get("Retry-After"),
        vm=vm,
    )
