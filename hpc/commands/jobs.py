"""``hpc job``: submit, list, view, watch, cancel and requeue jobs.

``hpc job submit`` (its many flags) is in :mod:`hpc.commands.submit`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.text import Text

from hpc import render
from hpc.begin import parse_begin
from hpc.client import ApiClient, ApiError
from hpc.commands.submit import job_submit
from hpc.common import (
    REFUSED,
    JobId,
    JobIds,
    JsonOption,
    NoHeader,
    act_on_each,
    api_client,
    checked_by,
    counted,
    print_json,
    stderr_console,
    stdout_console,
)
from hpc.errors import CliError, InvalidInput
from hpc.plaintable import print_table
from hpc.spec import parse_priority
from hpc.statefilter import JOB_STATES, normalise_states
from hpc.text import one_line, safe
from shared.domain.durations import parse_duration
from shared.domain.specvalues import quoted

app = typer.Typer(help="Submit, list, view, watch, cancel and requeue jobs.", no_args_is_help=True)
app.command("submit")(job_submit)  # first, as `hpc job --help` lists it

JOB_PAGE = 500
"""Jobs asked for per request by ``hpc job list`` (the API pages with ``before``/``next``)."""

LIMIT_SAMPLE = 100
"""Tasks ``hpc job view`` reads for their memory requests (kept per task only) and their
runtime limits when the job has none of its own (its tasks then may set their own)."""


@app.command("list")
def job_list(
    state: Annotated[
        str | None, typer.Option(help="Only jobs in this state (comma-separated for several).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many jobs.")] = 100,
    show_all: Annotated[
        bool, typer.Option("--all", help="Show every job, page by page as they arrive.")
    ] = False,
    owner: Annotated[
        str | None, typer.Option(help="Only this user's jobs (squeue -u, job list /owner:).")
    ] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only your own jobs (squeue --me).")] = False,
    as_json: JsonOption = False,
    noheader: NoHeader = False,
) -> None:
    """List jobs, newest first (the first 100 unless --limit or --all)."""
    if owner is not None and mine:
        raise InvalidInput("--owner and --mine both name an owner: give one of them")
    states = normalise_states(state, JOB_STATES)
    jobs: list[dict[str, Any]] = []
    before: int | None = None
    more = False
    widths: list[int] = []  # the first page's: later pages print as its rows, no header
    with api_client() as client:
        if mine:  # the name the token signs in as, from the control plane itself
            owner = str(client.me()["name"])
        while show_all or len(jobs) < limit:
            size = JOB_PAGE if show_all else min(JOB_PAGE, limit - len(jobs))
            data = client.list_jobs(state=states, limit=size, before=before, owner=owner)
            page = data.get("jobs", [])
            jobs += page
            if page and not as_json:  # each page as it arrives, as one table
                table = render.jobs_table(page, header=not (widths or noheader), widths=widths)
                print_table(table)  # (piped: without Rich)
                widths = widths or render.widths_of(table)
            before = data.get("next")
            more = before is not None
            if not more:
                break
    if as_json:
        print_json({"jobs": jobs, "next": before if more else None})
        return
    if not jobs:
        of = f" of {safe(owner)}" if owner is not None else ""
        stderr_console().print(f"no jobs{of}" + (f" in state {safe(state)}" if state else ""))
    elif more:
        stderr_console().print(
            f"newest {counted(len(jobs), 'job')} shown; --limit N or --all for more"
        )


@app.command("view")
def job_view(job_id: JobId, as_json: JsonOption = False) -> None:
    """Show one job: state, priority, task counts, runtime limit, memory asked, times."""
    with api_client() as client:
        job = client.get_job(job_id)
        if as_json:
            print_json(job)
            return
        tasks: list[dict[str, Any]] = []  # their runtime limits, if the job has none, and memory
        failed: list[dict[str, Any]] = []  # the first failed task, to say why
        try:
            tasks = client.list_tasks(job_id, limit=LIMIT_SAMPLE).get("tasks", [])
            failed = [t for t in tasks if t.get("state") == "Failed"][:1]
            if not failed and (job.get("taskCounts") or {}).get("Failed"):
                failed = client.list_tasks(job_id, state="Failed", limit=1).get("tasks", [])
        except ApiError as exc:
            if exc.status not in REFUSED:  # not this job's tasks to read: it still shows
                raise
    limit, memory = render.runtime_limit(job, tasks), render.memory_request(tasks)
    failure = render.first_failure(failed[0]) if failed else None
    stdout_console().print(render.job_detail(job, limit=limit, memory=memory, failure=failure))


# `hpc job show`: the same command (Slurm says show, HPC Pack view: either works)
app.command("show", hidden=True)(job_view)


@app.command("cancel")
def job_cancel(job_ids: JobIds) -> None:
    """Cancel jobs: queued tasks are dropped, running ones killed."""
    _act(job_ids, "canceled", lambda client, job_id: client.cancel_job(job_id))


@app.command("requeue")
def job_requeue(job_ids: JobIds) -> None:
    """Queue failed or canceled jobs again (their unfinished tasks run again)."""
    _act(
        job_ids,
        "requeued",
        lambda client, job_id: client.requeue_job(job_id),
        note=_still_held,
        # the dependent jobs left Canceled, less those this command requeues too (a probe's
        # `hpc job requeue 8 9 10` told it to requeue 9, then did)
        more=lambda job, job_id: render.left_canceled(job, job_id, besides=job_ids),
    )


@app.command("hold")
def job_hold(
    job_ids: JobIds,
    until: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="Hold until this ISO 8601 time (local time if no zone), e.g. 2026-12-01T14:00, "
            "HH:MM[:SS], tomorrow, or now+DURATION, e.g. now+1:00:00 (as job submit's --begin).",
            callback=checked_by(parse_begin),
        ),
    ] = None,
) -> None:
    """Hold jobs: none of their queued tasks starts until released (what runs goes on)."""
    when = parse_begin(until) if until is not None else None  # one now for every job
    _act(
        job_ids,
        "held",
        lambda client, job_id: client.hold_job(job_id, until=when),
        show_reason=True,
    )


@app.command("release")
def job_release(job_ids: JobIds) -> None:
    """Release held jobs: the hold, then a --begin time (why one still waits is said)."""
    _act(
        job_ids,
        "released",
        lambda client, job_id: client.release_job(job_id),
        show_reason=True,
    )


def _act(
    job_ids: list[int],
    done: str,
    action: Callable[[ApiClient, int], dict[str, Any]],
    *,
    note: Callable[[dict[str, Any], int], str | None] | None = None,
    show_reason: bool = False,
    more: Callable[[dict[str, Any], int], str | None] | None = None,
) -> None:
    """``action`` on each job in turn, one line each, as scancel takes a list; a refused job
    is a line on stderr and the rest go on; exit 1 if any was refused. One job alone fails
    as before, with the API's error as the one line. ``note``: words beside a job's new
    state; ``show_reason``: its pending reason on a line of its own; ``more``: a line after."""

    def show(job: dict[str, Any], job_id: int) -> None:
        _print_job_state(job, job_id, note=note(job, job_id) if note else None)
        if show_reason and job.get("pendingReason"):
            stdout_console().print(Text(one_line(job["pendingReason"])))
        line = more(job, job_id) if more else None
        if line:
            stdout_console().print(Text(line), soft_wrap=True)

    act_on_each(job_ids, noun="job", done=done, name=str, action=action, show=show)


@app.command("modify")
def job_modify(
    job_id: JobId,
    priority: Annotated[
        str | None,
        typer.Option(
            help="New priority: Lowest ... Highest, or 0-4000.",
            callback=checked_by(parse_priority),
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    max_concurrent: Annotated[
        str | None,
        typer.Option(
            metavar="N|none",
            help="At most N of its tasks run at once (none: no cap); running ones go on.",
        ),
    ] = None,
    job_runtime_limit: Annotated[
        str | None,
        typer.Option(
            metavar="[[D:]H:]M:S|none",
            help="Runtime limit of the whole job, from its start (none: no limit); one "
            "already run out cancels the job.",
        ),
    ] = None,
) -> None:
    """Change a job that has not ended: its priority (its queued tasks move in the queue),
    name, how many of its tasks may run at once (Slurm's array throttle), or its whole
    runtime limit."""
    changes: dict[str, Any] = {}
    if priority is not None:
        changes["priority"] = parse_priority(priority)
    if name is not None:
        if not name.strip():  # the words of hpc job submit --name '' (a third probe: exit 1)
            raise typer.BadParameter(
                "is empty: give a name, or leave --name out", param_hint="'--name'"
            )
        changes["name"] = name
    if max_concurrent is not None:
        changes["maxConcurrent"] = _cap(max_concurrent)
    if job_runtime_limit is not None:
        changes["jobRuntimeLimit"] = _limit(job_runtime_limit)
    if not changes:
        raise CliError(
            "give --priority, --name, --max-concurrent or --job-runtime-limit (see --help)",
            exit_code=2,
        )
    with api_client() as client:
        job = client.modify_job(job_id, **changes)
    _print_job_state(job, job_id)


def _cap(text: str) -> int | None:
    """``--max-concurrent``: N (1 or more), or none for no cap."""
    if text.strip().lower() in ("none", "default"):
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise typer.BadParameter(
            f"give a whole number, 1 or more, or none, got {quoted(text)}",
            param_hint="'--max-concurrent'",
        )
    return int(text)


def _limit(text: str) -> int | None:
    """``--job-runtime-limit``: a duration, or none for no limit."""
    if text.strip().lower() == "none":
        return None
    try:
        return parse_duration(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="'--job-runtime-limit'") from None


def _print_job_state(job: dict[str, Any], job_id: int, *, note: str | None = None) -> None:
    job_id_text = one_line(job.get("id", job_id))
    line = Text.assemble(f"job {job_id_text}: ", render.state(job.get("state")))
    if note:
        line.append(f" ({one_line(note)})", style="yellow")
    stdout_console().print(line, soft_wrap=True)


def _still_held(job: dict[str, Any], job_id: int) -> str | None:
    """A requeued job keeps the hold it had (as HPC Pack's does): say so, or "Queued" reads
    as if it would run (a probe's requeue printed "job 21: Queued", and it never started)."""
    if job.get("held"):
        return f"held: hpc job release {one_line(job.get('id', job_id))}"
    reason = str(job.get("pendingReason") or "")
    if job.get("holdUntil") and reason.startswith("held until"):
        return reason
    return None


@app.command("watch")
def job_watch(job_id: JobId, as_json: JsonOption = False) -> None:
    """Follow a job until it ends; exit code 0 only if it Finished."""
    from hpc.watch import watch_to_end

    watch_to_end(job_id, as_json=as_json)
