"""Each command's summary in a group's help is whole, wrapped by the terminal's width only:
Typer's rich help kept the docstrings' line breaks there, so `hpc task --help` said "why it
waits if it" and "is queued" on two rows, and click's plain help (used since Rich's cut
option names at 80 columns) cuts a summary at the line's end unless it is the command's
short help (hpc/cli.py unwrap_summaries)."""

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
        assert words in " ".join(_entry(wide.output, name).split()), (name, wide.output)


def _entry(help_text: str, name: str) -> str:
    """A command's row in a group's help and the lines its summary wraps onto."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {name} "))
    rest = lines[start + 1 :]
    more = next((i for i, line in enumerate(rest) if not line.startswith("    ")), len(rest))
    return " ".join([lines[start], *rest[:more]])


@pytest.mark.parametrize("columns", ["80", "400"])
def test_the_task_views_summary_is_whole(columns: str) -> None:
    out = CliRunner().invoke(app, ["task", "--help"], env={"COLUMNS": columns}).output
    assert "and why it waits if it is queued." in " ".join(out.split())


@pytest.mark.parametrize("command", [["nodegroup", "set"], ["job", "submit"]])
def test_option_names_are_whole_at_80_columns(command: list[str]) -> None:
    """A probe's `hpc nodegroup set --help` read `--shrink-idle-ti…` (Rich's options table)."""
    out = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"}).output
    assert "…" not in out
    root: Any = get_command(app)
    for name in command:
        root = root.commands[name]
    for param in root.params:
        for opt in param.opts:
            if opt.startswith("--"):
                assert opt in out, opt
