"""``hpc autoscale``: what the autoscaler did, and why."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hpc.common import JsonOption, api_client, print_json, stderr_console, stdout_console
from hpc.render import cells, dash, when

app = typer.Typer(help="The autoscaler's decisions.", no_args_is_help=True)


@app.command("log")
def autoscale_log(
    group: Annotated[str | None, typer.Option(help="Only this node group.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="The newest this many.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Decisions with their reasons: why a node started, stopped, drained, or why not."""
    with api_client() as client:
        data = client.autoscale_log(group=group, limit=limit)
    if as_json:
        print_json(data)
        return
    entries = data.get("entries", [])
    if not entries:
        stderr_console().print("the autoscaler has decided nothing yet")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("Time", "Action", "Node", "Group", "Reason"):
        table.add_column(column, no_wrap=column != "Reason")
    for e in entries:
        table.add_row(
            *cells(
                when(e.get("time")),
                dash(e.get("action")),
                dash(e.get("node")),
                dash(e.get("group")),
                dash(e.get("reason")),
            )
        )
    stdout_console().print(table)
