"""The web dashboard: one static page (HTML, JavaScript, CSS) served by an HTTP function.

The page holds no data and needs no token to load; everything it shows it reads from the
same API the CLI uses (``/api/jobs``, ``/api/nodes``, ...), with the bearer token the user
gives it (pasted, or in the URL fragment that ``hpc dashboard`` prints: a fragment is never
sent to a server). The token is kept in the tab's sessionStorage only. A strict Content
Security Policy allows nothing but these files and the API of the same origin, and the
script writes every value as text (never HTML), so a job name cannot run script.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit

import azure.functions as func

from functions.routing import route
from shared.domain.specvalues import cut

bp = func.Blueprint()

ASSETS: dict[str, str] = {
    "": "text/html",
    "cells.js": "text/javascript",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
"""The files served (``dashboard/`` + name); anything else is a 404."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def asset(name: str) -> bytes:
    """The bytes of one dashboard file (``""`` is the page itself)."""
    files = resources.files("functions") / "dashboard_assets"
    return (files / (name or "index.html")).read_bytes()


@route(bp, "dashboard/{asset?}", ["GET"])
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    """The dashboard's page and its files; they carry no data (the API needs a token)."""
    name = req.route_params.get("asset") or ""
    if not name and urlsplit(req.url).path.endswith("/"):
        # the page's links are relative to /api/dashboard, not /api/dashboard/
        return func.HttpResponse(status_code=308, headers={"Location": "../dashboard"})
    mimetype = ASSETS.get(name)
    if mimetype is None:
        return func.HttpResponse(
            f"no dashboard file {cut(name)!r}: the page is /api/dashboard",
            status_code=404,
            mimetype="text/plain",
        )
    return func.HttpResponse(
        asset(name), status_code=200, mimetype=mimetype, charset="utf-8", headers=SECURITY_HEADERS
    )
