"""Nodes and node groups are changed by admins only (each Azure node is a VM that bills); any
user may read them. A user's attempt is a 403 that says who may, and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

import functions.http_api
import functions.nodes_api
from shared.auth import digest
from shared.domain.cluster import Principal
from tests.test_control import Clock, make_cp, register

USER = "user-token-9"
ADMIN = "admin-token-9"


@pytest.fixture
def cp(tmp_path: Any) -> Any:
    return make_cp(tmp_path, Clock())


@pytest.fixture
def call(cp: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, Any]]:
    monkeypatch.setattr(functions.http_api, "control", lambda: cp)
    monkeypatch.setattr(functions.nodes_api, "control", lambda: cp)
    cp.store.add_token(digest(ADMIN), Principal(name="root", role="admin"))
    cp.store.add_token(digest(USER), Principal(name="ann", role="user"))

    def invoke(handler: str, method: str, url: str, token: str, body: Any = None, **route: str):
        endpoint = getattr(functions.nodes_api, handler)._function.get_user_function()
        request = func.HttpRequest(
            method=method,
            url=f"http://localhost/api/{url}",
            headers={"Authorization": f"Bearer {token}"},
            route_params=route,
            body=b"" if body is None else json.dumps(body).encode(),
        )
        response = endpoint(request)
        return response.status_code, json.loads(response.get_body() or b"null")

    return invoke


MUTATIONS = [
    ("add_nodes", "POST", "nodes", {"group": "AzureNodes", "count": 1}, {}),
    ("node_action", "POST", "nodes/n1/drain", None, {"name": "n1", "action": "drain"}),
    ("set_node", "PATCH", "nodes/n1", {"groups": ["OnPremNodes"]}, {"name": "n1"}),
    ("remove_node", "DELETE", "nodes/n1", None, {"name": "n1"}),
    ("create_node_group", "POST", "nodegroups", {"name": "Gpu"}, {}),
    ("set_node_group", "PATCH", "nodegroups/AzureNodes", {"maxNodes": 9}, {"name": "AzureNodes"}),
]


@pytest.mark.parametrize(("handler", "method", "url", "body", "route"), MUTATIONS)
def test_a_user_may_not_change_nodes_or_groups_and_nothing_changes(
    cp: Any,
    call: Callable[..., tuple[int, Any]],
    handler: str,
    method: str,
    url: str,
    body: Any,
    route: dict[str, str],
) -> None:
    register(cp, "n1")
    before = (cp.store.list_nodes(), cp.store.list_groups())
    status, doc = call(handler, method, url, USER, body, **route)
    assert status == 403, doc
    assert "only an admin may" in doc["error"] and "'user'" in doc["error"]
    assert (cp.store.list_nodes(), cp.store.list_groups()) == before


@pytest.mark.parametrize(("handler", "method", "url", "body", "route"), MUTATIONS)
def test_an_admin_may(
    cp: Any,
    call: Callable[..., tuple[int, Any]],
    handler: str,
    method: str,
    url: str,
    body: Any,
    route: dict[str, str],
) -> None:
    register(cp, "n1")
    status, doc = call(handler, method, url, ADMIN, body, **route)
    assert status != 403, doc


def test_a_user_may_read_nodes_groups_and_the_autoscale_log(
    cp: Any,
    call: Callable[..., tuple[int, Any]],
) -> None:
    register(cp, "n1")
    assert call("autoscale_log", "GET", "autoscale/log", USER)[0] == 200
