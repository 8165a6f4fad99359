"""A Rich table as the lines it prints on a pipe, without Rich: ``hpc task list --all`` of a
30,000-task sweep took 23 s, 19 s of it in Rich laying out rows one by one (a probe). On a
pipe nothing wraps and nothing is styled (hpc.common's console), so a table is each column's
cells justified to the widest (at least its ``min_width``), two spaces apart, lines
unpadded: the same bytes Rich writes there (``tests/test_plaintable.py`` compares them)."""

from __future__ import annotations

import sys

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from hpc.common import stdout_console


def plain_lines(table: Table) -> list[str]:
    """The lines ``table`` prints on a pipe (hpc.common's console: no wrap, no padding)."""
    columns = table.columns
    texts = [[_plain(c) for c in column.cells] for column in columns]
    heads = [_plain(column.header) for column in columns]
    widths = [
        max(
            [
                column.min_width or 0,
                *(cell_len(t) for t in col),
                cell_len(head) if table.show_header else 0,
            ]
        )
        for column, col, head in zip(columns, texts, heads, strict=True)
    ]
    rows = list(zip(*texts, strict=True)) if texts else []
    if table.show_header:
        rows.insert(0, tuple(heads))
    out = []
    for row in rows:
        parts = [
            _justify(text, width, column.justify)
            for text, width, column in zip(row, widths, columns, strict=True)
        ]
        out.append("  ".join(parts).rstrip(" "))
    return out


def _plain(value: object) -> str:
    return value.plain if isinstance(value, Text) else str(value)


def _justify(text: str, width: int, how: str | None) -> str:
    pad = " " * max(0, width - cell_len(text))
    if how == "right":
        return pad + text
    if how == "center":
        half = len(pad) // 2
        return pad[:half] + text + pad[half:]
    return text + pad


def print_table(table: Table) -> None:
    """``table`` on stdout: Rich on a terminal (colours, wrapping to its width); its plain
    lines, written at once, on a pipe or file."""
    console = stdout_console()
    if console.is_terminal:
        console.print(table)
    else:
        write_lines(plain_lines(table))


def print_lines(lines: list[str]) -> None:
    """Lines on stdout, fast when piped (``hpc task cancel``'s: rich's print of 10,000
    lines takes 3.6 s)."""
    console = stdout_console()
    if lines and console.is_terminal:
        console.print("\n".join(lines), markup=False)
    else:
        write_lines(lines)


def write_lines(lines: list[str]) -> None:
    """Lines on a pipe or file as the bytes Rich would write there (one each, unpadded)."""
    if lines:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()
