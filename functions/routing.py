"""How the HTTP functions declare their routes: :func:`route` in place of ``bp.route``.

Every GET route also takes ``HEAD`` (the GET's status and headers, no body: RFC 9110
§9.3.2), and every route template takes ``OPTIONS`` (204 with ``Allow``, the methods the
template takes, without a token: a browser's CORS preflight never carries one). Azure's
host serves only the methods a function declares (404 otherwise), so they are declared
here, on the functions themselves, and the local host serves what Azure would.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import azure.functions as func

Endpoint = Callable[[func.HttpRequest], func.HttpResponse]

_METHODS: dict[str, dict[str, list[str]]] = {}
"""Each route template (lower case) → each of its functions → the methods it declares,
filled as the function modules are imported (all of them before the first request)."""


def allowed(template: str) -> str:
    """The ``Allow`` header of a route template: the methods of all its functions, sorted."""
    declared = _METHODS.get(template.lower(), {}).values()
    return ", ".join(sorted({m for methods in declared for m in methods}))


def route(bp: func.Blueprint, template: str, methods: list[str]) -> Callable[[Endpoint], Endpoint]:
    """``bp.route`` with ``HEAD`` beside ``GET``, and ``OPTIONS`` on the first function of
    each template (two functions may not both take one method of one route)."""

    def register(function: Endpoint) -> Endpoint:
        declared = [m.upper() for m in methods]
        if "GET" in declared:
            declared.append("HEAD")
        functions = _METHODS.setdefault(template.lower(), {})
        name = f"{function.__module__}.{function.__qualname__}"
        if next(iter(functions), name) == name:  # (a module imported again keeps its own)
            declared.append("OPTIONS")
        functions[name] = declared

        def endpoint(req: func.HttpRequest) -> func.HttpResponse:
            if req.method.upper() == "OPTIONS":
                return func.HttpResponse(status_code=204, headers={"Allow": allowed(template)})
            response = function(req)
            return headless(response) if req.method.upper() == "HEAD" else response

        # the indexer binds parameters by name: exactly ``(req)``, as the function's
        endpoint.__name__ = function.__name__
        endpoint.__qualname__ = function.__qualname__
        endpoint.__doc__ = function.__doc__
        return bp.route(route=template, methods=declared, auth_level=func.AuthLevel.ANONYMOUS)(
            endpoint
        )

    return register


def headless(response: func.HttpResponse) -> func.HttpResponse:
    """A GET's answer as HEAD's: the same status and headers, ``Content-Length`` the GET
    body's, no body (Azure's Kestrel would drop one; the local host drops it too)."""
    headers = dict(response.headers)
    headers["Content-Length"] = str(len(response.get_body()))
    return func.HttpResponse(
        b"",
        status_code=response.status_code,
        headers=headers,
        mimetype=response.mimetype,
        charset=response.charset,
    )


API_PREFIX = "/api"
"""host.json's ``routePrefix``: where the routes are, for ``Location`` headers."""


def location(*path: str | int) -> str:
    """A resource's URL path, its segments percent-encoded."""
    return f"{API_PREFIX}/" + "/".join(quote(str(p), safe="") for p in path)


def created(body: str, *path: str | int) -> func.HttpResponse:
    """A 201 with ``Location``: the created resource's URL (RFC 9110 §15.3.2)."""
    return func.HttpResponse(
        body, status_code=201, mimetype="application/json", headers={"Location": location(*path)}
    )
