"""``hpc task view``'s cores: what the task asked for and, once placed, what it was granted
(a probe's ``--cores 1-2`` task ran on 2 cores and an ``--exclusive`` one on its whole node
while the view said ``Cores 1``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rich.console import Console

from hpc.render_tasks import task_detail
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures


def shown(task: dict[str, Any]) -> dict[str, str]:
    console = Console(width=200, record=True, color_system=None)
    console.print(task_detail({"jobId": 1, "id": 1, "state": "Running", **task}))
    rows = [
        re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in console.export_text().splitlines()
    ]
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows if row[0]}


@pytest.mark.parametrize(
    ("task", "cores"),
    [
        ({"cores": 1}, "1"),  # queued: what it asks
        ({"cores": 1, "maxCores": 2}, "1-2"),
        ({"cores": 1, "maxCores": 2, "hosts": [{"node": "n1", "cores": 2}]}, "2 (asked 1-2)"),
        ({"cores": 1, "exclusive": True, "hosts": [{"node": "n1", "cores": 4}]}, "4 (asked 1)"),
        ({"cores": 2, "hosts": [{"node": "n1", "cores": 2}]}, "2"),  # granted as asked
        ({"cores": 4, "nodes": 2, "hosts": [{"node": "a", "cores": 4}, {"node": "b", "cores": 4}]},
         "4 per node"),
        ({"cores": 1, "maxCores": 2, "nodes": 2,
          "hosts": [{"node": "a", "cores": 2}, {"node": "b", "cores": 2}]},
         "2 per node (asked 1-2 per node)"),
    ],
)  # fmt: skip
def test_the_view_says_the_cores_granted_beside_those_asked(
    task: dict[str, Any], cores: str
) -> None:
    assert shown(task)["Cores"] == cores


def test_exclusive_and_valid_exit_codes_are_shown() -> None:
    rows = shown({"cores": 1, "exclusive": True, "validExitCodes": [0, 3]})
    assert rows["Exclusive"].startswith("task: runs alone")
    assert rows["Valid exit codes"] == "0, 3"
    assert "Exclusive" not in shown({"cores": 1})


def test_the_api_tells_the_grant_the_view_reads(cp) -> None:  # noqa: F811
    register(cp, "n1", cores=2)
    cp.submit({"command": "x", "cores": {"min": 1, "max": 2}})
    cp.schedule_pass()
    body = cp.get_task(1, 1).model_dump(by_alias=True, mode="json")
    assert (body["cores"], body["maxCores"]) == (1, 2)
    assert [(h["node"], h["cores"]) for h in body["hosts"]] == [("n1", 2)]
    assert shown(body)["Cores"] == "2 (asked 1-2)"
