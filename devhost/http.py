"""HTTP triggers served by a Starlette app, the request and response shapes the worker uses.

Each request becomes a ``func.HttpRequest`` (headers, query, route values,
body bytes) for the function whose route template and methods match; its
``func.HttpResponse`` becomes the reply. Deliberate differences from Azure,
for a friendlier local loop: a path that matches with the wrong method gets
405 with ``Allow`` (Azure answers 404), and function keys are not checked
(nor are they by Core Tools). As in Azure, ``HEAD`` and ``OPTIONS`` reach only the
functions that declare them (functions/routing.py declares them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import azure.functions as func
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from devhost.functions import HTTP_TRIGGER, FunctionSpec
from devhost.invoke import InvocationError, Invoker
from devhost.routes import RouteTemplate, compile_template

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
"""The Functions host's request body limit (``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` overrides it)."""


def default_max_body_bytes() -> int:
    return int(os.environ.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", DEFAULT_MAX_BODY_BYTES))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class FunctionRoute(BaseRoute):
    """One HTTP-triggered function as a Starlette route."""

    def __init__(
        self,
        spec: FunctionSpec,
        template: RouteTemplate,
        *,
        invoker: Invoker,
        table: Sequence[FunctionRoute],
        max_body_bytes: int,
    ) -> None:
        self.spec = spec
        self.template = template
        self.methods = frozenset(spec.trigger.get("methods") or [])
        """Empty means every method."""
        self._invoker = invoker
        self._table = table
        self._max_body_bytes = max_body_bytes

    def allows(self, method: str) -> bool:
        return not self.methods or method in self.methods

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        values = self.template.match(scope["path"])
        if values is None:
            return Match.NONE, {}
        match = Match.FULL if self.allows(scope["method"]) else Match.PARTIAL
        return match, {"path_params": values}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if not self.allows(request.method):
            allowed = sorted(
                {
                    m
                    for r in self._table
                    if r.template.match(scope["path"]) is not None
                    for m in (r.methods or {"*"})
                }
            )
            response: Response = _error(
                405,
                f"method {request.method} is not allowed here",
                {"Allow": ", ".join(allowed)},
            )
            await response(scope, receive, send)
            return
        body = await _read_body(request, self._max_body_bytes)
        if body is None:
            response = _error(
                413, f"request body is larger than the limit of {self._max_body_bytes} bytes"
            )
            await response(scope, receive, send)
            return
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=_joined(
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
            ),
            params=_joined(request.query_params.multi_items()),
            route_params=scope.get("path_params", {}),
            body=body,
        )
        try:
            result = await self._invoker.acall(self.spec, http_request)
            response = to_response(result, head=request.method == "HEAD")
        except InvocationError:
            response = _error(500, "internal error")  # the invoker logged the traceback
        except Exception:
            log.exception("function %s returned a value that is not a response", self.spec.name)
            response = _error(500, "internal error")
        await response(scope, receive, send)


def _joined(items: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Repeated names joined with commas, as the Functions host passes headers and query."""
    out: dict[str, str] = {}
    for key, value in items:
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` (without reading the rest)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def to_response(result: Any, *, head: bool = False) -> Response:
    """A function's http output as a Starlette response, as the worker converts it. A
    ``head`` answer has no body, as Kestrel sends none, and keeps the ``Content-Length`` the
    function gave (that of the GET's body), else its body's."""
    if isinstance(result, func.HttpResponse):
        body = result.get_body()
        response = Response(content=b"" if head else body, status_code=result.status_code)
        headers = [(str(k), str(v)) for k, v in result.headers.items()]
        if head:
            given = [v for k, v in headers if k.lower() == "content-length"]
            response.headers["content-length"] = given[0] if given else str(len(body))
        if not any(k.lower() == "content-type" for k, _ in headers):
            mimetype = result.mimetype or "text/plain"
            content_type = (
                f"{mimetype}; charset={result.charset}"
                if mimetype.startswith("text/") and result.charset
                else mimetype
            )
            headers.append(("content-type", content_type))
        response.raw_headers = [
            (k, v) for k, v in response.raw_headers if k == b"content-length"
        ] + [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in headers
            if k.lower() != "content-length"
        ]
        return response
    if result is None:
        return Response(status_code=204)
    if isinstance(result, str):
        return Response(content=result, media_type="text/plain")
    if isinstance(result, bytes):
        return Response(content=result, media_type="application/octet-stream")
    raise TypeError(f"an http output must be a func.HttpResponse, str or bytes, got {type(result)}")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(404, f"no function serves {request.method} {request.url.path}")
    return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


def build_app(
    specs: Sequence[FunctionSpec],
    invoker: Invoker,
    *,
    route_prefix: str = "api",
    max_body_bytes: int | None = None,
    errors: Mapping[str, str] | None = None,
) -> Starlette:
    """The ASGI app for the HTTP-triggered functions among ``specs``, and the host's
    ``GET /admin/host/status`` (Azure's host admin API: its state and the functions that
    failed to load, ``errors``), which ``hpc up`` reads so that a cluster with a function
    not loaded (a bad schedule setting) is not said to be up."""
    limit = default_max_body_bytes() if max_body_bytes is None else max_body_bytes
    table: list[FunctionRoute] = []
    for spec in specs:
        if spec.trigger_type != HTTP_TRIGGER:
            continue
        template = compile_template(spec.trigger["route"], route_prefix)
        table.append(
            FunctionRoute(spec, template, invoker=invoker, table=table, max_body_bytes=limit)
        )
    table.sort(key=lambda r: (r.template.precedence, r.template.template))
    failed = [f"{name}: {error}" for name, error in (errors or {}).items()]

    async def host_status(_request: Request) -> Response:
        return JSONResponse({"state": "Error" if failed else "Running", "errors": failed})

    admin = Route("/admin/host/status", host_status, methods=["GET"])
    app = Starlette(routes=[admin, *table], exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False  # templates already accept a trailing slash
    return app
