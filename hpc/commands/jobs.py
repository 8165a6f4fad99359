"""``hpc job``: submit, list, view, watch, cancel and requeue jobs.

``hpc job submit`` prints only the new job id on stdout (scripts capture it);
the friendly line about how to follow the job goes to stderr.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.text import Text

from hpc import render
from hpc.common import (
    JOB_STATES,
    JobId,
    JsonOption,
    api_client,
    checked_by,
    normalise_states,
    print_json,
    stderr_console,
    stdout_console,
)
from hpc.spec import (
    build_spec,
    join_command,
    load_spec_file,
    parse_array,
    parse_env,
    parse_exit_codes,
    parse_priority,
    parse_sweep,
    parse_time,
)
from hpc.text import one_line, safe
from shared.domain.durations import parse_duration

app = typer.Typer(help="Submit, list, view, watch, cancel and requeue jobs.", no_args_is_help=True)


@app.command("submit")
def job_submit(
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- COMMAND",
            help=(
                "The task's shell command, after `--`. One argument is taken as-is "
                "(quote it to use variables: -- 'echo $HPC_SWEEP_INDEX'); "
                "several are quoted and joined."
            ),
            show_default=False,
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Job name.")] = None,
    nodegroup: Annotated[
        list[str] | None,
        typer.Option("--nodegroup", help="Node group to run on (repeatable); default any node."),
    ] = None,
    cores: Annotated[
        int | None, typer.Option(min=1, help="Cores per task.  \\[default: 1]", show_default=False)
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option(
            help="Lowest, BelowNormal, Normal, AboveNormal, Highest, or 0-4000.",
            callback=checked_by(parse_priority),
        ),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            metavar="START-END[:STEP]",
            help="Parametric sweep: one task per index, in $HPC_SWEEP_INDEX.",
            callback=checked_by(parse_sweep),
        ),
    ] = None,
    workdir: Annotated[
        str | None,
        typer.Option(
            help="Working directory of the task (a node that lacks it fails the task).  "
            "\\[default: this shell's directory]",
            show_default=False,
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            metavar="K=V",
            help="Environment variable for the task (repeatable).",
            callback=checked_by(parse_env),
        ),
    ] = None,
    array: Annotated[
        str | None,
        typer.Option(
            metavar="START-END[:STEP][%N]",
            help="Slurm's job array: a sweep, at most N tasks running at once.",
            callback=checked_by(parse_array),
        ),
    ] = None,
    depends_on: Annotated[
        list[int] | None,
        typer.Option(
            metavar="JOB",
            min=1,
            help="Start only after this job Finished (repeatable).",
        ),
    ] = None,
    runtime_limit: Annotated[
        str | None,
        typer.Option(
            metavar="[[D:]H:]M:S",
            help="Runtime limit of each task (or seconds); the agent kills a task past it.",
            callback=checked_by(parse_duration),
        ),
    ] = None,
    valid_exit_codes: Annotated[
        str | None,
        typer.Option(
            metavar="CODES",
            help="Exit codes that count as success, comma-separated.  \\[default: 0]",
            callback=checked_by(parse_exit_codes),
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            metavar="JOB.JSON",
            help="Submit this job spec (the HTTP API's JSON); '-' reads stdin.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a job and print its id.

    Example: hpc job submit --sweep 1-10 --cores 2 -- 'echo $HPC_SWEEP_INDEX'
    """
    options = {
        "--name": name, "--nodegroup": nodegroup, "--cores": cores, "--priority": priority,
        "--sweep": sweep, "--workdir": workdir, "--env": env,
        "--runtime-limit": runtime_limit, "--valid-exit-codes": valid_exit_codes,
        "--array": array, "--depends-on": depends_on,
    }  # fmt: skip
    if file is not None:
        given = [flag for flag, value in options.items() if value not in (None, [], {})]
        if command:
            given.append("COMMAND")
        if given:
            raise typer.BadParameter(
                f"--file holds the whole job spec; put {', '.join(given)} in the file instead",
                param_hint="'--file'",
            )
        try:
            spec = load_spec_file(file)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="'--file'") from None
    else:
        if not command:
            raise typer.BadParameter(
                "give the command after --, e.g. `hpc job submit -- echo hello`, "
                "or a job spec with --file job.json",
                param_hint="'COMMAND'",
            )
        if array is not None and sweep is not None:
            raise typer.BadParameter(
                "--array is a sweep with a cap; give --sweep or --array, not both",
                param_hint="'--array'",
            )
        array_sweep, max_concurrent = parse_array(array) if array is not None else (None, None)
        spec = build_spec(
            command=join_command(command),
            name=name,
            node_groups=nodegroup,
            cores=cores or 1,
            priority=parse_priority(priority) if priority is not None else None,
            sweep=parse_sweep(sweep) if sweep is not None else array_sweep,
            work_dir=workdir if workdir is not None else os.getcwd(),
            env=parse_env(env or []),
            runtime_limit=parse_duration(runtime_limit) if runtime_limit is not None else None,
            valid_exit_codes=parse_exit_codes(valid_exit_codes) if valid_exit_codes else None,
            max_concurrent=max_concurrent,
            depends_on=depends_on,
        )
    with api_client() as client:
        job = client.submit_job(spec)
    if as_json:
        print_json(job)
        return
    job_id = job.get("id")
    typer.echo(job_id)
    shown = safe(job_id)
    count = job.get("taskCount")
    tasks = f" ({count} task{'s' if count != 1 else ''})" if isinstance(count, int) else ""
    stderr_console().print(
        f"submitted job {shown}{tasks}; follow it with [bold]hpc job watch {shown}[/]",
        soft_wrap=True,
    )


@app.command("list")
def job_list(
    state: Annotated[
        str | None, typer.Option(help="Only jobs in this state (comma-separated for several).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    with api_client() as client:
        data = client.list_jobs(state=normalise_states(state, JOB_STATES))
    if as_json:
        print_json(data)
        return
    jobs = data.get("jobs", [])
    if not jobs:
        stderr_console().print("no jobs" + (f" in state {safe(state)}" if state else ""))
        return
    stdout_console().print(render.jobs_table(jobs))


@app.command("view")
def job_view(job_id: JobId, as_json: JsonOption = False) -> None:
    """Show one job: state, priority, task counts, times."""
    with api_client() as client:
        job = client.get_job(job_id)
    if as_json:
        print_json(job)
        return
    stdout_console().print(render.job_detail(job))


@app.command("cancel")
def job_cancel(job_id: JobId) -> None:
    """Cancel a job: queued tasks are dropped, running ones killed."""
    with api_client() as client:
        _print_job_state(client.cancel_job(job_id), job_id)


@app.command("requeue")
def job_requeue(job_id: JobId) -> None:
    """Queue a failed or canceled job again (its unfinished tasks run again)."""
    with api_client() as client:
        _print_job_state(client.requeue_job(job_id), job_id)


@app.command("hold")
def job_hold(
    job_id: JobId,
    until: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="Hold until this ISO 8601 time (UTC if no zone), e.g. 2026-12-01T14:00.",
            callback=checked_by(parse_time),
        ),
    ] = None,
) -> None:
    """Hold a job: none of its queued tasks starts until it is released (what runs goes on)."""
    with api_client() as client:
        job = client.hold_job(job_id, until=until)
    _print_job_state(job, job_id)
    if job.get("pendingReason"):
        stdout_console().print(Text(one_line(job["pendingReason"])))


@app.command("release")
def job_release(job_id: JobId) -> None:
    """Release a held job."""
    with api_client() as client:
        _print_job_state(client.release_job(job_id), job_id)


@app.command("modify")
def job_modify(
    job_id: JobId,
    priority: Annotated[
        str,
        typer.Option(
            help="New priority: Lowest ... Highest, or 0-4000.",
            callback=checked_by(parse_priority),
        ),
    ],
) -> None:
    """Change the priority of a job that has not ended (its queued tasks move in the queue)."""
    with api_client() as client:
        job = client.modify_job(job_id, priority=parse_priority(priority))
    _print_job_state(job, job_id)


def _print_job_state(job: dict[str, Any], job_id: int) -> None:
    job_id_text = one_line(job.get("id", job_id))
    stdout_console().print(Text.assemble(f"job {job_id_text}: ", render.state(job.get("state"))))


@app.command("watch")
def job_watch(job_id: JobId, as_json: JsonOption = False) -> None:
    """Follow a job until it ends; exit code 0 only if it Finished."""
    from hpc.watch import watch_job

    with api_client() as client:
        job = watch_job(client, job_id, console=stderr_console())
    final = str(job.get("state"))
    if as_json:
        print_json(job)
    else:
        line = Text.assemble(
            f"job {job_id} ", render.state(final), f": {render.progress(job)} tasks done"
        )
        if job.get("error"):
            line.append(f" ({one_line(job['error'])})", style="red")
        stdout_console().print(line, soft_wrap=True)
    raise typer.Exit(0 if final == "Finished" else 1)
