"""Nodes and node groups are changed by admins only (each Azure node is a VM that bills); any
user may read them. A user's attempt is a 403 that says who may, and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

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


class Mutation(NamedTuple):
    handler: str
    method: str
    url: str
    body: Any
    route: dict[str, str]


MUTATIONS = [
    Mutation("add_nodes", "POST", "nodes", {"group": "AzureNodes", "count": 1}, {}),
    Mutation("node_action", "POST", "nodes/n1/drain", None, {"name": "n1", "action": "drain"}),
    Mutation("set_node", "PATCH", "nodes/n1", {"groups": ["OnPremNodes"]}, {"name": "n1"}),
    Mutation("remove_node", "DELETE", "nodes/n1", None, {"name": "n1"}),
    Mutation("create_node_group", "POST", "nodegroups", {"name": "Gpu"}, {}),
    Mutation(
        "set_node_group", "PATCH", "nodegroups/AzureNodes", {"maxNodes": 9}, {"name": "AzureNodes"}
    ),
]
BY_HANDLER = pytest.mark.parametrize("m", MUTATIONS, ids=[m.handler for m in MUTATIONS])


def _as(call: Callable[..., tuple[int, Any]], m: Mutation, token: str) -> tuple[int, Any]:
    return call(m.handler, m.method, m.url, token, m.body, **m.route)


@BY_HANDLER
def test_a_user_may_not_change_nodes_or_groups_and_nothing_changes(
    cp: Any, call: Callable[..., tuple[int, Any]], m: Mutation
) -> None:
    register(cp, "n1")
    before = (cp.store.list_nodes(), cp.store.list_groups())
    status, doc = _as(call, m, USER)
    assert status == 403, doc
    assert "only an admin may" in doc["error"] and "'user'" in doc["error"]
    assert (cp.store.list_nodes(), cp.store.list_groups()) == before


@BY_HANDLER
def test_an_admin_may(cp: Any, call: Callable[..., tuple[int, Any]], m: Mutation) -> None:
    register(cp, "n1")
    status, doc = _as(call, m, ADMIN)
    assert status != 403, doc


def test_a_user_may_read_the_autoscale_log(
    cp: Any,
    call: Callable[..., tuple[int, Any]],
) -> None:
    register(cp, "n1")
    assert call("autoscale_log", "GET", "autoscale/log", USER)[0] == 200


def test_the_autoscale_log_of_a_group_that_does_not_exist_is_a_404_naming_it(
    cp: Any,
    call: Callable[..., tuple[int, Any]],
) -> None:
    register(cp, "n1")
    endpoint = functions.nodes_api.autoscale_log._function.get_user_function()

    def log(group: str) -> tuple[int, Any]:
        request = func.HttpRequest(
            method="GET",
            url="http://localhost/api/autoscale/log",
            headers={"Authorization": f"Bearer {USER}"},
            params={"group": group},
            body=b"",
        )
        response = endpoint(request)
        return response.status_code, json.loads(response.get_body() or b"null")

    status, doc = log("Nope")
    assert status == 404 and "node group 'Nope' does not exist" in json.dumps(doc)
    groups = [g.name for g in cp.store.list_groups()]
    assert groups and log(groups[0].upper()) == (200, {"entries": []})  # any case
