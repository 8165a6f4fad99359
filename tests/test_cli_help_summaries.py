"""Each command's summary in a group's help is one sentence on one line: Typer's rich help
kept the docstrings' line breaks there, so `hpc task --help` said "why it waits if it" and
"is queued" on two rows (hpc/cli.py unwrap_summaries)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from hpc.cli import app


def _groups(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, sub in getattr(command, "commands", {}).items():
        if getattr(sub, "commands", None):
            out.append((*path, name))
            out += _groups(sub, (*path, name))
    return out


GROUPS = _groups(get_command(app))


def test_every_group_is_checked() -> None:
    assert {("job",), ("task",), ("node",), ("nodegroup",), ("autoscale",)} <= set(GROUPS)


@pytest.mark.parametrize("group", GROUPS, ids=" ".join)
def test_a_groups_help_lists_each_command_on_one_row(group: tuple[str, ...]) -> None:
    wide = CliRunner().invoke(app, [*group, "--help"], env={"COLUMNS": "400"})
    assert wide.exit_code == 0, wide.output
    root = get_command(app)
    command: Any = root
    for name in group:
        command = command.commands[name]
    for name, sub in command.commands.items():
        summary = (sub.help or "").split("\n\n")[0]
        words = " ".join(summary.split())
        if not words or sub.hidden:
            continue
        row = next(line for line in wide.output.splitlines() if line.startswith(f"│ {name} "))
        assert words in " ".join(row.split()), (name, row)


def test_the_task_views_summary_is_whole() -> None:
    out = CliRunner().invoke(app, ["task", "--help"], env={"COLUMNS": "400"}).output
    assert "and why it waits if it is queued." in out
