"""Rich renderings of the API's JSON: job, task and node tables, and one job in detail.

Everything here reads the camelCase dicts the API returns and tolerates
missing fields (shown as ``-``), so a newer control plane that adds or drops
an optional field does not break the CLI. Every cell is a :class:`~rich.text.Text`
built by :func:`hpc.text.cell`: what users and tasks wrote (names, output,
errors) is shown literally, never parsed as markup nor passed on as escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeGuard

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hpc.render_times import ago as ago  # re-exported: the views' times live there
from hpc.render_times import local_times as local_times
from hpc.render_times import moment_of
from hpc.render_times import parse_time as parse_time
from hpc.render_times import when as when
from hpc.render_times import when_and_utc as when_and_utc
from hpc.text import cell, one_line, strip_controls
from shared.domain.durations import format_duration
from shared.domain.memory import shown
from shared.domain.models import PRIORITY_NAMES
from shared.domain.states import TASK_TERMINAL, TaskState

STATE_STYLES: dict[str, str] = {
    "Configuring": "dim",
    "Submitted": "yellow",
    "Queued": "yellow",
    "Dispatching": "cyan",
    "Running": "cyan",
    "Finishing": "cyan",
    "Finished": "green",
    "Failed": "bold red",
    "Canceling": "magenta",
    "Canceled": "magenta",
    "Offline": "dim",
    "Starting": "yellow",
    "Online": "green",
    "Draining": "yellow",
    "Drained": "yellow",
    "Stopping": "yellow",
    "Unreachable": "bold red",
}

COUNT_ORDER = tuple(s.value for s in TaskState)
"""Task states in lifecycle order, for per-state counts."""

_PRIORITY_BY_VALUE = {value: name for name, value in PRIORITY_NAMES.items()}


def state(value: Any) -> Text:
    text = "-" if value is None else one_line(value)
    return Text(text, style=STATE_STYLES.get(text, ""))


def job_state(
    job: Mapping[str, Any], listed: Mapping[Any, Any], *, now: datetime | None = None
) -> Text:
    """A job's state in a list, a Queued one with what its own settings hold it back by, as
    squeue's PD (JobHeldUser / BeginTime / Dependency): read from the job alone (and the
    listed states of its prerequisites), so no request more. A probe's held, ``--begin`` and
    dependent jobs all read just Queued."""
    shown = state(job.get("state"))
    if job.get("state") != "Queued":
        return shown
    why = None
    begin = moment_of(job.get("holdUntil"))
    if job.get("held"):
        why = "held"
    elif isinstance(begin, datetime) and begin > (now or datetime.now(UTC)):
        why = f"until {when(job.get('holdUntil'), now=now)}"
    elif any(listed.get(p) not in (None, *_ENDED) for p in job.get("dependsOn") or []):
        why = "dependency"
    if why:
        shown.append(f" ({why})")
    return shown


_ENDED = ("Finished", "Failed", "Canceled")


def drained(node: Mapping[str, Any]) -> bool:
    """Draining and running no task any more: its drain is complete (Slurm's DRAINED)."""
    return node.get("state") == "Draining" and node.get("runningTasks") == 0


def node_state(node: Mapping[str, Any]) -> Text:
    """A node's state, marked ``(held)`` while an admin's drain or offline holds it (its
    reason may say something else, e.g. "agent stopped"): only ``hpc node online`` ends it.
    A Draining node that runs no task any more reads ``Drained``, as Slurm's DRAINED: its
    drain is complete (a probe's held on-prem node read "Draining" for ever)."""
    text = state("Drained" if drained(node) else node.get("state"))
    if node.get("held"):
        text.append(" (held)")
    return text


def cells(*values: str | Text) -> list[Text]:
    """A table row: each value a literal Text (strings cleaned by :func:`hpc.text.cell`)."""
    return [v if isinstance(v, Text) else cell(v) for v in values]


def dash(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def memory(value: Any, unknown: str = "-") -> str:
    """MB as ``4 GB``; ``unknown`` for none (or what is no size: a newer field's change)."""
    return shown(value) if positive_int(value) else unknown


def priority(value: Any) -> str:
    if isinstance(value, int) and value in _PRIORITY_BY_VALUE:
        return _PRIORITY_BY_VALUE[value]
    return dash(value)


def counts_text(counts: Mapping[str, int] | None) -> Text:
    """``Queued 3 · Running 2 · Finished 5`` in lifecycle order, each state in its colour."""
    counts = counts or {}
    names = [s for s in COUNT_ORDER if counts.get(s)] + sorted(
        s for s in counts if s not in COUNT_ORDER and counts[s]
    )
    text = Text()
    for i, name in enumerate(names):
        if i:
            text.append(" · ", style="dim")
        text.append(one_line(f"{name} {counts[name]}"), style=STATE_STYLES.get(name, ""))
    return text or Text("-")


def done_total(job: Mapping[str, Any]) -> tuple[int, int]:
    """Tasks in a terminal state, and all tasks, of a job document."""
    counts: Mapping[str, int] = job.get("taskCounts") or {}
    done = sum(counts.get(s, 0) for s in TASK_TERMINAL)
    total = job.get("taskCount")
    return done, total if total is not None else sum(counts.values())


def progress(job: Mapping[str, Any]) -> str:
    """``done/total`` where done counts tasks in a terminal state."""
    done, total = done_total(job)
    return f"{done}/{total}"


def widths_of(table: Table) -> list[int]:
    """Each column's width as printed but the last's (which takes the rest of the line)."""
    return [
        max([cell_len(column.header if isinstance(column.header, str) else "")]
            + [cell_len(c.plain if isinstance(c, Text) else str(c)) for c in column.cells])
        for column in table.columns[:-1]
    ]  # fmt: skip


def jobs_table(
    jobs: list[dict[str, Any]], *, header: bool = True, widths: Sequence[int] = ()
) -> Table:
    """One row a job; ``header`` and ``widths`` as :func:`hpc.render_tasks.tasks_table`'s."""
    table = Table(box=None, header_style="bold", pad_edge=False, show_header=header)
    # "Ended", not "Done": tasks canceled before they ran count too (a probe read 1000/1000
    # done of a job with 980 canceled); the Tasks column says how each ended
    columns = ("ID", "Name", "Owner", "State", "Priority", "Ended", "Tasks", "Submitted")
    for k, column in enumerate(columns):
        table.add_column(
            column,
            justify="right" if column in ("ID", "Ended") else "left",
            min_width=widths[k] if k < len(widths) else None,
        )
    listed = {j.get("id"): j.get("state") for j in jobs}
    for job in jobs:
        table.add_row(
            *cells(
                dash(job.get("id")),
                dash(job.get("name")),
                dash(job.get("owner")),
                job_state(job, listed),
                priority(job.get("priority")),
                progress(job),
                counts_text(job.get("taskCounts")),
                when(job.get("submitTime")),
            )
        )
    return table


def runtime_limit(job: Mapping[str, Any], tasks: list[dict[str, Any]]) -> str | None:
    """A job's runtime limit as ``H:MM:SS``, None if none is set: the job's ``runtimeLimit``
    (the spec's, for every task that sets none), else read from ``tasks`` (a first page of
    them; a job's tasks may each set one, and older servers kept none for the job); tasks
    that differ show each limit."""
    own = job.get("runtimeLimit")
    if positive_int(own):
        return format_duration(own)
    return _per_task({t.get("runtimeLimitS") for t in tasks}, format_duration)


def memory_request(tasks: list[dict[str, Any]]) -> str | None:
    """What a job's tasks ask of each node's memory (``minMemoryMb``; ``tasks``: a first page
    of them), None if none asks; tasks that differ show each size."""
    return _per_task({t.get("minMemoryMb") for t in tasks}, shown, alone=" per node")


def _per_task(values: set[Any], form: Callable[[int], str], *, alone: str = "") -> str | None:
    """What the tasks set (``values``: theirs, distinct), None if none sets it: one value as
    ``form`` words it (and ``alone``), else ``per task: A, B, ..., none``."""
    given = sorted(v for v in values if positive_int(v))
    if not given:
        return None
    if len(values) == 1:
        return form(given[0]) + alone
    forms = [form(v) for v in given[:4]] + (["..."] if len(given) > 4 else [])
    return "per task: " + ", ".join(forms + (["none"] if len(given) < len(values) else []))


def positive_int(value: Any) -> TypeGuard[int]:
    """A set limit in whole seconds (JSON's true is no number here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def job_detail(
    job: Mapping[str, Any],
    *,
    limit: str | None = None,
    memory: str | None = None,
    failure: str | None = None,
) -> RenderableType:
    """One job; ``limit`` is its runtime limit as :func:`runtime_limit` words it, ``memory``
    its tasks' request as :func:`memory_request` does, ``failure`` its first failed task as
    :func:`first_failure` does (None: no row)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, Any]] = [
        ("ID", dash(job.get("id"))),
        ("Name", dash(job.get("name"))),
        ("Owner", dash(job.get("owner"))),
        ("State", state(job.get("state"))),
        ("Priority", priority(job.get("priority"))),
        ("Node groups", dash(job.get("nodeGroups")) if job.get("nodeGroups") else "any"),
        ("Tasks", f"{progress(job)} ended"),
        ("Task states", counts_text(job.get("taskCounts"))),
        *([("Runtime limit", limit)] if limit else []),
        *([("Min memory", memory)] if memory else []),
        *_settings(job),
        ("Submitted", when(job.get("submitTime"))),
        ("Started", when(job.get("startTime"))),
        ("Ended", when(job.get("endTime"))),
    ]
    if job.get("pendingReason"):
        waiting = local_times(strip_controls(str(job["pendingReason"])))
        rows.append(("Waiting", Text(waiting, style="yellow")))
    if job.get("error"):
        # The one multi-line cell: an error's lines stay lines, cleaned of escapes.
        rows.append(("Error", Text(strip_controls(str(job["error"])), style="red")))
    if failure:
        rows.append(("First failure", Text(strip_controls(failure), style="red")))
    for label, value in rows:
        table.add_row(label, *cells(value))
    return Group(table)


def first_failure(task: Mapping[str, Any]) -> str:
    """``task 39.1: working directory ... does not exist``: why a failed job's first failed
    task failed, so its view says it (a probe needed hpc task list for every failure)."""
    why = task.get("error") or f"exit code {dash(task.get('exitCode'))}"
    return f"task {dash(task.get('jobId'))}.{dash(task.get('id'))}: {why}"


def _settings(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The job's rows for what its spec or template set: only those set (a probe found the
    view showed none of them, so a held or dependent job's view did not say why it waits)."""
    rows: list[tuple[str, str]] = []
    if job.get("template"):
        rows.append(("Template", dash(job["template"])))
    if job.get("exclusive") is True:
        rows.append(("Exclusive", "job: no other job's task on its nodes"))
    if job.get("maxConcurrent") is not None:
        rows.append(("Max concurrent", dash(job["maxConcurrent"])))
    if job.get("maxRetries") is not None:
        rows.append(("Max retries", dash(job["maxRetries"])))
    if positive_int(job.get("jobRuntimeLimit")):
        rows.append(
            ("Job runtime limit", f"{format_duration(job['jobRuntimeLimit'])} from its start")
        )
    if job.get("dependsOn"):
        anyway = " (runs even if they do not finish)" if job.get("runDependentsOnFailure") else ""
        jobs = "jobs" if isinstance(job["dependsOn"], list) and len(job["dependsOn"]) > 1 else "job"
        rows.append(("Depends on", f"{jobs} {dash(job['dependsOn'])}{anyway}"))
    elif job.get("runDependentsOnFailure"):
        rows.append(("Run dependents", "even on failure"))
    if job.get("validExitCodes"):
        rows.append(("Valid exit codes", dash(job["validExitCodes"])))
    if job.get("held"):
        rows.append(("Held", f"yes (hpc job release {dash(job.get('id'))})"))
    if job.get("holdUntil"):
        rows.append(("Hold until", when_and_utc(job["holdUntil"])))
    return rows


def left_canceled(
    answer: Mapping[str, Any], job_id: Any, *, besides: Sequence[int] = ()
) -> str | None:
    """What a requeue's answer says of the jobs canceled because job ``job_id`` did not
    finish (``dependentJobsCanceled``), which it leaves Canceled: which, and how to requeue
    them (in that order, a prerequisite first), but for those in ``besides`` (the same
    command requeues them). None: there are none."""
    left = [i for i in answer.get("dependentJobsCanceled") or [] if i not in besides]
    ids = [one_line(i) for i in left]
    if not ids:
        return None
    job = one_line(job_id)
    if len(ids) == 1:
        return (
            f"job {ids[0]}, canceled because job {job} did not finish, stays Canceled: "
            f"requeue it too: hpc job requeue {ids[0]}"
        )
    return (
        f"jobs {', '.join(ids)}, canceled because job {job} did not finish, stay Canceled: "
        f"requeue them too, in this order: hpc job requeue {' '.join(ids)}"
    )
