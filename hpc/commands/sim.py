"""``hpc sim``: replay a workload trace through the real scheduler on a virtual clock."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hpc.common import JsonOption, stderr_console, stdout_console
from hpc.errors import CliError
from shared.domain.scheduler import POLICIES
from shared.sim import elastic as elastic_sim
from shared.sim import replay as simulator
from shared.sim import swf

WEEK_S = 7 * 86_400.0
"""The longest boot delay, timer period or scale-down delay a replay takes."""

app = typer.Typer(help="Simulate the scheduler on workload traces.", no_args_is_help=True)


@app.command("replay")
def sim_replay(
    ctx: typer.Context,
    trace: Annotated[
        Path, typer.Argument(help="An SWF trace (Standard Workload Format), .gz too.")
    ],
    nodes: Annotated[int, typer.Option(min=1, help="Nodes of the simulated cluster.")] = 100,
    cores_per_node: Annotated[int, typer.Option(min=1, help="Cores of each node.")] = 1,
    policy: Annotated[str, typer.Option(help="fcfs or easy (EASY backfilling).")] = "easy",
    elastic: Annotated[
        bool, typer.Option("--elastic", help="Run on autoscaled nodes (--nodes is the maximum).")
    ] = False,
    boot_delay: Annotated[
        float,
        typer.Option(min=0, max=WEEK_S, help="--elastic: seconds from a start order to Online."),
    ] = 180.0,
    idle_policy: Annotated[
        str,
        typer.Option(
            help="--elastic: fixed:SECONDS, adaptive[:SECONDS], keep[:SECONDS], "
            "anticipate[:SECONDS], ski[:WAIT_WEIGHT], session[:WAIT_WEIGHT], "
            "value[:WAIT_WEIGHT] or forecast[:WAIT_WEIGHT] (see shared/domain/warmpool.py, "
            "skirental.py, sessions.py, waitvalue.py and forecastpool.py)."
        ),
    ] = "value",
    timer: Annotated[
        float,
        typer.Option(
            min=0,
            max=WEEK_S,
            help="--elastic: the autoscaler's timer period in seconds (HPC_AUTOSCALE_SCHEDULE; "
            "Azure's is 60); 0 runs it at every event.",
        ),
    ] = 0.0,
    scale_down_delay: Annotated[
        float,
        typer.Option(
            min=0,
            max=WEEK_S,
            help="--elastic: HPC_SCALE_DOWN_DELAY_S, no stop this soon after a group grew "
            "(the cluster's default is 600).",
        ),
    ] = 0.0,
    frontier: Annotated[
        bool,
        typer.Option(
            help="--elastic: also replay the fixed idle times 1, 2, 5, 10, 15, 30 min "
            "(six more replays)."
        ),
    ] = False,
    jumps: Annotated[
        bool,
        typer.Option(
            help="--elastic: a job that fits on free nodes may start ahead of jobs that wait "
            "for booting nodes, as the cluster's scheduler does (shared/domain/jumps.py); "
            "--no-jumps: plain EASY."
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Replay TRACE: each job asks for its logged processors and requested time and runs its
    logged run time. Prints mean wait, mean bounded slowdown (tau 10 s), utilization, makespan."""
    if policy not in POLICIES:
        raise CliError(f"--policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if not elastic:
        _refuse_elastic_options(ctx)
    if not trace.is_file():
        raise CliError(f"no trace file at {trace}")
    try:
        jobs = swf.read(trace)
    except (swf.SwfError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise CliError(f"{trace}: not a readable SWF trace: {exc}") from None
    if not jobs:
        raise CliError(f"{trace}: no job that ran (a run time and processors above 0)")
    wide = sum(1 for j in jobs if j.procs > nodes * cores_per_node)
    if wide == len(jobs):
        raise CliError(
            f"{trace}: every job asks for more than {nodes} x {cores_per_node} cores "
            "(raise --nodes or --cores-per-node)"
        )
    if wide:
        stderr_console().print(
            f"{wide} of {len(jobs)} jobs ask for more than {nodes} x {cores_per_node} cores "
            "and are left out"
        )
    if elastic:
        timing = {"timer_s": timer, "scale_down_delay_s": scale_down_delay, "jumps": jumps}
        _elastic(
            trace, jobs, nodes, cores_per_node, policy, boot_delay, idle_policy, frontier,
            as_json, timing,
        )  # fmt: skip
        return
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


ELASTIC_ONLY = {
    "boot_delay": "--boot-delay",
    "idle_policy": "--idle-policy",
    "timer": "--timer",
    "scale_down_delay": "--scale-down-delay",
    "frontier": "--frontier",
    "jumps": "--no-jumps",
}
"""The options only an elastic replay reads (by parameter name): without --elastic they
would be dropped silently, and a plain replay's figures taken for theirs."""


def _refuse_elastic_options(ctx: typer.Context) -> None:
    """CliError (exit 2, a usage error) naming the elastic-only options given."""
    given = [
        flag
        for name, flag in ELASTIC_ONLY.items()
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    ]
    if given:
        them = "it needs" if len(given) == 1 else "they need"
        raise CliError(
            f"{', '.join(given)}: {them} --elastic (a replay on autoscaled nodes); "
            "add --elastic, or leave them out for a fixed cluster",
            exit_code=2,
        )


def _elastic(
    trace: Path,
    jobs: list[swf.SwfJob],
    nodes: int,
    cores_per_node: int,
    policy: str,
    boot_delay: float,
    idle_policy: str,
    frontier: bool,
    as_json: bool,
    timing: dict[str, float],
) -> None:
    try:
        idle = elastic_sim.parse_idle_policy(idle_policy)
    except ValueError as exc:
        raise CliError(f"--idle-policy: {exc}") from None
    common = dict(nodes=nodes, cores_per_node=cores_per_node, boot_delay_s=boot_delay, **timing)
    outcome, _ = elastic_sim.elastic(jobs, idle=idle, policy=policy, **common)  # type: ignore[arg-type]
    fixed = (
        elastic_sim.frontier(jobs, policy=policy, **common)  # type: ignore[arg-type]
        if frontier
        else []
    )
    if as_json:
        doc = {
            "policy": dataclasses.asdict(outcome),
            "frontier": [dataclasses.asdict(o) for o in fixed],
        }
        print(json.dumps(doc))
        return
    table = Table(
        title=f"{trace.name}: {policy} on up to {nodes} x {cores_per_node} cores, "
        f"boot delay {boot_delay:g} s{_timing(timing)}; "
        f"oracle {outcome.oracle_node_hours:,.0f} node-hours"
    )
    for col in (
        "idle policy",
        "node-hours",
        "x oracle",
        "mean wait",
        "mean bounded slowdown",
        "node starts",
        "replay took",
    ):
        table.add_column(col, justify="left" if col == "idle policy" else "right")
    if fixed:
        table.add_column("policy better on both")
    for o in [outcome, *fixed]:
        better = ""
        if fixed and o is not outcome:
            both = outcome.ratio < o.ratio and outcome.mean_wait_s < o.mean_wait_s
            better = "yes" if both else "no"
        table.add_row(
            o.idle_policy,
            f"{o.node_hours:,.1f}",
            f"{o.ratio:.3f}",
            f"{o.mean_wait_s:,.0f} s",
            f"{o.mean_bounded_slowdown:,.2f}",
            f"{o.node_starts:,}",
            f"{o.elapsed_s:.1f} s",
            *([better] if fixed else []),
        )
    stdout_console().print(table)


def _timing(timing: dict[str, float]) -> str:
    timer, delay = timing["timer_s"], timing["scale_down_delay_s"]
    out = f", autoscaler every {timer:g} s" if timer else ""
    out += f", scale-down delay {delay:g} s" if delay else ""
    return out + ("" if timing.get("jumps", True) else ", no jumps")
