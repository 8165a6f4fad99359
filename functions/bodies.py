"""What requests carry, as the routes take it: a JSON body within HPC_MAX_BODY_BYTES, or
none at all for a route that takes none, and only the query parameters a route reads (a body
or a parameter it would ignore may mean the caller thinks it said something)."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions.context import control
from shared.domain.specvalues import JsonRefused, load_json
from shared.errors import HpcError, TooLarge


class BadRequest(HpcError):
    status = 400


def read_json(req: func.HttpRequest, what: str = "the job spec as JSON") -> Any:
    """The request's JSON; ``what`` says what the route takes, for an empty body."""
    body = req.get_body()
    limit = control().settings.max_body_bytes
    if len(body) > limit:
        raise TooLarge(
            f"request body is {len(body)} bytes; the limit is {limit} (HPC_MAX_BODY_BYTES)"
        )
    if not body.strip():
        raise BadRequest(f"request body is empty: send {what}")
    try:
        return load_json(body)
    except JsonRefused as e:  # too deep (json.loads' RecursionError among them), a key twice
        raise BadRequest(f"request body {e}") from None
    except ValueError as e:  # also a number of more than 4300 digits, and bad UTF-8
        raise BadRequest(f"request body is not valid JSON: {e}") from None


def no_body(req: func.HttpRequest) -> None:
    """A route that takes no body refuses one (400): a body it would ignore may mean the
    caller thinks it said something. Empty or ``{}`` is taken (clients that always send JSON)."""
    body = req.get_body().strip()
    if body and body.replace(b" ", b"") != b"{}":
        raise BadRequest(
            f"this route takes no request body (got {len(body)} bytes); send none, or {{}}"
        )


def only_params(req: func.HttpRequest, route: str, *allowed: str) -> None:
    """400 for a query parameter ``route`` does not read (a probe's ``?after=`` on the jobs
    list, the tasks list's cursor, was ignored and the first page returned)."""
    unknown = sorted(set(req.params) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no query parameters"
        raise BadRequest(f"{route} takes {takes}, not {', '.join(unknown)}")
