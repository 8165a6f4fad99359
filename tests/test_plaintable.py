"""hpc.plaintable writes on a pipe the bytes Rich writes there (hpc.common's console: no
wrap, lines unpadded), for tables of every shape the CLI prints, wide characters too."""

from __future__ import annotations

import io
import random

import pytest
from rich.console import Console
from rich.table import Table

from hpc.common import PIPED_WIDTH
from hpc.plaintable import plain_lines
from hpc.render import jobs_table
from hpc.render_tasks import tasks_table


def rich_lines(table: Table) -> list[str]:
    buf = io.StringIO()
    Console(file=buf, width=PIPED_WIDTH, color_system=None, force_terminal=False).print(table)
    return [line.rstrip(" ") for line in buf.getvalue().split("\n")[:-1]]


WORDS = ["x", "sweep[12]", "日本語のジョブ", "naïve", "é", "", "a b  c", "1234567890" * 3, "🙂ok"]


def task(rng: random.Random, i: int) -> dict:
    return {
        "id": i,
        "name": rng.choice(WORDS) or None,
        "state": rng.choice(["Queued", "Running", "Finished", "Failed"]),
        "node": rng.choice([None, "onprem-1", "azure-12"]),
        "exitCode": rng.choice([None, 0, 3, -9]),
        "attempt": rng.randint(0, 12),
        "output": rng.choice([None, "done", "line one\nline two", "出力"]),
        "error": rng.choice([None, None, "exit code 3 is not 0 (validExitCodes)"]),
    }


@pytest.mark.parametrize("seed", range(20))
def test_a_task_table_is_as_rich_prints_it_on_a_pipe(seed: int) -> None:
    rng = random.Random(seed)
    tasks = [task(rng, i) for i in range(1, rng.randint(1, 40))]
    header = rng.random() < 0.5
    widths = [rng.randint(1, 12) for _ in range(6)] if rng.random() < 0.5 else []
    table = tasks_table(tasks, header=header, widths=widths)
    assert plain_lines(tasks_table(tasks, header=header, widths=widths)) == rich_lines(table)


@pytest.mark.parametrize("seed", range(10))
def test_a_job_table_is_as_rich_prints_it_on_a_pipe(seed: int) -> None:
    rng = random.Random(seed)
    jobs = [
        {
            "id": i,
            "name": rng.choice(WORDS),
            "owner": rng.choice(["alice", "bob"]),
            "state": rng.choice(["Queued", "Running", "Finished"]),
            "priority": rng.choice([2000, 4000, 1234]),
            "taskCount": rng.randint(1, 5000),
            "taskCounts": {"Finished": rng.randint(0, 5)},
            "submitTime": "2026-12-03T12:00:00Z",
            "pendingReason": rng.choice([None, "held (hpc job release 3)"]),
        }
        for i in range(1, rng.randint(2, 30))
    ]
    header = rng.random() < 0.5
    assert plain_lines(jobs_table(jobs, header=header)) == rich_lines(
        jobs_table(jobs, header=header)
    )
