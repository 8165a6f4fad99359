"""The ``Idempotency-Key`` header of the routes that create something on each call
(``POST /api/jobs``, ``POST /api/nodes``): read and checked here, kept by
:mod:`shared.usecases.idempotency`, and its answers sent as they were first made."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import azure.functions as func

from functions.bodies import BadRequest
from functions.routing import location
from shared.domain.idempotency import HEADER, REPLAYED_HEADER, key_problem
from shared.usecases.idempotency import Answer


def json_text(data: Any) -> str:
    """The API's JSON text: what every route sends, and what a key's answer stores."""
    return json.dumps(data, default=str)


def idempotency_key(req: func.HttpRequest) -> str | None:
    """The request's key (None: it sent none); 400 saying what to send for a bad one."""
    value = req.headers.get(HEADER)
    if value is None:
        return None
    problem = key_problem(value)
    if problem is not None:
        raise BadRequest(problem)
    return value


def answered(
    answer: Answer, where: Callable[[Any], Sequence[str | int]] | None = None
) -> func.HttpResponse:
    """The stored answer, with ``Idempotent-Replayed: true`` when it is a replay; a 201 with
    ``Location``, the path ``where`` reads from its body (a replay's as the first's)."""
    headers = {REPLAYED_HEADER: "true"} if answer.replayed else {}
    if answer.status == 201 and where is not None:
        headers["Location"] = location(*where(json.loads(answer.body)))
    return func.HttpResponse(
        answer.body, status_code=answer.status, mimetype="application/json", headers=headers
    )
