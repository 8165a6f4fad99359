"""AzureProvider's test stand-in: recorded-shape ARM traffic, and the ``arm`` and ``azure``
fixtures (registered for every test by tests/conftest.py).

No Azure is reachable here, so :class:`FakeArm` is a constructed stand-in: an
``azure.core`` ``HttpTransport`` that serves canned ARM answers (shaped as the
ARM REST reference documents them) to the real ComputeManagementClient
pipeline, and records every request. The tests (tests/test_azure_compute_*.py)
assert each request's method, path, api-version and body, follow the long-running
operations through their ``Azure-AsyncOperation`` / ``Location`` URLs, check that
ARM's error answers come back as values, and count the ARM calls of one autoscaler run.
"""

from __future__ import annotations

import io
import json
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
from shared.ports.compute import ComputeError, Operation
from tests.arm_double import FakeCredential

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
