"""Backing services that do not answer: the HTTP API's 503 (with Retry-After) instead of a
500 and a traceback per request (a probe killed the Cosmos stand-in: every request was an
"internal error", which the CLI does not retry, and health said ok)."""

from __future__ import annotations

import azure.functions as func
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from functions.keys import json_text

UNREACHABLE = (ServiceRequestError, ServiceResponseError)
"""An Azure service (the Cosmos DB store, Blob output) that did not answer: no connection,
or one dropped before the answer (the SDK's own retries are spent)."""

UNAVAILABLE_RETRY_S = 5

HEALTH_PROBE = "health-probe"
"""A Meta key nothing writes: health's read of it (404 from the store) shows the store answers."""


def unavailable() -> func.HttpResponse:
    """503 with Retry-After. The CLI retries a 503; a submit with an Idempotency-Key is safe
    to send again."""
    body = {
        "error": "the control plane's store or output service does not answer; retry in a "
        "moment (hpc retries by itself; a submit with an Idempotency-Key is safe to send again)"
    }
    response = func.HttpResponse(json_text(body), status_code=503, mimetype="application/json")
    response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_S)
    return response
