"""The options of ``hpc job submit`` that Slurm's users know by other names too: each takes
sbatch's long (and short) name beside ours, with the same meaning (a probe's ``--mem 1G``,
``-J``, ``--output`` were "No such option"). Slurm names whose meaning differs here are not
taken but explained (:data:`SLURM_HINTS`): ``--time 10`` is 10 minutes in Slurm, and a bare
number is seconds here, so taking it would cut a job short without a word."""

from __future__ import annotations

from typing import Annotated

import typer

from hpc.common import checked_by
from hpc.spec import parse_cores, parse_memory, parse_output_path

JobName = Annotated[
    str | None, typer.Option("--name", "--job-name", "-J", help="Job name (Slurm's -J).")
]
Cores = Annotated[
    str | None,
    typer.Option(
        "--cores",
        "--cpus-per-task",
        "-c",
        metavar="N|MIN-MAX",
        help="Cores per task (on each of its nodes); MIN-MAX grows up to MAX when cores "
        "are free, the grant is in $HPC_TASK_CORES (Slurm's -c).  [default: 1]",
        callback=checked_by(parse_cores),
        show_default=False,
    ),
]
Nodes = Annotated[
    int | None,
    typer.Option(
        "--nodes",
        "-N",
        min=1,
        help="Nodes per task, all reserved at once; the command runs on the first, "
        "$HPC_NODES lists them (e.g. mpirun --host $HPC_NODES).  [default: 1]",
        show_default=False,
    ),
]
MinMemory = Annotated[
    str | None,
    typer.Option(
        "--min-memory",
        "--mem",
        metavar="SIZE",
        help="Memory it holds on each of its nodes, e.g. 4G, 512M (MB if no unit): runs "
        "only where that much is free, held until it ends (Slurm's --mem).",
        callback=checked_by(parse_memory),
    ),
]
WorkDir = Annotated[
    str | None,
    typer.Option(
        "--workdir",
        "--chdir",
        "-D",
        help="Working directory of the task (a node that lacks it fails the task); a "
        "relative one is taken from this shell's directory, as Slurm's --chdir; beside "
        "--file, that of the file's tasks that name none.  "
        "[default: this shell's directory]",
        show_default=False,
    ),
]
DependsOn = Annotated[
    list[str] | None,
    typer.Option(
        "--depends-on",
        "--dependency",
        "-d",
        metavar="JOB",
        help="Start only after this job Finished (repeatable, or comma-separated: 12,15; "
        "Slurm's afterok:12:15 too).",
    ),
]
Stdout = Annotated[
    str | None,
    typer.Option(
        "--stdout",
        "--output",
        "-o",
        metavar="PATH",
        help="Write the task's stdout to this file too (relative: to --workdir); "
        "%j job id, %t task id, %a sweep index, %% a % (Slurm's -o).",
        callback=checked_by(parse_output_path),
    ),
]
Stderr = Annotated[
    str | None,
    typer.Option(
        "--stderr",
        "--error",
        "-e",
        metavar="PATH",
        help="Write the task's stderr to this file too; the --stdout path puts both in one "
        "(Slurm's -e).",
        callback=checked_by(parse_output_path),
    ),
]

SLURM_HINTS: dict[str, str] = {
    "--time": "Slurm's --time counts a bare number in minutes; here the limit is "
    "--runtime-limit, whose bare number is seconds (--time 10 is --runtime-limit 10:00)",
    "-t": "Slurm's -t counts a bare number in minutes; here the limit is --runtime-limit, "
    "whose bare number is seconds (-t 10 is --runtime-limit 10:00)",
    "--ntasks": "a job's tasks here are --sweep START-END (one task per index) or the tasks "
    "of a --file spec; a task on several nodes is --nodes N",
    "-n": "Slurm's -n (tasks) is --sweep START-END here (one task per index), or the tasks "
    "of a --file spec; a task on several nodes is --nodes N",
    "--partition": "Slurm's partitions are node groups here: --nodegroup G (hpc nodegroup list)",
    "-p": "Slurm's partitions are node groups here: --nodegroup G (hpc nodegroup list)",
    "--export": "pass variables with --env K=V, or --env K for this shell's K",
}
"""sbatch options taken under another name or form here: what to give instead."""
