"""``hpc agent``: run the node agent on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from hpc.common import group_names

app = typer.Typer(help="Run the node agent on this machine.", no_args_is_help=True)


@app.command("run")
def agent_run(
    name: Annotated[
        str | None,
        typer.Option(help="Node name.  [default: this host's name]", show_default=False),
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(
            help="Node group (repeatable, or comma-separated: A,B).  [default: OnPremNodes]",
            show_default=False,
        ),
    ] = None,
    cores: Annotated[
        int | None,
        typer.Option(
            min=1, help="Cores to offer.  [default: this host's CPU count]", show_default=False
        ),
    ] = None,
    memory_mb: Annotated[
        str | None,
        typer.Option(
            metavar="SIZE",
            help="Memory to report, in MB (16384) or a size (16G); tasks asking for more do "
            "not run here.  "
            "[default: HPC_AGENT_MEMORY_MB, else this host's memory]",
            show_default=False,
        ),
    ] = None,
    run_as_owner: Annotated[
        bool,
        typer.Option(
            "--run-as-owner",
            help="Run each task as the OS user named as its job's owner (the agent must be "
            "root).  [default: HPC_AGENT_RUN_AS_OWNER, else as the agent's user]",
            show_default=False,
        ),
    ] = False,
    enforce_memory: Annotated[
        bool,
        typer.Option(
            "--enforce-memory",
            help="Kill a task whose processes use more memory than it asked for (--min-memory); "
            "it fails saying so.  [default: HPC_AGENT_ENFORCE_MEMORY, else off]",
            show_default=False,
        ),
    ] = False,
) -> None:
    """Run the node agent in the foreground (Ctrl-C stops it)."""
    import agent  # the agent's own imports are not needed by any other command

    groups = group_names(group, "--group")
    raise typer.Exit(
        agent.run_agent(
            name,
            groups,
            cores,
            run_as_owner=run_as_owner or None,
            memory_mb=memory_mb,
            enforce_memory=enforce_memory or None,
        )
    )
