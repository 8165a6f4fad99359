"""``hpc node``: list, add, start (bring online), stop, drain, take offline and remove
compute nodes."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

import typer
from rich.text import Text

from hpc import render
from hpc.client_http import ApiError
from hpc.common import (
    IdempotencyKeyOption,
    JsonOption,
    NoHeader,
    api_client,
    checked_by,
    group_names,
    print_json,
    stderr_console,
    stdout_console,
)
from hpc.errors import CliError
from hpc.render_nodes import find_node, node_detail, nodes_table
from hpc.text import one_line
from shared.domain.groupnames import unknown_groups
from shared.domain.states import NodeState

app = typer.Typer(
    help="List and administer compute nodes (on-prem and Azure).", no_args_is_help=True
)

Names = Annotated[list[str] | None, typer.Argument(metavar="NAME...", show_default=False)]
Group = Annotated[
    list[str] | None,
    typer.Option(
        "--group",
        help="Every node of this group (repeat, or comma-separate: A,B, for several groups).",
    ),
]


@app.command("list")
def node_list(
    group: Group = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only nodes in this state: Online, Offline, Starting, Draining, Stopping, "
            "Drained (Draining with no task) (repeat, or comma-separate, for several; any case).",
        ),
    ] = None,
    as_json: JsonOption = False,
    noheader: NoHeader = False,
) -> None:
    """List compute nodes with their state and free cores."""
    states = group_names(state, "--state") or []
    known = {s.value.lower(): s.value for s in NodeState} | {"drained": "Drained"}
    unknown = [s for s in states if s.lower() not in known]
    if unknown:
        raise typer.BadParameter(
            f"{', '.join(map(repr, unknown))}: a state is one of {', '.join(known.values())}",
            param_hint="'--state'",
        )
    groups = group_names(group, "--group") or []
    with api_client() as client:
        data = client.list_nodes(groups=groups, states=states)  # filtered by the API
        if groups:  # a group that does not exist is said, as hpc node drain --group does
            groups_known = [g["name"] for g in client.list_node_groups().get("groups", [])]
            missing = unknown_groups(groups, groups_known)
            if missing:
                raise CliError(
                    f"node group {', '.join(map(repr, missing))} does not exist "
                    f"(hpc nodegroup list): {', '.join(groups_known)}"
                )
    if as_json:
        print_json(data)
        return
    nodes = data.get("nodes", [])
    if not nodes:
        stderr_console().print(
            "no such nodes"
            if groups or states
            else "no nodes: start some with `hpc up` or `hpc agent run`"
        )
        return
    stdout_console().print(nodes_table([_marked(n) for n in nodes], header=not noheader))


@app.command("view")
def node_view(
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Show one node: state and why, held or not, provider, cores, its agent."""
    with api_client() as client:
        node = _one_node(client, name)
    if as_json:
        print_json(node)
        return
    stdout_console().print(node_detail(node))


# `hpc node show`: the same command (Slurm says show, HPC Pack view: either works)
app.command("show", hidden=True)(node_view)


def _one_node(client: Any, name: str) -> Any:
    """The node ``name`` from its own route; a name in another case than the node's, or one
    no route can carry, from the list, which also names the nodes when there is none."""
    if name.strip() and "/" not in name and name not in (".", ".."):
        try:
            return client.get_node(name)
        except ApiError as exc:
            if exc.status != 404:
                raise
    nodes = client.list_nodes().get("nodes", [])
    node = find_node(nodes, name)
    if node is None:
        names = ", ".join(sorted(str(n.get("name")) for n in nodes)[:10]) or "none"
        raise CliError(f"no node {one_line(name)}; nodes: {names} (hpc node list)")
    return node


def _marked(node: dict[str, Any]) -> dict[str, Any]:
    """A Spot node says so beside its provider (the cloud may evict it)."""
    if node.get("spot"):
        return {**node, "provider": f"{node.get('provider') or '-'} (spot)"}
    return node


@app.command("add")
def node_add(
    group: Annotated[str, typer.Option("--group", help="The managed node group.")],
    count: Annotated[int, typer.Option(min=1, max=1000, help="How many nodes.")] = 1,
    size: Annotated[str | None, typer.Option(help="VM size, e.g. Standard_D4s_v5.")] = None,
    cores: Annotated[int | None, typer.Option(min=1, help="Cores of each node.")] = None,
    spot: Annotated[
        bool, typer.Option("--spot", help="Spot VMs: cheaper; if evicted, tasks requeue.")
    ] = False,
    idempotency_key: IdempotencyKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add nodes to a managed group: their VMs are created and left deallocated (Offline)."""
    with api_client() as client:
        data = client.add_nodes(
            group, count, cores=cores, size=size, spot=spot, idempotency_key=idempotency_key
        )
    if as_json:
        print_json(data)
        return
    kind = "Spot VM " if spot else ""
    for node in data.get("nodes", []):
        stdout_console().print(Text(f"{one_line(node.get('name'))}: {kind}added, Offline"))
    for warning in data.get("warnings", []):  # e.g. a VM size whose name states other cores
        stderr_console().print(Text(f"warning: {one_line(warning)}"), soft_wrap=True)


@app.command("set")
def node_set(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", show_default=False)],
    groups: Annotated[
        list[str],
        typer.Option(
            "--group", help="Its node groups (repeat, or comma-separate: A,B); replaces them."
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Put nodes in node groups (admin). The control plane owns a node's groups: an
    agent's --group counts only on its node's first registration."""
    groups = group_names(groups, "--group") or []
    results = []
    with api_client() as client:
        for name in names:
            results.append(client.set_node(name, groups=groups))
    if as_json:
        print_json({"nodes": results})
        return
    for node in results:
        line = f"{one_line(node.get('name'))}: groups {one_line(', '.join(node.get('groups', [])))}"
        stdout_console().print(Text(line))


def _act(
    action: str,
    names: list[str] | None,
    groups: list[str] | None,
    *,
    said: str = "",
    reason: str | None = None,
) -> None:
    """Ask the API for ``action`` on each node; ``said``: the command's own word for it
    (``online`` sends ``start``).

    Every node is asked in turn, a refusal (409, or 404 for a node that does not exist: a
    typo among the names, or a node removed since ``--group`` listed it) does not stop the
    rest, and each is printed; any other error (401, 403, no connection) would be the same
    for every node, so it stops the command at once. Named nodes: each was meant, so any
    refusal fails the command. ``--group`` (repeatable, or comma-separated: the nodes of
    every group, each once): a refusal fails it unless the node is already as the action
    would leave it (:data:`_ALREADY`: ``online`` past a node Online already)."""
    said = said or action
    groups = group_names(groups, "--group")
    if bool(names) == bool(groups):
        raise CliError(
            f"name the nodes to {_verb(said)}, or give --group G (not both)", exit_code=2
        )
    with api_client() as client:
        targets = names or []
        if groups:
            targets = _group_nodes(client, groups)
        refused: list[str] = []
        for name in targets:
            try:
                result: Any = _node_action(client, name, action, reason, named=not groups)
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
                # one node's state does not stop the rest (a group's Offline node has
                # nothing to drain): each is said, and the others still get the action
                refusal = Text(f"{one_line(name)}: not {_done(said)}: {one_line(exc.message)}")
                stderr_console().print(refusal, soft_wrap=True)  # one line each
                if not groups or not _already(action, exc.body.get("state")):
                    refused.append(name)
                continue
            for node in result.get("nodes", []) or result.get("removed", []):
                if isinstance(node, str):
                    stdout_console().print(Text(f"{one_line(node)}: removed"))
                else:
                    line = Text(f"{one_line(node.get('name'))}: ")
                    line.append_text(render.state(node.get("state")))
                    if result.get("changed") is False:  # as the action leaves it already
                        line.append(" (already: nothing to do)")
                    elif node.get("startRequested") and node.get("state") == "Stopping":
                        line.append(" (starts once its VM is deallocated)")
                    elif node.get("provider") == "onprem" and node.get("state") == "Starting":
                        line.append(f" ({one_line(node.get('stateReason'))})")  # its agent's turn
                    stdout_console().print(line)
            for warning in result.get("warnings", []):
                # e.g. the autoscaler will start a stopped node again for its group's minNodes
                stderr_console().print(Text(f"warning: {one_line(warning)}"), soft_wrap=True)
        if refused:
            raise CliError(f"{len(refused)} of {len(targets)} node(s) not {_done(said)}")


def _node_action(client: Any, name: str, action: str, reason: str | None, *, named: bool) -> Any:
    """The action on ``name``; a named node not found by its exact name is asked again by the
    name of the node its case matches, as ``hpc node view`` finds it (a probe's ``hpc node
    drain ONPREM-2`` was refused while ``hpc node view ONPREM-1`` showed onprem-1)."""
    try:
        return client.node_action(name, action, reason)
    except ApiError as exc:
        if exc.status != 404 or not named:
            raise
        node = find_node(client.list_nodes().get("nodes", []), name)
        if node is None or node.get("name") == name:
            raise
        return client.node_action(str(node["name"]), action, reason)


def _group_nodes(client: Any, groups: list[str]) -> list[str]:
    """The nodes of every group given (names in any case), each once, in the API's order;
    CliError, before any node is acted on, if a group does not exist or none has nodes."""
    wanted = {g.lower() for g in groups}
    nodes = client.list_nodes().get("nodes", [])
    targets = [n["name"] for n in nodes if wanted & {g.lower() for g in n["groups"]}]
    have = {g.lower() for n in nodes for g in n["groups"]}
    empty = list(dict.fromkeys(g for g in groups if g.lower() not in have))
    if empty:
        known = [g["name"] for g in client.list_node_groups().get("groups", [])]
        unknown = unknown_groups(empty, known)
        if unknown:
            which = ", ".join(repr(g) for g in unknown)
            verb = "does not exist" if len(unknown) == 1 else "do not exist"
            raise CliError(
                f"node group{_s(unknown)} {which} {verb} (hpc nodegroup list): {', '.join(known)}"
            )
    if not targets:
        verb = "has" if len(empty) == 1 else "have"
        raise CliError(f"node group{_s(empty)} {', '.join(empty)} {verb} no nodes")
    return targets  # (each node once: one pass over the list)


def _s(items: list[str]) -> str:
    return "" if len(items) == 1 else "s"


_ALREADY = {
    "start": ("Online", "Starting"),
    "stop": ("Offline", "Stopping"),
    "drain": ("Draining", "Offline"),
    "offline": ("Offline",),
    "release": ("Online", "Starting", "Stopping"),  # up or on its way: nothing to release
}
"""The states in which a node already is as each action would leave it: the API answers
those with a 200 (``"changed": false``); one refused in them anyway (a 409 from an older
control plane, or a drain of an Offline node) does not fail a ``--group`` action."""


def _already(action: str, state: object) -> bool:
    """Whether the API refused ``action`` on a node already in a state the action leads to:
    its 409 says the node's state (``"state"``)."""
    return isinstance(state, str) and state in _ALREADY.get(action, ())


def _verb(action: str) -> str:
    return {"offline": "take offline", "online": "bring online"}.get(action, action)


def _done(action: str) -> str:
    return {"start": "started", "stop": "stopped", "drain": "drained",
            "offline": "taken offline", "online": "brought online",
            "remove": "removed", "release": "released"}.get(action, action)  # fmt: skip


MAX_REASON = 200
"""The control plane's bound (functions/nodes_api.py), checked here to say it in the CLI's
words: a probe's ``--reason ''`` read the API's ``the body is {"reason": TEXT}``."""


def parse_reason(text: str) -> str:
    """``--reason``: 1 to 200 characters of plain text."""
    given = len(text.strip())
    if not 1 <= given <= MAX_REASON:
        raise ValueError(
            f"give 1 to {MAX_REASON} characters, e.g. 'disk swap, ticket 123' "
            f"(got {given} after trimming spaces)"
        )
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cf")), None)
    if bad is not None:
        raise ValueError(f"it holds the control character U+{ord(bad):04X}: give plain text")
    return text


Reason = Annotated[
    str | None,
    typer.Option(
        help="Why, for the node's reason (Slurm's reason=): 'disk swap, ticket 123'. "
        "The reason says who in any case; none given keeps the why of the node's hold.",
        callback=checked_by(parse_reason),
    ),
]


@app.command("start")
def node_start(names: Names = None, group: Group = None) -> None:
    """Start nodes: a managed node's VM starts; an on-prem node comes back Online.

    A managed node must be Offline: its VM starts, its agent registers, it goes Online. An
    on-prem node Draining, or Offline by an admin, while its agent runs comes back Online
    without restarting the agent (the same as `hpc node online`)."""
    _act("start", names, group)


@app.command("online")
def node_online(names: Names = None, group: Group = None) -> None:
    """Bring nodes Online: HPC Pack's name for `hpc node start`.

    An on-prem node Draining, or Offline by an admin, while its agent runs takes work again
    without restarting the agent; a managed node's VM starts."""
    _act("start", names, group, said="online")


@app.command("release")
def node_release(names: Names = None, group: Group = None) -> None:
    """Lift an admin's hold on Offline VMs without starting them: the autoscaler starts them
    when work needs them (Slurm's resume of a powered-down node; `hpc node online` boots them).
    """
    _act("release", names, group)


@app.command("stop")
def node_stop(names: Names = None, group: Group = None, reason: Reason = None) -> None:
    """Stop nodes: running tasks finish first (Draining), then the VM is deallocated.

    A managed node its group's minNodes needs is started again by the autoscaler (a
    warning says so): hpc node offline holds it stopped, or lower the group's --min."""
    _act("stop", names, group, reason=reason)


@app.command("drain")
def node_drain(names: Names = None, group: Group = None, reason: Reason = None) -> None:
    """Give nodes no new tasks; what runs finishes."""
    _act("drain", names, group, reason=reason)


@app.command("offline")
def node_offline(names: Names = None, group: Group = None, reason: Reason = None) -> None:
    """Take nodes offline now: what runs there is requeued elsewhere."""
    _act("offline", names, group, reason=reason)


@app.command("remove")
def node_remove(names: Names = None, group: Group = None) -> None:
    """Remove Offline nodes (and delete their VMs)."""
    _act("remove", names, group)
