"""``hpc job``: submit, list, view, watch, cancel and requeue jobs.

``hpc job submit`` (its many flags) is in :mod:`hpc.commands.submit`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from hpc import render
from hpc.commands.submit import job_submit
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
from hpc.spec import parse_priority, parse_time
from hpc.text import one_line, safe

app = typer.Typer(help="Submit, list, view, watch, cancel and requeue jobs.", no_args_is_help=True)
app.command("submit")(job_submit)  # first, as `hpc job --help` lists it

JOB_PAGE = 500
"""Jobs asked for per request by ``hpc job list`` (the API pages with ``before``/``next``)."""


@app.command("list")
def job_list(
    state: Annotated[
        str | None, typer.Option(help="Only jobs in this state (comma-separated for several).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many jobs.")] = 100,
    show_all: Annotated[
        bool, typer.Option("--all", help="Show every job, page by page as they arrive.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first (the first 100 unless --limit or --all)."""
    states = normalise_states(state, JOB_STATES)
    jobs: list[dict[str, Any]] = []
    before: int | None = None
    more = False
    with api_client() as client:
        while show_all or len(jobs) < limit:
            size = JOB_PAGE if show_all else min(JOB_PAGE, limit - len(jobs))
            data = client.list_jobs(state=states, limit=size, before=before)
            page = data.get("jobs", [])
            jobs += page
            if page and not as_json:
                stdout_console().print(render.jobs_table(page))  # each page as it arrives
            before = data.get("next")
            more = before is not None
            if not more:
                break
    if as_json:
        print_json({"jobs": jobs, "next": before if more else None})
        return
    if not jobs:
        stderr_console().print("no jobs" + (f" in state {safe(state)}" if state else ""))
    elif more:
        stderr_console().print(f"newest {len(jobs)} jobs shown; --limit N or --all for more")


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
