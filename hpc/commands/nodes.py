"""``hpc node``: list the cluster's compute nodes."""

from __future__ import annotations

import typer

from hpc import render
from hpc.common import JsonOption, api_client, print_json, stderr_console, stdout_console

app = typer.Typer(help="List the cluster's compute nodes.", no_args_is_help=True)


@app.command("list")
def node_list(as_json: JsonOption = False) -> None:
    """List compute nodes with their state and free cores."""
    with api_client() as client:
        data = client.list_nodes()
    if as_json:
        print_json(data)
        return
    nodes = data.get("nodes", [])
    if not nodes:
        stderr_console().print("no nodes: start some with `hpc up` or `hpc agent run`")
        return
    stdout_console().print(render.nodes_table(nodes))
