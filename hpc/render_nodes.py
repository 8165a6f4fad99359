"""Nodes as ``hpc node list`` shows them (a table) and one node as ``hpc node view`` does:
the node's every field an admin asks about (HPC Pack's node properties, Slurm's ``scontrol
show node``). (``--group``/``--state`` are the API's filter, shared.usecases.queries.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from hpc.render import ago, cells, dash, memory, node_state, parse_time, when
from hpc.text import strip_controls
from shared.domain.lifecycle.nodes import AGENT_STOPPED


def node_reason(node: Mapping[str, Any]) -> str | None:
    """The node's reason as shown: a held node whose agent then stopped keeps the why of its
    hold beside that (a probe's `hpc node drain azure-3 --reason 'look at it'`, then a clean
    restart of `hpc up`, read "agent stopped" alone; the why was only in the JSON's
    heldReason)."""
    reason, held_why = node.get("stateReason"), node.get("heldReason")
    if node.get("held") and held_why and reason == AGENT_STOPPED:
        return f"{held_why} ({AGENT_STOPPED})"
    return reason


def node_detail(node: Mapping[str, Any]) -> RenderableType:
    """One node: state and why, where it runs, its cores and memory, its agent."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    provider = node.get("provider") or "onprem"
    extras = [x for x in (node.get("spot") and "spot", node.get("runsAsOwner") and "as owner") if x]
    rows: list[tuple[str, Any]] = [
        ("Name", dash(node.get("name"))),
        ("Groups", dash(node.get("groups"))),
        ("State", node_state(dict(node))),
        ("Since", when(node.get("stateTime"))),
        ("Reason", Text(strip_controls(str(node_reason(node) or "-")))),
        ("Held", dash(node.get("held")) if node.get("held") else "no"),
        ("Provider", provider + (f" ({', '.join(extras)})" if extras else "")),
        *([("Size", dash(node.get("size")))] if node.get("size") else []),
        ("Cores", dash(node.get("cores"))),
        ("Memory", memory(node.get("memoryMb"), "unknown")),
        ("Free cores", dash(node.get("freeCores"))),
        ("Free memory", free_memory(node, "unknown")),
        ("Running tasks", dash(node.get("runningTasks"))),
        ("Incarnation", dash(node.get("incarnation"))),
        ("Agent protocol", dash(node.get("agentProtocol") if node.get("incarnation") else None)),
        ("Last heartbeat", heard(node)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def free_memory(node: Mapping[str, Any], unknown: str = "-") -> str:
    """Its memory no task holds (tasks asking for memory hold it: shared.domain.memoryfit);
    none free reads ``0 MB``, not as unknown."""
    value = node.get("freeMemoryMb")
    return "0 MB" if value == 0 and not isinstance(value, bool) else memory(value, unknown)


def _takes_work(node: Mapping[str, Any]) -> bool:
    """Online or Draining: its free cores and memory mean something. An Offline, Starting,
    Stopping or Unreachable node's read "0" and "0 MB" beside a memory of 23.5 GB (a probe):
    "-", as Slurm's sinfo says N/A of a node that is down."""
    return node.get("state") in ("Online", "Draining")


def heard(node: Mapping[str, Any]) -> Any:
    """Its last heartbeat, how long ago; none for a node Starting whose last one came before
    the start (its VM's previous run: an Azure probe read a booting VM as heard 2 h ago)."""
    beat, since = parse_time(node.get("lastHeartbeat")), parse_time(node.get("stateTime"))
    if node.get("state") == "Starting" and beat and since and beat < since:
        return dash(None)
    return ago(node.get("lastHeartbeat"))


def find_node(nodes: Iterable[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    """The node called ``name`` (node names are exact; a differently cased one is found too,
    as group names are)."""
    listed = list(nodes)
    exact = next((n for n in listed if n.get("name") == name), None)
    return exact or next(
        (n for n in listed if str(n.get("name", "")).lower() == name.lower()), None
    )


def _provider(node: dict[str, Any]) -> Any:
    """``onprem``, and ``as owner`` when its agent runs each task as its job's owner."""
    provider = node.get("provider")
    return f"{provider}, as owner" if provider and node.get("runsAsOwner") else provider


def nodes_table(nodes: list[dict[str, Any]], *, header: bool = True) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, show_header=header)
    columns = (
        "Name",
        "Groups",
        "State",
        "Cores",
        "Memory",
        "Free",
        "Free mem",
        "Tasks",
        "Provider",
        "Protocol",
        "Heartbeat",
        "Reason",
    )
    for column in columns:
        table.add_column(
            column,
            justify="right"
            if column in ("Cores", "Memory", "Free", "Free mem", "Tasks", "Protocol")
            else "left",
            no_wrap=column in ("Name", "Groups", "State"),  # the reason wraps instead
        )
    for node in nodes:
        table.add_row(
            *cells(
                dash(node.get("name")),
                dash(node.get("groups")),
                node_state(node),
                dash(node.get("cores")),
                memory(node.get("memoryMb")),
                dash(node.get("freeCores")) if _takes_work(node) else dash(None),
                free_memory(node) if _takes_work(node) else dash(None),
                dash(node.get("runningTasks")),
                dash(_provider(node)),
                # its agent's (shared.domain.protocol); none before its first registration
                dash(node.get("agentProtocol") if node.get("incarnation", 1) else None),
                heard(node),
                dash(node_reason(node)),
            )
        )
    return table


def drained_vms_billing(nodes: list[dict[str, Any]]) -> str | None:
    """A note on the VMs drained with no task left whose VM still runs, so bills: an admin's
    drain holds them up (the autoscaler stops none it holds), which a probe read as safe to
    leave. None if there are none."""
    names = [
        str(n.get("name"))
        for n in nodes
        if n.get("provider") not in (None, "", "onprem")
        and n.get("state") == "Draining"
        and not n.get("runningTasks")
    ]
    if not names:
        return None
    them = "its VM runs and bills" if len(names) == 1 else "their VMs run and bill"
    return (
        f"note: {', '.join(names)} drained with no task, but {them}: "
        f"`hpc node stop {' '.join(names)}` deallocates {'it' if len(names) == 1 else 'them'}"
    )
