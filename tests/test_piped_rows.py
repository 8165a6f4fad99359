"""Piped, a table's row is one line whatever its width (``sinfo -h``'s rule): a probe's
``hpc node list --noheader | awk '{print $1,$3}'`` read a long reason's second line as a
node ("can on")."""

from __future__ import annotations

import io

from hpc.common import stdout_console
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
