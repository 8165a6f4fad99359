"""A stateful stand-in for Azure Resource Manager's virtualMachines API, for tests.

No Azure is reachable here. This is an ``azure.core`` ``HttpTransport`` that
keeps VMs in a dict and answers the real ComputeManagementClient the way ARM
does (201/202 with an ``Azure-AsyncOperation`` URL, an operation that reports
``InProgress`` for ``polls_per_operation - 1`` polls and then ``Succeeded``,
instance views with ``PowerState/...`` codes, 404 for an unknown VM). It lets
the Compute contract run the same scenarios on AzureProvider as on the local
provider. Canned single answers for the error cases are in
tests/test_azure_compute.py.
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
        if name is None:
            return 200, {"value": [self._view(n) for n in self.vms]}, {}
        if request.method == "PUT":
            body = json.loads(request.content)
            machine = self.vms.setdefault(name, _Vm(body))

            def created() -> None:
                machine.provisioning, machine.power = "Succeeded", "running"

            return self._begin(sub, 201, created, {"name": name, **body})
        machine_or_none = self.vms.get(name)
        if machine_or_none is None:
            return 404, _err("ResourceNotFound", f"VM {name} not found"), {}
        machine = machine_or_none
        if request.method == "DELETE":
            machine.provisioning = "Deleting"

            def deleted() -> None:
                self.vms.pop(name, None)

            return self._begin(sub, 202, deleted)
        if verb == "start":
            machine.power = "starting"
            return self._begin(sub, 202, lambda: setattr(machine, "power", "running"))
        if verb == "deallocate":
            machine.power = "deallocating"
            return self._begin(sub, 202, lambda: setattr(machine, "power", "deallocated"))
        return 200, {"name": name, **machine.body}, {}

    def _begin(
        self, sub: str, status: int, done: Callable[[], None], body: Any = None
    ) -> tuple[int, Any, dict[str, str]]:
        op_id = f"op-{next(self._ids)}"
        self._ops[op_id] = _Op(self.polls_per_operation, done)
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


def _err(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class FakeCredential:
    """Stands in for DefaultAzureCredential: a token that never reaches Entra ID."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("canned-token", int(time.time()) + 3600)
