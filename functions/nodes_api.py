"""HTTP triggers for nodes, node groups and the autoscaler.

``GET /api/nodes`` and ``/api/nodes/{name}``, ``GET /api/nodegroups`` and
``/api/nodegroups/{name}`` read them; ``POST /api/nodes`` adds managed nodes; ``PATCH
/api/nodes/{name}`` changes a node's
groups (admin only); ``POST /api/nodes/{name}/{action}`` starts,
stops (drain first while tasks run), drains or takes a node offline; ``DELETE
/api/nodes/{name}`` removes an Offline node; ``POST /api/nodegroups`` creates a group,
``PATCH /api/nodegroups/{name}`` changes its settings (the AutoGrowShrink parameters,
``idlePolicy`` and ``bootDelayS`` among them: bad text is a 422 naming the accepted
forms), ``DELETE /api/nodegroups/{name}`` deletes one with no nodes and no Queued or
Running job; ``GET /api/autoscale/log`` tells why the autoscaler did what it did.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import azure.functions as func

from functions.bodies import BadRequest, no_body, only_params, read_json
from functions.context import control
from functions.http_api import _doc, _int, api
from functions.keys import answered, idempotency_key, json_text
from functions.routing import created, route
from shared.domain.access import check_admin
from shared.domain.cluster import Node, NodeGroup, Principal
from shared.domain.groupnames import unknown_groups
from shared.domain.groupsettings import MAX_CORES, check_setting_names, vm_size_problem
from shared.domain.models import Task
from shared.domain.specvalues import shown_json
from shared.domain.vmsizes import size_warning
from shared.errors import InvalidRequest, NotFound
from shared.usecases.nodegroups import set_warnings as set_group_warnings
from shared.usecases.nodes import set_node_groups
from shared.usecases.nodes_add import NodeAdd
from shared.usecases.queries import filter_nodes, public_node_doc

bp = func.Blueprint()

NODE_ACTIONS = ("start", "stop", "drain", "offline", "release")
_CAMEL = {
    "minNodes": "min_nodes",
    "maxNodes": "max_nodes",
    "nodeCores": "node_cores",
    "nodeMemoryMb": "node_memory_mb",
    "growIntervalS": "grow_interval_s",
    "shrinkIntervalS": "shrink_interval_s",
    "shrinkIdleTimes": "shrink_idle_times",
    "growThreshold": "grow_threshold",
    "tasksPerResourceUnit": "tasks_per_resource_unit",
    "extraNodesGrowRatio": "extra_nodes_grow_ratio",
    "growByMin": "grow_by_min",
    "idlePolicy": "idle_policy",
    "bootDelayS": "boot_delay_s",
    "scaleDownDelayS": "scale_down_delay_s",
}


def _settings(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the body is a JSON object of node group settings")
    settings = {_CAMEL.get(str(k), str(k)): v for k, v in body.items()}
    check_setting_names(set(settings) - {"name"})  # before they become keyword arguments
    return settings


def _node(node: Node | str) -> Any:
    if isinstance(node, str):
        return node
    return public_node_doc(_doc(node))  # as GET /api/nodes (a probe saw agentId in these)


def _group(group: NodeGroup) -> dict[str, Any]:
    return _doc(group)


@route(bp, "nodes", ["GET"])
@api
def list_nodes(req: func.HttpRequest, principal: Principal) -> Any:
    """Every node, or ``?group=A,B&state=Online,Drained`` (any case; Drained: Draining with
    no task), as ``hpc node list`` filters; an unknown parameter is a 400 (a probe's
    ``?state=`` was ignored and every node listed)."""
    only_params(req, "GET /api/nodes", "group", "state")
    groups = _split(req, "group")
    try:
        nodes = filter_nodes(control().list_nodes(), groups, _split(req, "state"))
    except ValueError as exc:  # a query parameter: the request cannot be read
        raise BadRequest(str(exc)) from None
    if groups and (missing := unknown_groups(groups, [g.name for g in control().list_groups()])):
        # as hpc node list --group and GET /api/autoscale/log?group= say (a user probe got
        # 200 and no nodes for a misspelt group)
        names = ", ".join(map(repr, missing))
        raise NotFound(f"node group {names} does not exist (hpc nodegroup list)")
    return {"nodes": nodes}


def _split(req: func.HttpRequest, name: str) -> list[str]:
    return [p.strip() for p in (req.params.get(name) or "").split(",") if p.strip()]


@route(bp, "nodegroups", ["GET"])
@api
def list_node_groups(req: func.HttpRequest, principal: Principal) -> Any:
    only_params(req, "GET /api/nodegroups")
    return {"groups": [_doc(g) for g in control().list_groups()]}


@route(bp, "nodes", ["POST"])
@api
def add_nodes(req: func.HttpRequest, principal: Principal) -> Any:
    """``{"group": "AzureNodes", "count": 4, "cores": 4, "size": "Standard_D4s_v5",
    "spot": true}``."""
    check_admin(principal, "add nodes (each is a VM that bills)")
    body = read_json(req, '{"group": NAME, "count": N}')
    if not isinstance(body, dict) or "group" not in body:
        raise InvalidRequest(
            'the body is {"group": NAME, "count": N[, "cores": C, "size": SKU, "spot": true]}'
        )
    unknown = set(body) - {"group", "count", "cores", "size", "spot"}
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(sorted(unknown))}")
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool):
        raise InvalidRequest(f"count must be a whole number, got {count!r}")
    cores = body.get("cores")
    if cores is not None and (
        not isinstance(cores, int) or isinstance(cores, bool) or not 1 <= cores <= MAX_CORES
    ):
        raise InvalidRequest(f"cores must be a whole number from 1 to {MAX_CORES:,}, got {cores!r}")
    size = body.get("size")
    problem = None if size is None else vm_size_problem(size)
    if problem:
        raise InvalidRequest(problem)
    spot = body.get("spot", False)
    if not isinstance(spot, bool):
        raise InvalidRequest(f"spot must be true or false, got {spot!r}")
    group = body["group"]
    if not isinstance(group, str):
        raise InvalidRequest(f"group must be a node group's name, got {group!r}")
    key = idempotency_key(req)  # a retried add gets the first one's nodes, adding none

    def render(added: list[Node]) -> str:
        warnings = sorted({w for n in added if (w := size_warning(n.size, n.cores))})
        answer: dict[str, Any] = {"nodes": [_node(n) for n in added]}  # as GET shows them
        return json_text({**answer, "warnings": warnings} if warnings else answer)

    if key is None:  # (one or more nodes: the first one's URL is the Location)
        added = control().add_nodes(group, count, cores=cores, size=size, spot=spot)
        return created(render(added), "nodes", added[0].name)
    asked = NodeAdd(group, count, cores, size, spot)
    answer = control().add_nodes_once(body, principal, key, asked, render)
    return answered(answer, lambda doc: ("nodes", doc["nodes"][0]["name"]))


@route(bp, "nodes/{name}", ["GET"])
@api
def get_node(req: func.HttpRequest, principal: Principal) -> Any:
    """One node as ``GET /api/nodes`` lists it; its name exact, as the node actions take it."""
    only_params(req, "GET /api/nodes/{name}")
    return control().get_node(req.route_params.get("name", ""))


@route(bp, "nodes/{name}/{action}", ["POST"])
@api
def node_action(req: func.HttpRequest, principal: Principal) -> Any:
    check_admin(principal, "start, stop, drain or take nodes offline")
    action = req.route_params.get("action", "")
    if action not in NODE_ACTIONS:
        raise NotFound(f"no node action {action!r}; one of {', '.join(NODE_ACTIONS)}")
    reason = _reason(req, action, principal)
    # a refusal because of the node's state says it ("state"): `hpc node start --group G`
    # goes on past a node already as the action leaves it by that field, not by the words
    name = req.route_params.get("name", "")
    running = control().tasks_on_node(name) if action == "offline" else []
    done, already = control().act_on_node(action, name, reason=reason, by=principal.name)
    answer: dict[str, Any] = {"nodes": [_node(n) for n in done], "changed": already is None}
    if already is not None:  # its result held already: a 200 saying so (nodeactions)
        answer["message"] = already
    elif action == "offline":
        answer["tasks"] = _given_up(running)
    elif action == "stop":  # the autoscaler would start it again for its group's minNodes
        warnings = control().stop_warnings([n for n in done if isinstance(n, Node)])
        if warnings:
            answer["warnings"] = warnings
    return answer


def _given_up(tasks: list[Task]) -> list[dict[str, Any]]:
    """The tasks an offline took off the node, each as it is now (Queued again as a new
    attempt; Canceled if its job was being canceled), so that the admin sees what was
    requeued (a probe's ``hpc node offline`` of a busy VM said only "Offline")."""
    by_job: dict[int, list[int]] = {}
    for was in tasks:
        by_job.setdefault(was.job_id, []).append(was.id)
    found = [  # a read per job, not per task (a task of a job deleted meanwhile is left out)
        now for job_id, ids in by_job.items() for now in control().store.get_tasks(job_id, ids)
    ]
    return [
        {"jobId": t.job_id, "taskId": t.id, "state": t.state.value, "attempt": t.attempt}
        for t in sorted(found, key=lambda t: (t.job_id, t.id))
    ]


MAX_REASON = 200
"""Characters of an admin's reason for a stop, drain or offline."""
_DONE = {"stop": "stopped", "drain": "drained", "offline": "taken offline"}


def _reason(req: func.HttpRequest, action: str, principal: Principal) -> str | None:
    """The node's state reason: who, and why if the body says (``{"reason": "disk swap"}``,
    Slurm's ``scontrol update state=drain reason=``); None for a start, which takes no body."""
    if action not in _DONE:
        no_body(req)
        return None
    who = f"{_DONE[action]} by {principal.name}"
    body = read_json(req, '{"reason": TEXT}') if req.get_body().strip() else {}
    if body == {}:
        return who
    text = body.get("reason") if isinstance(body, dict) and set(body) == {"reason"} else None
    if not isinstance(text, str) or not 1 <= len(text.strip()) <= MAX_REASON:
        raise InvalidRequest(
            f'the body is {{"reason": TEXT}} (1 to {MAX_REASON} characters), or none; '
            f"got {shown_json(body)}"
        )
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cf")), None)
    if bad is not None:
        raise InvalidRequest(
            f"reason holds the control character U+{ord(bad):04X}: give plain text"
        )
    return f"{who}: {text.strip()}"


@route(bp, "nodes/{name}", ["PATCH"])
@api
def set_node(req: func.HttpRequest, principal: Principal) -> Any:
    """An admin changes a node's groups: ``{"groups": ["OnPremNodes", "Gpu"]}`` (the
    control plane owns them; its agent's registration does not change them)."""
    check_admin(principal, "change a node's groups")
    body = read_json(req, '{"groups": [GROUP, ...]}')
    if not isinstance(body, dict) or set(body) != {"groups"}:
        raise InvalidRequest('the body is {"groups": [GROUP, ...]}; nothing else can change')
    groups = body["groups"]
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise InvalidRequest(f"groups must be a list of node group names, got {groups!r}")
    name = req.route_params.get("name", "")
    [node] = set_node_groups(control().deps, [name], groups)
    return _node(node)


@route(bp, "nodes/{name}", ["DELETE"])
@api
def remove_node(req: func.HttpRequest, principal: Principal) -> Any:
    check_admin(principal, "remove nodes")
    return {"removed": control().node_action("remove", [req.route_params.get("name", "")])}


@route(bp, "nodegroups", ["POST"])
@api
def create_node_group(req: func.HttpRequest, principal: Principal) -> Any:
    check_admin(principal, "create node groups")
    settings = _settings(read_json(req, '{"name": NAME, ...node group settings}'))
    if "name" not in settings:
        raise InvalidRequest('the body needs "name": the new group\'s name')
    name = settings.pop("name")
    if not isinstance(name, str):
        raise InvalidRequest(
            f'"name" must be a string (letters, digits, _ . -), got {shown_json(name)}'
        )
    group = control().create_group(name, **settings)
    return created(json_text(_group(group)), "nodegroups", group.name)


@route(bp, "nodegroups/{name}", ["GET"])
@api
def get_node_group(req: func.HttpRequest, principal: Principal) -> Any:
    """One group as ``GET /api/nodegroups`` lists it; its name in any case."""
    only_params(req, "GET /api/nodegroups/{name}")
    return _group(control().get_group(req.route_params.get("name", "")))


@route(bp, "nodegroups/{name}", ["PATCH"])
@api
def set_node_group(req: func.HttpRequest, principal: Principal) -> Any:
    check_admin(principal, "change a node group's settings")
    settings = _settings(read_json(req, "the node group settings to change as JSON"))
    if "name" in settings:
        raise InvalidRequest("a node group's name cannot change: create a group of that name")
    if not settings:  # a script that thinks it changed something (PATCH /api/jobs/{id} too)
        raise InvalidRequest("the body names no setting to change: give one or more of them")
    group = control().set_group(req.route_params.get("name", ""), **settings)
    warnings = set_group_warnings(control().deps, group)
    return {**_group(group), "warnings": warnings} if warnings else _group(group)


@route(bp, "nodegroups/{name}", ["DELETE"])
@api
def delete_node_group(req: func.HttpRequest, principal: Principal) -> Any:
    """204 when deleted; 409 while nodes are in it or Queued/Running jobs name it (the body
    says which: ``nodes``, ``jobs``), and for a default group; 404 for an unknown name."""
    check_admin(principal, "delete node groups")
    no_body(req)
    control().delete_group(req.route_params.get("name", ""))
    return func.HttpResponse(status_code=204)


@route(bp, "autoscale/log", ["GET"])
@api
def autoscale_log(req: func.HttpRequest, principal: Principal) -> Any:
    only_params(req, "GET /api/autoscale/log", "group", "limit")
    limit = _int(req.params.get("limit"), "limit", 200, 1)
    return {"entries": control().autoscale_log(group=req.params.get("group"), limit=limit)}
