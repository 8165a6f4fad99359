"""A stateful stand-in for Azure Resource Manager's virtualMachines API, for tests.

No Azure is reachable here. This is an ``azure.core`` ``HttpTransport`` that
keeps VMs in a dict and answers the real ComputeManagementClient the way ARM
does (201/202 with an ``Azure-AsyncOperation`` URL, an operation that reports
``InProgress`` for ``polls_per_operation - 1`` polls and then ``Succeeded``,
instance views with ``PowerState/...`` codes, 404 for an unknown VM). It lets
the Compute contract run the same scenarios on AzureProvider as on the local
provider. Fault switches (:meth:`ArmSimulator.refuse`, :meth:`ArmSimulator.fail_operation`)
answer the next matching request with an ARM error (409, 429 with Retry-After, quota) or
end its operation Failed (AllocationFailed), so the autoscaler's runs meet them through the
real client. Canned single answers for the error cases are in tests/test_azure_compute_errors.py.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.core.rest._requests_basic import RestRequestsTransportResponse

ARM = "https://management.azure.com"
VM_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.Compute/virtualMachines(?:/(?P<name>[^/]+))?(?:/(?P<verb>start|deallocate))?$"
)
OP_PATH = re.compile(
    r"^/subscriptions/[^/]+/providers/Microsoft\.Compute/locations/[^/]+/operations/(?P<id>[^/]+)$"
)


@dataclass
class _Op:
    polls_left: int
    done: Callable[[], None]
    error: dict[str, str] | None = None
    """Set: the operation ends Failed with this ARM error (and ``done`` is not applied)."""
    failed: Callable[[], None] | None = None


@dataclass
class _Refusal:
    action: str
    vm: str | None
    status: int
    body: Any
    headers: dict[str, str]
    times: int


@dataclass
class _Vm:
    body: dict[str, Any]
    provisioning: str = "Creating"
    power: str | None = None


@dataclass
class ArmSimulator(HttpTransport):
    location: str = "westeurope"
    polls_per_operation: int = 2
    vms: dict[str, _Vm] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    _ops: dict[str, _Op] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)
    _refusals: list[_Refusal] = field(default_factory=list)
    _op_errors: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def refuse(
        self,
        action: str,
        vm: str | None,
        status: int,
        code: str,
        message: str = "refused",
        *,
        retry_after: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests of ``action`` (``create``, ``start``,
        ``deallocate``, ``delete``, ``list``, ``get``) on ``vm`` (None: any) with an ARM error."""
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        self._refusals.append(_Refusal(action, vm, status, _err(code, message), headers, times))

    def fail_operation(self, action: str, vm: str, code: str, message: str = "failed") -> None:
        """The next ``action`` begun on ``vm`` is accepted, then its operation ends Failed."""
        self._op_errors[(action, vm)] = {"code": code, "message": message}

    def calls_since(self, mark: int) -> list[tuple[str, str]]:
        """The requests after the first ``mark`` ones (``len(self.calls)`` taken earlier)."""
        return self.calls[mark:]

    def send(self, request: Any, **kwargs: Any) -> Any:
        url = urlparse(request.url)
        self.calls.append((request.method, url.path))
        status, body, headers = self._answer(request, url.path)
        response = requests.Response()
        response.status_code = status
        response.url = request.url
        response.headers.update({"Content-Type": "application/json", **headers})
        content = b"" if body is None else json.dumps(body).encode()
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(content), status=status, preload_content=False
        )
        if hasattr(request, "content"):
            rest = RestRequestsTransportResponse(request=request, internal_response=response)
            if not kwargs.get("stream"):
                rest.read()
            return rest
        return RequestsTransportResponse(request, response)

    def _answer(self, request: Any, path: str) -> tuple[int, Any, dict[str, str]]:
        op = OP_PATH.match(path)
        if op:
            return self._poll(op["id"])
        vm = VM_PATH.match(path)
        if vm is None:
            return 404, _err("InvalidResourceType", path), {}
        name, verb, sub = vm["name"], vm["verb"], vm["sub"]
        action = _action(request.method, name, verb)
        for refusal in self._refusals:
            if refusal.action == action and refusal.vm in (None, name) and refusal.times > 0:
                refusal.times -= 1
                return refusal.status, refusal.body, refusal.headers
        if name is None:
            return 200, {"value": [self._view(n) for n in self.vms]}, {}
        if request.method == "PUT":
            body = json.loads(request.content)
            machine = self.vms.setdefault(name, _Vm(body))

            def created() -> None:
                machine.provisioning, machine.power = "Succeeded", "running"

            return self._begin(sub, 201, created, {"name": name, **body}, key=("create", name))
        machine_or_none = self.vms.get(name)
        if machine_or_none is None:
            return 404, _err("ResourceNotFound", f"VM {name} not found"), {}
        machine = machine_or_none
        if request.method == "DELETE":
            machine.provisioning = "Deleting"

            def deleted() -> None:
                self.vms.pop(name, None)

            return self._begin(sub, 202, deleted, key=("delete", name))
        if verb == "start":
            before = machine.power
            machine.power = "starting"
            return self._begin(
                sub,
                202,
                lambda: setattr(machine, "power", "running"),
                key=("start", name),
                failed=lambda: setattr(machine, "power", before),
            )
        if verb == "deallocate":
            machine.power = "deallocating"
            return self._begin(
                sub, 202, lambda: setattr(machine, "power", "deallocated"), key=("deallocate", name)
            )
        return 200, {"name": name, **machine.body}, {}

    def _begin(
        self,
        sub: str,
        status: int,
        done: Callable[[], None],
        body: Any = None,
        *,
        key: tuple[str, str],
        failed: Callable[[], None] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        op_id = f"op-{next(self._ids)}"
        error = self._op_errors.pop(key, None)
        self._ops[op_id] = _Op(self.polls_per_operation, done, error, failed)
        url = (
            f"{ARM}/subscriptions/{sub}/providers/Microsoft.Compute/locations/"
            f"{self.location}/operations/{op_id}?api-version=2026-04-01"
        )
        return status, body, {"Azure-AsyncOperation": url, "Retry-After": "1"}

    def _poll(self, op_id: str) -> tuple[int, Any, dict[str, str]]:
        op = self._ops[op_id]
        op.polls_left -= 1
        if op.polls_left > 0:
            return 200, {"name": op_id, "status": "InProgress"}, {}
        if op.error is not None:
            if op.polls_left == 0 and op.failed is not None:
                op.failed()
            return 200, {"name": op_id, "status": "Failed", "error": op.error}, {}
        if op.polls_left == 0:
            op.done()
        return 200, {"name": op_id, "status": "Succeeded"}, {}

    def _view(self, name: str) -> dict[str, Any]:
        machine = self.vms[name]
        codes = [f"ProvisioningState/{machine.provisioning.lower()}"]
        if machine.power:
            codes.append(f"PowerState/{machine.power}")
        body = machine.body
        properties = {
            **body.get("properties", {}),
            "instanceView": {"statuses": [{"code": c} for c in codes]},
        }
        return {"name": name, "tags": body.get("tags", {}), "properties": properties}

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *args: Any) -> None:
        pass


def _action(method: str, name: str | None, verb: str | None) -> str:
    if name is None:
        return "list"
    if verb is not None:
        return verb
    return {"PUT": "create", "DELETE": "delete"}.get(method, "get")


def _err(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class FakeCredential:
    """Stands in for DefaultAzureCredential: a token that never reaches Entra ID."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("canned-token", int(time.time()) + 3600)
