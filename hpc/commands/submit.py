"""``hpc job submit``: a job from flags and a command, or from a job spec file.

``hpc job submit`` prints only the new job id on stdout (scripts capture it);
the friendly line about how to follow the job goes to stderr. Registered on
``hpc job`` by :mod:`hpc.commands.jobs`.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from hpc.begin import parse_begin
from hpc.common import (
    IdempotencyKeyOption,
    JsonOption,
    api_client,
    checked_by,
    depends_on_ids,
    group_names,
    print_json,
    stderr_console,
)
from hpc.spec import (
    absolute_work_dir,
    build_spec,
    job_settings,
    join_command,
    load_spec_file,
    parse_array,
    parse_cores,
    parse_env,
    parse_exit_codes,
    parse_memory,
    parse_output_path,
    parse_priority,
    parse_sweep,
    resolve_work_dirs,
    with_job_exclusive,
)
from hpc.submit_options import (
    Cores,
    DependsOn,
    JobName,
    MinMemory,
    Nodes,
    Stderr,
    Stdout,
    WorkDir,
)
from hpc.text import safe
from shared.domain.durations import FORMS, parse_duration


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
    name: JobName = None,
    nodegroup: Annotated[
        list[str] | None,
        typer.Option(
            "--nodegroup",
            "--node-group",
            help="Node group to run on (repeatable, or comma-separated: A,B); default any node.",
        ),
    ] = None,
    cores: Cores = None,
    exclusive: Annotated[
        bool,
        typer.Option(
            "--exclusive", help="Run alone on the node: nothing else runs there meanwhile."
        ),
    ] = False,
    job_exclusive: Annotated[
        bool,
        typer.Option(
            "--job-exclusive",
            help="No other job's task on the nodes this job's tasks run on (HPC Pack's job "
            "/exclusive); its own tasks share them.",
        ),
    ] = False,
    nodes: Nodes = None,
    min_memory: MinMemory = None,
    mem_per_core: Annotated[
        str | None,
        typer.Option(
            "--mem-per-core",
            "--mem-per-cpu",
            metavar="SIZE",
            help="Memory per core, e.g. 2G: each task holds its cores times this on each "
            "node (as Slurm's --mem-per-cpu; not with --min-memory).",
            callback=checked_by(parse_memory),
        ),
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
    workdir: WorkDir = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            metavar="K=V|K",
            help="Environment variable for the task (repeatable); K alone passes on this "
            "shell's K, as Slurm's --export=K.",
            callback=checked_by(parse_env),
        ),
    ] = None,
    array: Annotated[
        str | None,
        typer.Option(
            metavar="RANGE[,RANGE...][%N]",
            help="Slurm's job array: a sweep (1-100, 0-90:10, a lone index 5, or several: "
            "1,3,5-9), at most N tasks running at once.",
            callback=checked_by(parse_array),
        ),
    ] = None,
    depends_on: DependsOn = None,
    runtime_limit: Annotated[
        str | None,
        typer.Option(
            metavar="[[D:]H:]M:S",
            help=f"Runtime limit of each task ({FORMS}, e.g. 1-00:00:00); the agent kills "
            "a task past it. A bare number is seconds, not Slurm's minutes: 90 is 90 s, "
            "1:30:00 is 90 min.",
            callback=checked_by(parse_duration),
        ),
    ] = None,
    job_runtime_limit: Annotated[
        str | None,
        typer.Option(
            metavar="[[D:]H:]M:S",
            help="Runtime limit of the whole job, from its first task's start (HPC Pack's "
            "job /runtime:); past it the job is canceled.",
            callback=checked_by(parse_duration),
        ),
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=100,
            metavar="N",
            help="Times a task is requeued after losing its node before it Fails.  "
            "[default: the template's, else 3]",
            show_default=False,
        ),
    ] = None,
    hold: Annotated[
        bool,
        typer.Option(
            "--hold",
            help="Hold the job from submit on, until `hpc job release` (Slurm's --hold).",
        ),
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Then follow the job until it ends, as hpc job watch (Slurm's sbatch --wait); "
            "exit code 0 only if it Finished.",
        ),
    ] = False,
    run_dependents_on_failure: Annotated[
        bool,
        typer.Option(
            "--run-dependents-on-failure",
            help="Run this job even if a job of --depends-on ends Failed or Canceled "
            "(HPC Pack's RunDependentTasksOnFailure).",
        ),
    ] = False,
    begin: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="Start no task before TIME: ISO 8601 (local time if no zone), e.g. "
            "2026-12-01T14:00, HH:MM[:SS] (the next such time), tomorrow, or now+DURATION, "
            "e.g. now+1:00:00 (Slurm's --begin).",
            callback=checked_by(parse_begin),
        ),
    ] = None,
    valid_exit_codes: Annotated[
        str | None,
        typer.Option(
            metavar="CODES",
            help="Exit codes that count as success, comma-separated.  [default: 0]",
            callback=checked_by(parse_exit_codes),
            show_default=False,
        ),
    ] = None,
    stdout: Stdout = None,
    stderr: Stderr = None,
    template: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Job template whose defaults and limits apply (`hpc template list`).  "
            "[default: the Default template, if any]",
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
    idempotency_key: IdempotencyKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a job and print its id.

    Example: hpc job submit --sweep 1-10 --cores 2 -- 'echo $HPC_SWEEP_INDEX'
    """
    if name is not None and not name.strip():  # as hpc job modify --name '' is refused
        raise typer.BadParameter(
            "is empty: give a name, or leave --name out", param_hint="'--name'"
        )
    task_options = {
        "--cores": cores, "--exclusive": exclusive or None, "--nodes": nodes, "--sweep": sweep,
        "--workdir": workdir, "--env": env, "--array": array, "--stdout": stdout,
        "--stderr": stderr,
    }  # fmt: skip
    settings = job_settings(  # the job's own, from the flags (over a --file spec's)
        name=name,
        template=template,
        node_groups=group_names(nodegroup, "--nodegroup"),
        priority=parse_priority(priority) if priority is not None else None,
        runtime_limit=parse_duration(runtime_limit) if runtime_limit is not None else None,
        job_runtime_limit=(
            parse_duration(job_runtime_limit) if job_runtime_limit is not None else None
        ),
        valid_exit_codes=parse_exit_codes(valid_exit_codes) if valid_exit_codes else None,
        depends_on=depends_on_ids(depends_on or []),
        max_retries=max_retries,
        hold_until=parse_begin(begin) if begin is not None else None,
    )
    memory_mb = parse_memory(min_memory) if min_memory is not None else None
    if mem_per_core is not None:
        if memory_mb is not None:
            raise typer.BadParameter(
                "give --min-memory (per node) or --mem-per-core (per core), not both",
                param_hint="'--mem-per-core'",
            )
        settings["memoryPerCoreMb"] = parse_memory(mem_per_core)
    if file is not None:
        given = [
            flag
            for flag, value in task_options.items()
            if value not in (None, [], {}) and flag != "--workdir"  # the tasks' default
        ]
        if command:
            given.append("COMMAND")
        if given:
            raise typer.BadParameter(
                f"--file holds the job's tasks; put {', '.join(given)} in the file instead "
                "(job settings such as --priority, --nodegroup or --begin may go beside it)",
                param_hint="'--file'",
            )
        try:
            spec = resolve_work_dirs(load_spec_file(file), os.getcwd(), workdir)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="'--file'") from None
        # over the file's, as HPC Pack's job submit /jobfile: /priority:...
        spec.update(settings, **job_settings(min_memory_mb=memory_mb))
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
        for flag, path in (("--stdout", stdout), ("--stderr", stderr)):
            if path is not None:
                try:
                    parse_output_path(path, sweep=sweep is not None or array is not None)
                except ValueError as e:
                    raise typer.BadParameter(str(e), param_hint=f"'{flag}'") from None
        spec = build_spec(
            command=join_command(command),
            cores=parse_cores(cores) if cores is not None else 1,
            exclusive=exclusive,
            nodes=nodes,
            min_memory_mb=memory_mb,
            sweep=parse_sweep(sweep) if sweep is not None else array_sweep,
            # the submit dir, not the agent's: a relative --workdir is sent absolute (Slurm's
            # --chdir), else the agent would take it from wherever it runs
            work_dir=absolute_work_dir(workdir if workdir is not None else ".", os.getcwd()),
            env=parse_env(env or []),
            max_concurrent=max_concurrent,
            stdout=stdout,
            stderr=stderr,
        )
        spec.update(settings)
    if hold:  # in the spec, so that nothing of it starts before the hold
        spec["held"] = True
    if run_dependents_on_failure:
        spec["runDependentsOnFailure"] = True
    if job_exclusive:
        spec = with_job_exclusive(spec)
    with api_client() as client:
        job = client.submit_job(spec, idempotency_key=idempotency_key)
        again = client.replayed_earlier  # this key's job, submitted by an earlier command
    if as_json and not wait:
        print_json(job)
        return
    job_id = job.get("id")
    shown = safe(job_id)
    if not as_json:
        typer.echo(job_id)  # the id first, also with --wait: a script reads it at once
        count = job.get("taskCount")
        tasks = f" ({count} task{'s' if count != 1 else ''})" if isinstance(count, int) else ""
        then = "waiting for it to end" if wait else f"follow it with [bold]hpc job watch {shown}[/]"
        did = "job {0}{1} was submitted already with this --idempotency-key (no second job)"
        said = (did if again else "submitted job {0}{1}").format(shown, tasks)
        stderr_console().print(f"{said}; {then}", soft_wrap=True)
    if wait:
        from hpc.watch import watch_to_end

        watch_to_end(int(job["id"]), as_json=as_json)
