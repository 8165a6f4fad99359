"""``hpc sim``: replay a workload trace through the real scheduler on a virtual clock."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hpc.common import JsonOption, stdout_console
from hpc.errors import CliError
from shared.domain.scheduler import POLICIES
from shared.sim import replay as simulator
from shared.sim import swf

app = typer.Typer(help="Simulate the scheduler on workload traces.", no_args_is_help=True)


@app.command("replay")
def sim_replay(
    trace: Annotated[
        Path, typer.Argument(help="An SWF trace (Standard Workload Format), .gz too.")
    ],
    nodes: Annotated[int, typer.Option(min=1, help="Nodes of the simulated cluster.")] = 100,
    cores_per_node: Annotated[int, typer.Option(min=1, help="Cores of each node.")] = 1,
    policy: Annotated[str, typer.Option(help="fcfs or easy (EASY backfilling).")] = "easy",
    as_json: JsonOption = False,
) -> None:
    """Replay TRACE: each job asks for its logged processors and requested time and runs its
    logged run time. Prints mean wait, mean bounded slowdown (tau 10 s), utilization, makespan."""
    if policy not in POLICIES:
        raise CliError(f"--policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if not trace.is_file():
        raise CliError(f"no trace file at {trace}")
    try:
        jobs = swf.read(trace)
    except (swf.SwfError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise CliError(f"{trace}: not a readable SWF trace: {exc}") from None
    outcome, _ = simulator.replay(
        jobs,
        nodes=nodes,
        cores_per_node=cores_per_node,
        policy=policy,  # type: ignore[arg-type]
    )
    if as_json:
        print(json.dumps(dataclasses.asdict(outcome)))
        return
    table = Table(title=f"{trace.name}: {policy} on {nodes} x {cores_per_node} cores")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("jobs", f"{outcome.jobs:,}")
    table.add_row("mean wait", f"{outcome.mean_wait_s:,.0f} s")
    table.add_row("mean bounded slowdown (tau 10 s)", f"{outcome.mean_bounded_slowdown:,.1f}")
    table.add_row("utilization", f"{outcome.utilization:.1%}")
    table.add_row("makespan", f"{outcome.makespan_s / 86400:,.1f} days")
    table.add_row("replay took", f"{outcome.elapsed_s:.1f} s")
    stdout_console().print(table)
