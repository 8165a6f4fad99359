"""AzureProvider's errors: ARM's error answers come back as values (quota, conflicts, throttling).

Against recorded-shape ARM traffic (tests/azure_compute_fixtures.py).
"""

from __future__ import annotations

import pytest

from shared.ports.compute import ComputeError, ErrorKind, VmSpec
from tests.azure_compute_fixtures import AZ, NOW, OPS, VMS, accepted, arm_error, op, status

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
