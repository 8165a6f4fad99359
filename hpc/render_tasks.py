"""Tasks as ``hpc task list`` shows them (a table, page by page) and one task as ``hpc task
view`` does: its state and why, its command as run, its settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hpc.render import cells, dash, local_times, memory, positive_int, state, when
from hpc.text import cell, strip_controls
from shared.domain.durations import format_duration
from shared.domain.specvalues import sweep_command


def task_detail(task: Mapping[str, Any]) -> RenderableType:
    """One task: where and how it ran, or why it waits."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    limit, asked = task.get("runtimeLimitS"), task.get("minMemoryMb")
    rows: list[tuple[str, Any]] = [
        ("Task", f"{dash(task.get('jobId'))}.{dash(task.get('id'))}"),
        ("Name", dash(task.get("name"))),
        ("State", state(task.get("state"))),
        *_command(task),
        *_cores(task),
        *([("Min memory", f"{memory(asked)} per node")] if positive_int(asked) else []),
        ("Runtime limit", format_duration(limit) if limit else "none"),
        *_task_settings(task),
        ("Attempt", dash(task.get("attempt"))),
        ("Exit code", dash(task.get("exitCode"))),
        ("Submitted", when(task.get("submitTime"))),
        ("Started", when(task.get("startTime"))),
        ("Ended", when(task.get("endTime"))),
    ]
    if task.get("pendingReason"):
        waiting = local_times(strip_controls(str(task["pendingReason"])))
        rows.append(("Waiting", Text(waiting, style="yellow")))
    if task.get("error"):  # a queued task's is its last attempt's, not why it waits now
        label = "Last attempt" if task.get("state") == "Queued" else "Error"
        rows.append((label, Text(strip_controls(str(task["error"])), style="red")))
    for label, value in rows:
        table.add_row(label, *cells(value))
    return Group(table)


def _cores(task: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The cores it asked for and, once placed, those it was granted: a probe's ``--cores 1-2``
    task ran on 2 and an ``--exclusive`` one on the whole node while the view said ``Cores 1``."""
    low, high, nodes = task.get("cores"), task.get("maxCores"), task.get("nodes")
    asked = f"{dash(low)}-{high}" if isinstance(high, int) and high != low else dash(low)
    if isinstance(nodes, int) and nodes > 1:
        asked += " per node"
    rows = [("Cores", asked)]
    hosts = task.get("hosts")
    grants = (
        {h.get("cores") for h in hosts if isinstance(h, dict)} if isinstance(hosts, list) else set()
    )
    if len(grants) == 1 and isinstance(granted := next(iter(grants)), int):
        each = f"{granted} per node" if isinstance(nodes, int) and nodes > 1 else str(granted)
        if each != asked:  # a multi-node task's too (a probe's read the ask, "1-2 per node")
            rows = [("Cores", f"{each} (asked {asked})")]
    if task.get("exclusive") is True:
        rows.append(("Exclusive", "task: runs alone on its node(s), holding all their cores"))
    if task.get("validExitCodes"):
        rows.append(("Valid exit codes", dash(task["validExitCodes"])))
    return rows


def _command(task: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What a task runs: a sweep step's command with its index in place of each ``*`` (what
    its agent is sent), and the command as submitted when that differs (a probe saw only the
    template, ``echo *``)."""
    command, index = task.get("command"), task.get("sweepIndex")
    if not isinstance(command, str) or not isinstance(index, int):
        return [("Command", dash(command))]
    runs = sweep_command(command, index)
    return [("Command", runs)] + ([("As submitted", command)] if runs != command else [])


def task_name(task: Mapping[str, Any]) -> str:
    """A task's name as lists show it: a named sweep's steps share their name (dependsOn
    names it), so each is shown with its index, ``work[6]``, as unnamed ones are."""
    name, index = dash(task.get("name")), task.get("sweepIndex")
    if isinstance(index, int) and not name.endswith(f"[{index}]"):
        return f"{name}[{index}]"
    return name


def _task_settings(task: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Its sweep index, the tasks it waits for, and where it runs: every node a multi-node
    task holds, with its cores (a probe saw only the first node of a 2-node task and none of
    its dependsOn; HPC Pack's task view shows both)."""
    rows: list[tuple[str, str]] = []
    if isinstance(task.get("sweepIndex"), int):
        rows.append(("Sweep index", dash(task["sweepIndex"])))
    if task.get("dependsOn"):
        rows.append(("Depends on", dash(task["dependsOn"])))
    hosts = task.get("hosts")
    if isinstance(hosts, list) and len(hosts) > 1:
        shown = [f"{h.get('node')}:{h.get('cores')}" for h in hosts if isinstance(h, dict)]
        rows.append(("Nodes", dash(shown)))
    else:
        rows.append(("Node", dash(task.get("node"))))
    return rows


def tasks_table(
    tasks: list[dict[str, Any]], *, header: bool = True, widths: Sequence[int] = ()
) -> Table:
    """One row a task; the last column is the last line of its output (or its error).
    A later page of ``hpc task list --all`` comes without ``header`` and at least the
    ``widths`` of the first (:func:`hpc.render.widths_of`), so the pages read as one table."""
    table = Table(box=None, header_style="bold", pad_edge=False, show_header=header)
    for k, column in enumerate(("ID", "Name", "State", "Node", "Exit", "Attempt", "Output")):
        table.add_column(
            column,
            justify="right" if column in ("ID", "Exit", "Attempt") else "left",
            no_wrap=column != "Output",
            min_width=widths[k] if k < len(widths) else None,
        )
    # The output column is the one that gives way: a wrapping column to Rich's width sums (so
    # it shrinks first), its text one line cut with an ellipsis. With every column no_wrap and
    # it taking the rest (ratio), a long error squeezed ID and Exit out (a probe).
    table.columns[-1].overflow = "ellipsis"
    for task in tasks:
        output = strip_controls(str(task.get("error") or task.get("output") or "")).strip()
        last = cell(output.splitlines()[-1] if output else "-")
        last.no_wrap, last.overflow = True, "ellipsis"
        table.add_row(
            *cells(
                dash(task.get("id")),
                task_name(task),
                state(task.get("state")),
                dash(task.get("node")),
                dash(task.get("exitCode")),
                dash(task.get("attempt")),
                last,
            )
        )
    return table
