"""``hpc up``: run a local cluster (the work is done by :mod:`hpc.up`)."""

from __future__ import annotations

from typing import Annotated

import typer


def up(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the local API.")] = 7071,
    nodes: Annotated[int, typer.Option(min=0, help="How many local agents (on-prem nodes).")] = 2,
    cores: Annotated[int, typer.Option(min=1, help="Cores each local agent offers.")] = 2,
    azure_nodes: Annotated[
        int,
        typer.Option(
            min=0,
            help="Nodes of group AzureNodes on the local provider, Offline until started.",
        ),
    ] = 2,
) -> None:
    """Run a local cluster in the foreground: the control plane and NODES agents (Ctrl-C stops)."""
    from hpc.up import run_up

    raise typer.Exit(run_up(port=port, nodes=nodes, cores=cores, azure_nodes=azure_nodes))
