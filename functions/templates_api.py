"""HTTP triggers for job templates (HPC Pack's named job defaults and limits).

``GET /api/templates`` lists them and ``GET /api/templates/{name}`` shows one, for
every user; ``PUT /api/templates/{name}`` creates or replaces one and ``DELETE
/api/templates/{name}`` removes it, for admins only (403 otherwise). Names match
case-insensitively. GET and PUT answer with an ``ETag`` header; a PUT with
``If-Match: <etag>`` is refused (409) if the template changed since, and one with
``If-Match: *`` (RFC 9110: any current version) replaces the template if it exists,
whatever its etag, and is refused (409, as for a mismatched etag) if it does not.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions.bodies import BadRequest, only_params, read_json
from functions.context import control
from functions.http_api import _json, api
from functions.routing import location, route
from shared.domain.cluster import Principal
from shared.errors import Conflict, Forbidden, NotFound
from shared.usecases import templates
from shared.usecases.templates import StoredTemplate

bp = func.Blueprint()

ADMIN_ROLE = "admin"


def _admin(principal: Principal, what: str) -> None:
    """Templates bind every user's jobs, so only admins change them."""
    if principal.role != ADMIN_ROLE:
        raise Forbidden(
            f"only admins may {what} job templates; {principal.name!r} has role "
            f"{principal.role!r} (ask an admin, or use an admin token)"
        )


def _name(req: func.HttpRequest) -> str:
    return req.route_params.get("name", "")


def _response(stored: StoredTemplate, status: int = 200) -> func.HttpResponse:
    response = _json(stored.template.to_dict(), status)
    if stored.etag:
        response.headers["ETag"] = f'"{stored.etag}"'  # an entity-tag is quoted (RFC 9110)
    return response


def _if_match(req: func.HttpRequest, name: str) -> str | None:
    """The If-Match header as :func:`templates.put` takes it: ``*``, or the one etag it names
    (quoted or bare, ``W/`` ignored); of a list, the template's current etag if listed."""
    header = req.headers.get("If-Match")
    tags = [t.strip() for t in (header or "").split(",") if t.strip()]
    if header is not None and not tags:  # a script's empty ETag variable: not "any version"
        raise BadRequest("If-Match is empty: give the template's ETag (or * for any version)")
    if not tags:
        return None
    if templates.ANY_ETAG in tags:
        return templates.ANY_ETAG
    # a quoted "*" is an entity-tag no template has, not the wildcard: it stays quoted
    bare = [b if (b := t.removeprefix("W/").strip('"')) != templates.ANY_ETAG else t for t in tags]
    if len(bare) == 1:
        return bare[0]
    try:
        current = templates.get(control().deps, name).etag
    except NotFound:
        return bare[0]  # refused by put: the template is gone
    return current if current in bare else bare[0]


@route(bp, "templates", ["GET"])
@api
def list_templates(req: func.HttpRequest, principal: Principal) -> Any:
    only_params(req, "GET /api/templates")
    return {"templates": [t.to_dict() for t in templates.list_templates(control().deps)]}


@route(bp, "templates/{name}", ["GET"])
@api
def get_template(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    only_params(req, "GET /api/templates/{name}")
    return _response(templates.get(control().deps, _name(req)))


@route(bp, "templates/{name}", ["PUT"])
@api
def put_template(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """The whole template as JSON, e.g. ``{"priority": "BelowNormal", "maxCores": 8}``:
    201 when created, 200 when replaced. ``If-Match``: an etag or a list of them (409 if the
    template changed since) or ``*`` (409 if there is no such template); ``If-None-Match:
    *``: create only (409 if it exists); 409, not 412, in every case."""
    _admin(principal, "change")
    if not req.get_body().strip():
        raise BadRequest('the body is the template as JSON, e.g. {"maxCores": 8}')
    none_match = (req.headers.get("If-None-Match") or "").strip()
    if none_match and none_match != templates.ANY_ETAG:
        raise BadRequest("If-None-Match takes only * here (create the template only if new)")
    stored, created = templates.put(
        control().deps,
        _name(req),
        read_json(req, "the template as JSON"),
        if_match=_if_match(req, _name(req)),
        create_only=bool(none_match),
    )
    response = _response(stored, 201 if created else 200)
    if created:
        response.headers["Location"] = location("templates", stored.template.name)
    return response


@route(bp, "templates/{name}", ["DELETE"])
@api
def delete_template(req: func.HttpRequest, principal: Principal) -> Any:
    _admin(principal, "delete")
    etag = _if_match(req, _name(req))  # honoured as by PUT (a probe's stale one was ignored)
    if etag is not None and etag != templates.ANY_ETAG:
        current = templates.get(control().deps, _name(req)).etag
        if current != etag:
            raise Conflict(
                f"template {_name(req)!r} changed since that ETag was read: read it again "
                "(GET) and delete it with its current ETag"
            )
    return {"deleted": templates.delete(control().deps, _name(req)).name}
