"""``hpc job watch``: poll one job and draw its progress until it ends.

The bar counts tasks that reached a terminal state (finished, failed or
canceled) against the job's task count; beside it are the per-state
counts. A control plane that stops answering for a moment (a restart) once
the watch has heard from it does not end the watch; one silent for longer
than ``patience_s`` does, as does any error the API returns (an unknown job
id, a bad token). One that does not answer the first poll ends it at once,
as it ends any other command: it is down or the URL is wrong, no blip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hpc.client import ApiClient, ApiError
from hpc.render import STATE_STYLES, counts_text, done_total, local_times
from hpc.text import one_line, safe
from shared.domain.states import JOB_TERMINAL

TERMINAL_STATES = frozenset(s.value for s in JOB_TERMINAL)
T = TypeVar("T")
POLL_INTERVAL_S = 1.0
"""Pause between two polls of the job, or of a followed task (module-level so tests can
shorten it)."""
PATIENCE_S = 30.0
"""How long the control plane may stay unreachable before the watch gives up."""


def poll_patiently(
    fetch: Callable[[], T],
    *,
    retry_s: float,
    patience_s: float,
    sleep: Callable[[float], None],
) -> T:
    """``fetch()``, retried while the control plane is unreachable (status 0) for up to
    patience_s (a restart); any other error, or a longer silence, is raised."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return fetch()
        except ApiError as e:
            if e.status != 0 or time.monotonic() >= deadline:
                raise
            sleep(retry_s)


def watch_job(
    client: ApiClient,
    job_id: int,
    *,
    console: Console,
    interval_s: float | None = None,
    patience_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the job is Finished, Failed or Canceled; return its last state from the API."""
    interval_s = POLL_INTERVAL_S if interval_s is None else interval_s
    patience_s = PATIENCE_S if patience_s is None else patience_s
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn(
            "{task.fields[finished]} finished · [red]{task.fields[failed]} failed[/] "
            "/ {task.fields[tasks_total]}"
        ),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    # The first poll comes before the bar, so an unknown job id prints no empty bar; it is
    # not retried: a control plane never reached is no blip (patience is for restarts).
    job = client.get_job(job_id)
    last_line = ""
    # piped or logged (CI): no bar at all, not even its last frame; plain lines below
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        row = bar.add_task(
            f"job {job_id}", total=None, finished=0, failed=0, tasks_total=0, counts=""
        )
        while True:
            counts: dict[str, int] = job.get("taskCounts") or {}
            done, total = done_total(job)
            job_state = one_line(job.get("state", "?"))
            # why it waits, beside its counts (a probe's watch said only "Queued: 0/1 done")
            waiting = (
                local_times(one_line(job["pendingReason"])) if job.get("pendingReason") else ""
            )
            style = STATE_STYLES.get(job_state, "")
            bar.update(
                row,
                description=f"job {job_id} [{style}]{job_state}[/]"
                if style
                else f"job {job_id} {safe(job_state)}",
                total=total or None,
                completed=done,
                finished=counts.get("Finished", 0),
                failed=counts.get("Failed", 0),
                tasks_total=total,
                counts=counts_text(counts).markup
                + (f"  [yellow]{safe(waiting)}[/]" if waiting else ""),
            )
            if not console.is_terminal:
                # Piped or logged: no live bar, so print a line each time the counts move.
                line = (
                    f"job {job_id} {job_state}: {done}/{total} ended  {counts_text(counts).plain}"
                )
                if waiting:
                    line += f"  waiting: {waiting}"
                if line != last_line:
                    console.print(line, soft_wrap=True, highlight=False, markup=False)
                    last_line = line
            if job_state in TERMINAL_STATES:
                return job
            sleep(interval_s)
            job = poll_patiently(
                lambda: client.get_job(job_id),
                retry_s=interval_s,
                patience_s=patience_s,
                sleep=sleep,
            )


def watch_to_end(job_id: int, *, as_json: bool) -> None:
    """``hpc job watch`` and ``hpc job submit --wait``: follow the job until it ends (its
    progress on stderr), print how it ended (or its JSON) on stdout, and exit 0 only if it
    Finished (as ``sbatch --wait`` does)."""
    import typer
    from rich.text import Text

    from hpc import render
    from hpc.common import api_client, print_json, stderr_console, stdout_console

    with api_client() as client:
        job = watch_job(client, job_id, console=stderr_console())
    final = str(job.get("state"))
    if as_json:
        print_json(job)
    else:
        line = Text.assemble(
            f"job {job_id} ", render.state(final), f": {render.progress(job)} tasks ended"
        )
        if job.get("error"):
            line.append(f" ({one_line(job['error'])})", style="red")
        stdout_console().print(line, soft_wrap=True)
    raise typer.Exit(0 if final == "Finished" else 1)
