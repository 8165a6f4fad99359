"""ARM error answers -> :class:`ComputeError` values: one table, the quota special case, and
the Retry-After header (from a call's exception or from a polled operation's body)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from azure.core.exceptions import HttpResponseError

from shared.ports.compute import ComputeError, ErrorKind

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
    "OperationPreempted": ErrorKind.CONFLICT,
}
"""ARM error code -> ours. OperationNotAllowed is also how ARM says "core quota exceeded"
(its message names the quota), which :func:`error_from` checks. OperationPreempted: a later
operation on the VM (our deallocation) ended this one; the code is kept on the error
(``ComputeError.code``) so the autoscaler tells it from other 409s."""


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


def error_of(exc: HttpResponseError, vm: str | None = None) -> ComputeError:
    headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
    code = exc.error.code if exc.error is not None else None
    message = exc.error.message if exc.error is not None and exc.error.message else exc.message
    return error_from(exc.status_code, code, message, retry_after=headers.get("Retry-After"), vm=vm)


def body_error(text: str, status: int, headers: Mapping[str, str], vm: str) -> ComputeError:
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
