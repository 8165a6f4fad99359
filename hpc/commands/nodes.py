"""``hpc node``: list, add, start (bring online), stop, drain, take offline and remove
compute nodes."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import typer
from rich.text import Text

from hpc.client_http import ApiError
from hpc.common import (
    IdempotencyKeyOption,
    JsonOption,
    NoHeader,
    api_client,
    group_names,
    print_json,
    stderr_console,
    stdout_console,
)
from hpc.errors import CliError
from hpc.node_actions import Reason, act, by_any_case
from hpc.render_nodes import drained_vms_billing, find_node, node_detail, nodes_table
from hpc.statefilter import NODE_STATES, normalise_states
from hpc.text import one_line
from shared.domain.groupnames import unknown_groups

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
            "Unreachable, Drained (Draining with no task) (repeat, or comma-separate, for "
            "several; any case).",
        ),
    ] = None,
    as_json: JsonOption = False,
    noheader: NoHeader = False,
) -> None:
    """List compute nodes with their state and free cores."""
    named = group_names(state, "--state") or []
    states = (normalise_states(",".join(named), NODE_STATES) or "").split(",") if named else []
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
    billing = drained_vms_billing(nodes)
    if billing:  # on stderr: the table stays as scripts read it
        stderr_console().print(Text(one_line(billing)), soft_wrap=True)


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
            set_groups = functools.partial(client.set_node, groups=groups)
            results.append(by_any_case(client, name, set_groups))
    if as_json:
        print_json({"nodes": results})
        return
    for node in results:
        line = f"{one_line(node.get('name'))}: groups {one_line(', '.join(node.get('groups', [])))}"
        stdout_console().print(Text(line))


@app.command("start")
def node_start(names: Names = None, group: Group = None) -> None:
    """Start nodes: a managed node's VM starts; an on-prem node comes back Online.

    A managed node must be Offline: its VM starts, its agent registers, it goes Online. An
    on-prem node Draining, or Offline by an admin, while its agent runs comes back Online
    without restarting the agent (the same as `hpc node online`)."""
    act("start", names, group)


@app.command("online")
def node_online(names: Names = None, group: Group = None) -> None:
    """Bring nodes Online: HPC Pack's name for `hpc node start`.

    An on-prem node Draining, or Offline by an admin, while its agent runs takes work again
    without restarting the agent; a managed node's VM starts."""
    act("start", names, group, said="online")


@app.command("release")
def node_release(names: Names = None, group: Group = None) -> None:
    """Lift an admin's hold on Offline VMs without starting them: the autoscaler starts them
    when work needs them (Slurm's resume of a powered-down node; `hpc node online` boots them).
    """
    act("release", names, group)


@app.command("stop")
def node_stop(names: Names = None, group: Group = None, reason: Reason = None) -> None:
    """Stop nodes: running tasks finish first (Draining), then the VM is deallocated.

    A managed node its group's minNodes needs is started again by the autoscaler (a
    warning says so): hpc node offline holds it stopped, or lower the group's --min."""
    act("stop", names, group, reason=reason)


@app.command("drain")
def node_drain(names: Names = None, group: Group = None, reason: Reason = None) -> None:
    """Give nodes no new tasks; what runs finishes."""
    act("drain", names, group, reason=reason)


@app.command("offline")
def node_offline(names: Names = None, group: Group = None, reason: Reason = None) -> None:
    """Take nodes offline now: what runs there is requeued elsewhere."""
    act("offline", names, group, reason=reason)


@app.command("remove")
def node_remove(names: Names = None, group: Group = None) -> None:
    """Remove Offline nodes (and delete their VMs)."""
    act("remove", names, group)
