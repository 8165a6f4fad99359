"""``hpc nodegroup``: list, create, tune and delete node groups (and their autoscaling)."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from hpc.common import JsonOption, api_client, print_json, stderr_console, stdout_console
from hpc.errors import CliError
from hpc.render import cells, dash, memory
from hpc.spec import parse_memory
from hpc.text import one_line
from shared.domain.groupsettings import ONPREM
from shared.domain.idlepolicy import GROUP_FORMS, group_idle_policy

app = typer.Typer(help="List, create, tune and delete node groups.", no_args_is_help=True)


@app.command("list")
def group_list(as_json: JsonOption = False) -> None:
    """List node groups with their bounds and provider."""
    with api_client() as client:
        data = client.list_node_groups()
    if as_json:
        print_json(data)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ("Name", "Provider", "Min", "Max", "Node cores", "Node memory", "Autoscale")
    for column in (*columns, "Idle policy", "Description"):
        table.add_column(column)
    for g in data.get("groups", []):
        managed = g.get("provider")
        table.add_row(
            *cells(
                dash(g.get("name")),
                dash(managed) if managed else "on-prem",
                dash(g.get("minNodes")) if managed else "-",  # on-prem: no bounds
                dash(g.get("maxNodes")) if managed else "-",
                dash(g.get("nodeCores")) if managed else "-",
                memory(g.get("nodeMemoryMb"), "unknown") if managed else "-",
                ("yes" if g.get("autoscale") else "no") if managed else "-",
                dash(g.get("idlePolicy")) if managed else "-",
                dash(g.get("description")),
            )
        )
    stdout_console().print(table)


def _settings(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


DEFAULT_WORDS = ("default", "none")
"""What ``--scale-down-delay`` and ``--size`` take for the API's JSON null: back to the
default (the cluster's setting), which the API documents and the CLI could not send."""

_DEFAULT = object()
"""A setting given as ``default``: sent as null (:func:`_settings` drops only None)."""


def _or_default(flag: str, value: str, parse: Any = str) -> Any:
    """``value`` parsed, or :data:`_DEFAULT` for ``default`` / ``none`` (any case): the
    setting's JSON null. A CliError (exit 2) names the flag if it does not parse."""
    if value.strip().lower() in DEFAULT_WORDS:
        return _DEFAULT
    try:
        return parse(value)
    except ValueError:
        raise CliError(
            f"{flag}: {value!r} is not a number of seconds (0 or more), nor default",
            exit_code=2,
        ) from None


def _node_memory(text: str | None) -> Any:
    """``--node-memory``: MB, :data:`_DEFAULT` for ``default``, None if not given; a
    CliError (exit 2) saying what it takes."""
    if text is None or text.strip().lower() in DEFAULT_WORDS:
        return None if text is None else _DEFAULT
    try:
        return parse_memory(text)
    except ValueError as exc:
        raise CliError(f"--node-memory: {exc}; or default", exit_code=2) from None


NodeMemory = Annotated[
    str | None,
    typer.Option(
        metavar="SIZE|default",
        help="Memory of its nodes (their VM size's), e.g. 16G: tasks asking for more run "
        "elsewhere; default (or none): unknown, the nodes' own word once they register.",
    ),
]


def _seconds(text: str) -> float:
    """A number of seconds, at least 0 and finite (the API checks its upper bound)."""
    seconds = float(text)
    if not 0 <= seconds < float("inf"):  # also NaN
        raise ValueError(text)
    return seconds


def _given_seconds(flag: str, text: str | None) -> float | None:
    """A seconds option (None: not given); a CliError (exit 2) naming the flag and what it
    got (``nan`` was refused as "Input should be greater than or equal to 0")."""
    if text is None:
        return None
    try:
        if not math.isfinite(value := float(text)):  # as the client says of any option
            raise CliError(f"{flag} must be a finite number, not {value}", exit_code=2)
        return _seconds(text)
    except ValueError:
        raise CliError(
            f"{flag}: {text!r} is not a number of seconds (0 or more)", exit_code=2
        ) from None


@app.command("create")
def group_create(
    name: Annotated[str, typer.Argument(help="The new group's name.")],
    provider: Annotated[
        str | None,
        typer.Option(
            help="Make it managed by this provider (local, azure), or onprem (the default)."
        ),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the group is.")] = None,
    min_nodes: Annotated[
        int | None, typer.Option("--min", min=0, help="Fewest nodes (managed groups).")
    ] = None,
    max_nodes: Annotated[
        int | None,
        typer.Option("--max", min=0, help="Most nodes (managed groups; default 0: none)."),
    ] = None,
    node_memory: NodeMemory = None,
) -> None:
    """Create a node group (refused if one exists whose name differs only by case). A
    managed group's --max bounds its nodes: 0, the default, lets it have none."""
    if provider is not None and provider.lower() == ONPREM:
        provider = None  # as set's: no provider, on-prem nodes (also the default)
    memory_mb = _node_memory(node_memory)
    settings = _settings(
        provider=provider, description=description, minNodes=min_nodes, maxNodes=max_nodes,
        nodeMemoryMb=None if memory_mb is _DEFAULT else memory_mb,  # unset: unknown already
    )  # fmt: skip
    with api_client() as client:
        group = client.create_node_group(name, **settings)
    bounds = (
        f" (min {dash(group.get('minNodes'))}, max {dash(group.get('maxNodes'))} nodes)"
        if group.get("provider")
        else ""
    )
    stdout_console().print(f"node group {dash(group.get('name'))} created{bounds}")


@app.command("set")
def group_set(
    name: Annotated[str, typer.Argument(help="The group.")],
    min_nodes: Annotated[int | None, typer.Option("--min", min=0, help="Fewest nodes.")] = None,
    max_nodes: Annotated[int | None, typer.Option("--max", min=0, help="Most nodes.")] = None,
    provider: Annotated[
        str | None,
        typer.Option(help="Provider of its nodes (local, azure), or onprem for none."),
    ] = None,
    node_cores: Annotated[int | None, typer.Option(min=1, help="Cores of new nodes.")] = None,
    node_memory: NodeMemory = None,
    size: Annotated[
        str | None,
        typer.Option(
            help="VM size of new nodes; default (or none): back to the cluster's, "
            "HPC_AZURE_VM_SIZE."
        ),
    ] = None,
    autoscale: Annotated[
        bool | None, typer.Option("--autoscale/--no-autoscale", help="Autoscale it.")
    ] = None,
    grow_interval: Annotated[
        str | None, typer.Option(metavar="SECONDS", help="GrowInterval, seconds.")
    ] = None,
    shrink_interval: Annotated[
        str | None, typer.Option(metavar="SECONDS", help="ShrinkInterval, seconds.")
    ] = None,
    shrink_idle_times: Annotated[
        int | None, typer.Option(min=1, help="ShrinkIdleTimes: idle intervals before a stop.")
    ] = None,
    grow_threshold: Annotated[
        int | None, typer.Option(min=1, help="GrowThreshold: queued tasks before it grows.")
    ] = None,
    tasks_per_resource_unit: Annotated[
        int | None, typer.Option(min=1, help="TasksPerResourceUnit.")
    ] = None,
    extra_nodes_grow_ratio: Annotated[
        int | None, typer.Option(min=0, help="ExtraNodesGrowRatio, percent.")
    ] = None,
    grow_by_min: Annotated[
        bool | None, typer.Option("--grow-by-min/--no-grow-by-min", help="GrowByMin.")
    ] = None,
    idle_policy: Annotated[
        str | None,
        typer.Option(
            help=f"How long idle nodes stay up: {GROUP_FORMS} (as hpc sim replay's; "
            "fixed: ShrinkIdleTimes x ShrinkInterval)."
        ),
    ] = None,
    boot_delay: Annotated[
        str | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds a node takes Starting -> Online (the warm pool's horizon).",
        ),
    ] = None,
    scale_down_delay: Annotated[
        str | None,
        typer.Option(
            metavar="SECONDS|default",
            help="No stop this many seconds after the group grew; default (or none): back "
            "to the default, HPC_SCALE_DOWN_DELAY_S under fixed, 0 under an idle policy.",
        ),
    ] = None,
) -> None:
    """Change a node group's bounds, provider and AutoGrowShrink parameters (the name
    matches whatever its case)."""
    delay = (
        _or_default("--scale-down-delay", scale_down_delay, _seconds)
        if scale_down_delay is not None
        else None
    )
    vm_size = _or_default("--size", size) if size is not None else None
    grow_s = _given_seconds("--grow-interval", grow_interval)
    shrink_s = _given_seconds("--shrink-interval", shrink_interval)
    boot_s = _given_seconds("--boot-delay", boot_delay)
    settings = _settings(
        minNodes=min_nodes, maxNodes=max_nodes, provider=provider, nodeCores=node_cores,
        nodeMemoryMb=_node_memory(node_memory), size=vm_size, autoscale=autoscale,
        growIntervalS=grow_s, shrinkIntervalS=shrink_s,
        shrinkIdleTimes=shrink_idle_times, growThreshold=grow_threshold,
        tasksPerResourceUnit=tasks_per_resource_unit, extraNodesGrowRatio=extra_nodes_grow_ratio,
        growByMin=grow_by_min, idlePolicy=idle_policy, bootDelayS=boot_s,
        scaleDownDelayS=delay,
    )  # fmt: skip
    if idle_policy is not None:  # the control plane's own check, before any request
        try:
            group_idle_policy(idle_policy)
        except ValueError as exc:
            raise CliError(f"--idle-policy: {exc}", exit_code=2) from None
    if boot_s is not None and boot_s <= 0:
        raise CliError("--boot-delay must be more than 0 seconds", exit_code=2)
    if provider is not None and provider.lower() == ONPREM:
        settings["provider"] = None  # JSON null: its nodes are on-prem machines
    settings = {k: None if v is _DEFAULT else v for k, v in settings.items()}
    if not settings:
        raise CliError("give at least one setting to change (see --help)", exit_code=2)
    with api_client() as client:
        group = client.set_node_group(name, **settings)
    for warning in group.get("warnings", []):  # e.g. more nodes than the new maxNodes
        stderr_console().print(Text(f"warning: {one_line(warning)}"), soft_wrap=True)
    if not group.get("provider"):  # its bounds and policy do not apply (groupsettings)
        stdout_console().print(f"node group {dash(group.get('name'))}: on-prem")
        return
    stdout_console().print(
        f"node group {dash(group.get('name'))}: min {dash(group.get('minNodes'))}, "
        f"max {dash(group.get('maxNodes'))}, provider {dash(group.get('provider'))}, "
        f"idle policy {dash(group.get('idlePolicy'))} (boot delay {dash(group.get('bootDelayS'))} s), "
        f"node memory {memory(group.get('nodeMemoryMb'), 'unknown')}"
    )
    changed = [k for k in settings if k not in _SHOWN]  # the rest it set, as now stored
    if changed:
        said = ", ".join(f"{k} {_shown(k, group.get(k))}" for k in sorted(changed))
        stdout_console().print(f"  set: {said}")


def _shown(key: str, value: object) -> str:
    """A setting's stored value as ``hpc nodegroup set`` echoes it: 120 s, on, none."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None:
        return "default" if key == "scaleDownDelayS" else "none"
    return f"{value} s" if key.endswith("S") else dash(value)


_SHOWN = frozenset({"minNodes", "maxNodes", "provider", "idlePolicy", "bootDelayS", "nodeMemoryMb"})
"""The settings the first line of ``hpc nodegroup set`` always shows."""


@app.command("delete")
def group_delete(name: Annotated[str, typer.Argument(help="The group.")]) -> None:
    """Delete a node group (admin; the name matches whatever its case). Refused while it has
    nodes (move them: hpc node set NAME --group G, or hpc node remove them) or Queued or
    Running jobs name it, and for the default groups OnPremNodes and AzureNodes."""
    with api_client() as client:
        stored = client.get_node_group(name).get("name") or name  # (a 404 names it)
        client.delete_node_group(name)
    stdout_console().print(f"node group {one_line(str(stored))} deleted")  # as it was stored


_VIEW = (
    ("name", "Name"),
    ("description", "Description"),
    ("provider", "Provider"),
    ("minNodes", "Min nodes"),
    ("maxNodes", "Max nodes"),
    ("nodeCores", "Node cores"),
    ("nodeMemoryMb", "Node memory"),
    ("size", "VM size"),
    ("autoscale", "Autoscale"),
    ("growIntervalS", "GrowInterval"),
    ("shrinkIntervalS", "ShrinkInterval"),
    ("shrinkIdleTimes", "ShrinkIdleTimes"),
    ("growThreshold", "GrowThreshold"),
    ("tasksPerResourceUnit", "TasksPerResourceUnit"),
    ("extraNodesGrowRatio", "ExtraNodesGrowRatio"),
    ("growByMin", "GrowByMin"),
    ("idlePolicy", "Idle policy"),
    ("bootDelayS", "Boot delay"),
    ("scaleDownDelayS", "Scale-down delay"),
)
"""``hpc nodegroup view``'s rows: each setting of the group's JSON, by HPC Pack's name
where it has one (AutoGrowShrink's), in the order ``hpc nodegroup set --help`` gives them."""


@app.command("view")
def group_view(
    name: Annotated[str, typer.Argument(help="The group (any case).", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Show one node group with every setting (its bounds and autoscale parameters), which
    hpc nodegroup list leaves out (a probe read them only with --json)."""
    with api_client() as client:
        group = client.get_node_group(name)
    if as_json:
        print_json(group)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    managed = bool(group.get("provider"))
    for key, label in _VIEW:
        if not managed and key not in ("name", "description", "provider"):
            continue  # an on-prem group's nodes join by their agents: no bounds, no policy
        value = group.get(key)
        if key == "provider":
            shown = dash(value) if managed else "on-prem"
        elif key == "nodeMemoryMb":
            shown = memory(value, "unknown")
        elif key == "scaleDownDelayS" and value is None:
            shown = "default: HPC_SCALE_DOWN_DELAY_S (0 under an idle policy but fixed)"
        else:
            shown = (
                _shown(key, value) if key in _SECONDS or isinstance(value, bool) else dash(value)
            )
        table.add_row(label, Text(one_line(str(shown))))
    stdout_console().print(table)


_SECONDS = frozenset(k for k, _ in _VIEW if k.endswith("S"))


app.command("show", hidden=True)(group_view)  # Slurm says show (scontrol show partition)
