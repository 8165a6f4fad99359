"""The ``hpc`` command: Typer commands over :class:`hpc.client.ApiClient`.

The command names and flags are a public contract (scripts and docs use
them). Output: Rich tables for people; ``--json`` prints the API's JSON
unchanged for scripts; ``hpc job submit`` prints only the new job id on
stdout.

Errors never show a traceback: :class:`HpcGroup` runs every command and turns
an API error, a bad option, Ctrl-C or an unexpected exception into one red
line on stderr and a non-zero exit code (set HPC_DEBUG=1 to see the
traceback of an unexpected exception). Because this lives in the group's
``main``, the console script and Typer's ``CliRunner`` behave the same.

Text that users or tasks wrote (names, output, error messages) is never
parsed as Rich markup and reaches the terminal without escape sequences or
control characters (:mod:`hpc.text`); only ``--json`` and a piped
``hpc task output`` pass it on unchanged.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from hpc import render
from hpc.client import ApiClient
from hpc.errors import CliError
from hpc.spec import (
    build_spec,
    join_command,
    load_spec_file,
    parse_env,
    parse_priority,
    parse_sweep,
)
from hpc.text import for_terminal, one_line, safe
from shared.domain.states import JobState, TaskState

TASK_PAGE = 1000
"""Tasks fetched per request by ``hpc task list``."""


# --- error handling ---------------------------------------------------------


def _stdout() -> Console:
    # Made per use: a Console decides on colour when created, and CliRunner swaps streams.
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)  # piped tables keep their columns
    return console


def _stderr() -> Console:
    return Console(stderr=True)


def fail_line(message: str) -> None:
    """Print ``error: <message>`` as one red line on stderr (never wrapped)."""
    text = Text("error: ", style="bold red")
    text.append(" ".join(one_line(message).split()), style="red")
    _stderr().print(text, soft_wrap=True)


class HpcGroup(TyperGroup):
    """The root group: runs the command and reports any failure as one line."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise CliError("interrupted", exit_code=130) from None

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except CliError as e:
            fail_line(str(e))
            code = e.exit_code
        except typer.TyperException as e:  # a usage error: bad option, bad value, missing argument
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: show its help
                e.show()  # type: ignore[attr-defined]
            else:
                ctx = getattr(e, "ctx", None)
                hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                fail_line(e.format_message() + hint)
            code = e.exit_code
        except typer.Abort:
            fail_line("aborted")
            code = 1
        except Exception as e:
            if os.environ.get("HPC_DEBUG"):
                raise
            fail_line(f"unexpected {type(e).__name__}: {e} (set HPC_DEBUG=1 to see the traceback)")
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=HpcGroup,
    name="hpc",
    help="HybridHPC: submit and monitor jobs on a hybrid (on-premises + Azure) cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
job_app = typer.Typer(
    help="Submit, list, view, watch, cancel and requeue jobs.", no_args_is_help=True
)
task_app = typer.Typer(help="List a job's tasks and read their output.", no_args_is_help=True)
node_app = typer.Typer(help="List the cluster's compute nodes.", no_args_is_help=True)
agent_app = typer.Typer(help="Run the node agent on this machine.", no_args_is_help=True)
app.add_typer(job_app, name="job")
app.add_typer(task_app, name="task")
app.add_typer(node_app, name="node")
app.add_typer(agent_app, name="agent")


def _client() -> ApiClient:
    return ApiClient()


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _checked_by(parse: Any) -> Any:
    """A Typer callback that checks a given value with ``parse`` and reports its ValueError.

    The value itself passes unchanged (Typer would coerce a parsed value back
    to the option's type); the command parses it again.
    """

    def callback(value: Any) -> Any:
        if value is not None and value != []:
            try:
                parse(value)
            except ValueError as e:
                raise typer.BadParameter(str(e)) from None
        return value

    return callback


def _states(value: str | None, names: tuple[str, ...]) -> str | None:
    """Normalise the case of known state names (``running`` -> ``Running``); the server checks."""
    if not value:
        return None
    by_lower = {n.lower(): n for n in names}
    return ",".join(by_lower.get(s.strip().lower(), s.strip()) for s in value.split(","))


JOB_STATES = tuple(s.value for s in JobState)
TASK_STATES = tuple(s.value for s in TaskState)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON unchanged.")]
JobId = Annotated[int, typer.Argument(metavar="ID", help="The job id.", show_default=False)]


# --- hpc up -----------------------------------------------------------------


@app.command()
def up(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the local API.")] = 7071,
    nodes: Annotated[int, typer.Option(min=0, help="How many local agents (on-prem nodes).")] = 2,
    cores: Annotated[int, typer.Option(min=1, help="Cores each local agent offers.")] = 2,
) -> None:
    """Run a local cluster in the foreground: the control plane and NODES agents (Ctrl-C stops)."""
    from hpc.up import run_up

    raise typer.Exit(run_up(port=port, nodes=nodes, cores=cores))


# --- hpc job ----------------------------------------------------------------


@job_app.command("submit")
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
            callback=_checked_by(parse_priority),
        ),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            metavar="START-END[:STEP]",
            help="Parametric sweep: one task per index, in $HPC_SWEEP_INDEX.",
            callback=_checked_by(parse_sweep),
        ),
    ] = None,
    workdir: Annotated[str | None, typer.Option(help="Working directory of the task.")] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            metavar="K=V",
            help="Environment variable for the task (repeatable).",
            callback=_checked_by(parse_env),
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
        spec = build_spec(
            command=join_command(command),
            name=name,
            node_groups=nodegroup,
            cores=cores or 1,
            priority=parse_priority(priority) if priority is not None else None,
            sweep=parse_sweep(sweep) if sweep is not None else None,
            work_dir=workdir,
            env=parse_env(env or []),
        )
    with _client() as client:
        job = client.submit_job(spec)
    if as_json:
        _print_json(job)
        return
    job_id = job.get("id")
    typer.echo(job_id)
    shown = safe(job_id)
    count = job.get("taskCount")
    tasks = f" ({count} task{'s' if count != 1 else ''})" if isinstance(count, int) else ""
    _stderr().print(
        f"submitted job {shown}{tasks}; follow it with [bold]hpc job watch {shown}[/]",
        soft_wrap=True,
    )


@job_app.command("list")
def job_list(
    state: Annotated[
        str | None, typer.Option(help="Only jobs in this state (comma-separated for several).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    with _client() as client:
        data = client.list_jobs(state=_states(state, JOB_STATES))
    if as_json:
        _print_json(data)
        return
    jobs = data.get("jobs", [])
    if not jobs:
        _stderr().print("no jobs" + (f" in state {safe(state)}" if state else ""))
        return
    _stdout().print(render.jobs_table(jobs))


@job_app.command("view")
def job_view(job_id: JobId, as_json: JsonOption = False) -> None:
    """Show one job: state, priority, task counts, times."""
    with _client() as client:
        job = client.get_job(job_id)
    if as_json:
        _print_json(job)
        return
    _stdout().print(render.job_detail(job))


@job_app.command("cancel")
def job_cancel(job_id: JobId) -> None:
    """Cancel a job: queued tasks are dropped, running ones killed."""
    with _client() as client:
        _print_job_state(client.cancel_job(job_id), job_id)


@job_app.command("requeue")
def job_requeue(job_id: JobId) -> None:
    """Queue a failed or canceled job again (its unfinished tasks run again)."""
    with _client() as client:
        _print_job_state(client.requeue_job(job_id), job_id)


def _print_job_state(job: dict[str, Any], job_id: int) -> None:
    job_id_text = one_line(job.get("id", job_id))
    _stdout().print(Text.assemble(f"job {job_id_text}: ", render.state(job.get("state"))))


@job_app.command("watch")
def job_watch(job_id: JobId, as_json: JsonOption = False) -> None:
    """Follow a job until it ends; exit code 0 only if it Finished."""
    from hpc.watch import watch_job

    with _client() as client:
        job = watch_job(client, job_id, console=_stderr())
    final = str(job.get("state"))
    if as_json:
        _print_json(job)
    else:
        line = Text.assemble(
            f"job {job_id} ", render.state(final), f": {render.progress(job)} tasks done"
        )
        if job.get("error"):
            line.append(f" ({one_line(job['error'])})", style="red")
        _stdout().print(line, soft_wrap=True)
    raise typer.Exit(0 if final == "Finished" else 1)


# --- hpc task ---------------------------------------------------------------


class StreamName(StrEnum):
    stdout = "stdout"
    stderr = "stderr"


@task_app.command("list")
def task_list(
    job_id: Annotated[int, typer.Argument(metavar="JOB", help="The job id.", show_default=False)],
    state: Annotated[
        str | None, typer.Option(help="Only tasks in this state (comma-separated for several).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List a job's tasks."""
    tasks: list[dict[str, Any]] = []
    with _client() as client:
        while True:
            page = client.list_tasks(
                job_id, state=_states(state, TASK_STATES), offset=len(tasks), limit=TASK_PAGE
            ).get("tasks", [])
            tasks.extend(page)
            if len(page) < TASK_PAGE:
                break
    if as_json:
        _print_json({"tasks": tasks})
        return
    if not tasks:
        _stderr().print(
            f"job {job_id} has no tasks" + (f" in state {safe(state)}" if state else "")
        )
        return
    _stdout().print(render.tasks_table(tasks))


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


@task_app.command("output")
def task_output(
    job_id: Annotated[int, typer.Argument(metavar="JOB", help="The job id.", show_default=False)],
    task_id: Annotated[
        int, typer.Argument(metavar="TASK", help="The task id.", show_default=False)
    ],
    stream: Annotated[StreamName, typer.Option(help="Which output.")] = StreamName.stdout,
    attempt: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Which attempt (0 is the first run); default: the one the task's state "
            "comes from, which is its last.",
            show_default=False,
        ),
    ] = None,
    tail: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="Print only the last N lines.", show_default=False),
    ] = None,
) -> None:
    """Print a task's whole stdout (or stderr), of its last attempt unless --attempt.

    Piped or redirected, the output is written unchanged (`> file` is faithful);
    on a terminal, escape sequences and control characters other than newline
    and tab are removed so the output cannot restyle or rewrite the terminal.
    An output cut at HPC_MAX_OUTPUT_BYTES ends with a line saying so.
    """
    out = _OutputWriter(terminal=_stdout_is_terminal())
    with _client() as client:
        if tail is not None:
            page = client.task_output_tail(
                job_id, task_id, tail, stream=stream.value, attempt=attempt
            )
            out.write(page.data)
        else:
            for page in client.iter_task_output(
                job_id, task_id, stream=stream.value, attempt=attempt
            ):
                out.write(page.data)
    out.close()


class _OutputWriter:
    """Task output to stdout as it arrives: bytes unchanged when piped; on a terminal,
    decoded and cleaned a whole line at a time (so an escape sequence split between
    two pages is still recognised)."""

    def __init__(self, *, terminal: bool) -> None:
        self.terminal = terminal
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        sys.stdout.flush()

    def write(self, data: bytes, *, final: bool = False) -> None:
        if not self.terminal:
            buffer = getattr(sys.stdout, "buffer", None)
            if buffer is not None:
                buffer.write(data)
            else:
                sys.stdout.write(data.decode("utf-8", errors="replace"))
            return
        text = self._partial + self._decoder.decode(data, final=final)
        cut = len(text) if final else text.rfind("\n") + 1
        self._partial = text[cut:]
        sys.stdout.write(for_terminal(text[:cut]))

    def close(self) -> None:
        self.write(b"", final=True)
        sys.stdout.flush()


# --- hpc node ---------------------------------------------------------------


@node_app.command("list")
def node_list(as_json: JsonOption = False) -> None:
    """List compute nodes with their state and free cores."""
    with _client() as client:
        data = client.list_nodes()
    if as_json:
        _print_json(data)
        return
    nodes = data.get("nodes", [])
    if not nodes:
        _stderr().print("no nodes: start some with `hpc up` or `hpc agent run`")
        return
    _stdout().print(render.nodes_table(nodes))


# --- hpc agent --------------------------------------------------------------


@agent_app.command("run")
def agent_run(
    name: Annotated[
        str | None,
        typer.Option(help="Node name.  \\[default: this host's name]", show_default=False),
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(help="Node group (repeatable).  \\[default: OnPremNodes]", show_default=False),
    ] = None,
    cores: Annotated[
        int | None,
        typer.Option(
            min=1, help="Cores to offer.  \\[default: this host's CPU count]", show_default=False
        ),
    ] = None,
) -> None:
    """Run the node agent in the foreground (Ctrl-C stops it)."""
    import agent  # the agent's own imports are not needed by any other command

    raise typer.Exit(agent.run_agent(name, group, cores))


def main() -> None:
    """Console-script entry point (``hpc``); HpcGroup.main does the error handling and exits."""
    app(prog_name="hpc")


if __name__ == "__main__":
    main()
