"""Piped, a table's row is one line whatever its width (``sinfo -h``'s rule): a probe's
``hpc node list --noheader | awk '{print $1,$3}'`` read a long reason's second line as a
node ("can on")."""

from __future__ import annotations

import io

import pytest

from hpc.common import stderr_console, stdout_console
from hpc.render_nodes import nodes_table
from hpc.render_tasks import tasks_table

REASON = "drained by admin: " + "bad DIMM in slot 4, see ticket 77; " * 12


def test_a_piped_node_list_keeps_each_node_on_one_line() -> None:
    console = stdout_console()  # pytest's captured stdout is not a terminal
    console.file = out = io.StringIO()
    nodes = [
        {
            "name": f"onprem-{i}",
            "groups": ["OnPremNodes"],
            "state": "Drained",
            "stateReason": REASON,
        }
        for i in (1, 2)
    ]
    console.print(nodes_table(nodes, header=False))
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["onprem-1", "onprem-2"]
    assert all(line.rstrip().endswith("ticket 77;") for line in lines)


def test_a_piped_task_list_shows_the_whole_last_line_of_output() -> None:
    console = stdout_console()
    console.file = out = io.StringIO()
    console.print(tasks_table([{"id": 1, "state": "Failed", "error": REASON}], header=False))
    [line] = out.getvalue().splitlines()
    assert line.rstrip().endswith("ticket 77;")


def test_a_piped_view_has_no_padding_and_a_redirected_message_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A probe: piped `hpc job view` lines were all 391 characters (the grid's last cell padded
    to its longest), and `2>f` cut a 140-character message in three."""
    console = stdout_console()
    console.print(nodes_table([{"name": "a", "stateReason": REASON}, {"name": "b"}]))
    console.file.flush()
    stderr_console().print("word " * 60, soft_wrap=False)
    out, err = capsys.readouterr()
    assert [line for line in out.splitlines() if line != line.rstrip(" ")] == []
    assert out.splitlines()[-1].startswith("b")
    assert len(err.splitlines()) == 1
