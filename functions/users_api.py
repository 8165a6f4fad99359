"""HTTP triggers for API users (admin only): ``POST /api/users`` adds a user or another
token for one (the token is in the answer, once), ``GET /api/users`` lists them,
``DELETE /api/users/{name}`` revokes every token of one (its jobs stay),
``GET /api/users/{name}/tokens`` lists one's tokens by id and ``DELETE
/api/users/{name}/tokens/{id}`` revokes one of them. ``GET /api/me`` (any user) says who the
caller's token signs in as."""

from __future__ import annotations

from typing import Any

import azure.functions as func

from functions.bodies import only_params, read_json
from functions.context import control
from functions.http_api import api
from functions.keys import json_text
from functions.routing import created, route
from shared.auth import digest
from shared.domain.access import check_admin
from shared.domain.cluster import Principal
from shared.domain.records import fixed_width
from shared.errors import InvalidRequest
from shared.usecases import users

bp = func.Blueprint()


@route(bp, "users", ["POST"])
@api
def add_user(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    """``{"name": "alice", "role": "user"}`` (role ``user`` if left out)."""
    check_admin(principal, "add users")
    body = read_json(req, '{"name": NAME[, "role": "user" or "admin"]}')
    if not isinstance(body, dict) or "name" not in body or set(body) - {"name", "role"}:
        raise InvalidRequest('the body is {"name": NAME[, "role": "user" or "admin"]}')
    user, token = users.add_user(control().deps, body["name"], body.get("role", "user"))
    doc = {
        "name": user.name,
        "role": user.role,
        "tokens": user.tokens,
        "token": token,
        "tokenId": users.token_id(digest(token)),
    }
    return created(json_text(doc), "users", user.name)


@route(bp, "users", ["GET"])
@api
def list_users(req: func.HttpRequest, principal: Principal) -> Any:
    only_params(req, "GET /api/users")
    check_admin(principal, "list users")
    return {
        "users": [
            {"name": u.name, "role": u.role, "tokens": u.tokens}
            for u in users.list_users(control().deps)
        ]
    }


@route(bp, "me", ["GET"])
@api
def me(req: func.HttpRequest, principal: Principal) -> Any:
    """Who the token signs in as (any user): ``hpc job list --mine`` lists that name's jobs."""
    only_params(req, "GET /api/me")
    return {"name": principal.name, "role": principal.role}


@route(bp, "users/{name}", ["DELETE"])
@api
def remove_user(req: func.HttpRequest, principal: Principal) -> Any:
    check_admin(principal, "remove users")
    name = req.route_params.get("name", "")
    revoked = users.remove_user(control().deps, name, principal)
    return {"name": name, "revokedTokens": revoked}


@route(bp, "users/{name}/tokens", ["GET"])
@api
def list_tokens(req: func.HttpRequest, principal: Principal) -> Any:
    only_params(req, "GET /api/users/{name}/tokens")
    check_admin(principal, "list users' tokens")
    name = req.route_params.get("name", "")
    tokens = users.list_tokens(control().deps, name)
    return {
        "name": name,
        "tokens": [
            {"id": t.id, "created": fixed_width(t.created) if t.created else None} for t in tokens
        ],
    }


@route(bp, "users/{name}/tokens/{token}", ["DELETE"])
@api
def revoke_token(req: func.HttpRequest, principal: Principal) -> Any:
    check_admin(principal, "revoke tokens")
    name, token = req.route_params.get("name", ""), req.route_params.get("token", "")
    bearer = (req.headers.get("Authorization") or "")[7:].strip()
    revoked, left = users.revoke_token(control().deps, name, token, caller_token=digest(bearer))
    return {"name": name, "revokedTokens": 1, "token": revoked, "tokensLeft": left}
