"""How long ``hpc task list --all`` takes to lay out its rows, piped, by how many: Rich's
table against hpc/plaintable.py's plain lines (the same bytes; a probe's 30,000-task list
took 23 s, 19 s of it in Rich). Prints seconds for each, and the speed-up.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402

from hpc.common import PIPED_WIDTH  # noqa: E402
from hpc.plaintable import plain_lines  # noqa: E402
from hpc.render_tasks import tasks_table  # noqa: E402

PAGE = 1000  # what the API answers a page: the CLI lays out a table a page


def page(first: int) -> list[dict]:
    return [
        {"id": i, "name": f"sweep[{i}]", "state": "Finished", "node": f"azure-{i % 40}",
         "exitCode": 0, "attempt": 0, "output": f"case {i} done"}
        for i in range(first, first + PAGE)
    ]  # fmt: skip


def rich_time(pages: list[list[dict]]) -> float:
    start = time.perf_counter()
    for tasks in pages:
        console = Console(file=io.StringIO(), width=PIPED_WIDTH, color_system=None)
        console.print(tasks_table(tasks))
    return time.perf_counter() - start


def plain_time(pages: list[list[dict]]) -> float:
    start = time.perf_counter()
    for tasks in pages:
        "".join(f"{line}\n" for line in plain_lines(tasks_table(tasks)))
    return time.perf_counter() - start


def main() -> None:
    print("tasks   rich s   plain s   speed-up")
    for count in (1_000, 10_000, 30_000):
        pages = [page(first) for first in range(1, count + 1, PAGE)]
        slow, fast = rich_time(pages), plain_time(pages)
        print(f"{count:>6}  {slow:>7.2f}  {fast:>8.2f}  {slow / fast:>8.1f}x")


if __name__ == "__main__":
    main()
