"""Making text that came from users or tasks safe to print in a terminal.

Job names, commands, task output, errors, node and group names all pass
through the CLI's Rich output. Printed as Rich *markup*, a name like
``[bold]x[/]`` is swallowed and one like ``x[/]`` raises a MarkupError that
breaks ``hpc job list`` for everyone; printed raw, an ANSI escape in a task's
output can recolour, retitle or rewrite the user's terminal. So:

- :func:`cell` turns such a value into a :class:`rich.text.Text` (never parsed
  as markup) with escape sequences and control characters removed;
- :func:`safe` does the same for a value placed inside a markup string;
- :func:`for_terminal` cleans a task's whole output for a terminal, keeping
  its newlines and tabs.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape
from rich.text import Text

_ESCAPE_SEQUENCE = re.compile(
    r"""
      \x1b\[[0-?]*[ -/]*[@-~]                             # CSI: colours, cursor moves
    | \x9b[0-?]*[ -/]*[@-~]                               # CSI, 8-bit form
    | (?:\x1b[]PX^_]|[\x90\x98\x9d\x9e\x9f])              # OSC, DCS, SOS, PM, APC ...
      [^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)                # ... up to BEL or ST
    | \x1b[ -/]*[0-~]                                     # any other escape (ESC c, ESC ( B)
    """,
    re.VERBOSE,
)
"""ANSI / VT escape sequences (ECMA-48), 7- and 8-bit forms."""

_CONTROL = re.compile(r"\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""C0 and C1 control characters and DEL, except tab, newline and the CR of CRLF."""

_LINE_BREAKS = re.compile(r"[\t\n\r]+")


def strip_controls(text: str) -> str:
    """``text`` without escape sequences or control characters other than ``\\t``, ``\\n``, CRLF."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def one_line(value: Any) -> str:
    """``str(value)`` cleaned by :func:`strip_controls`, tabs and line breaks made spaces."""
    return _LINE_BREAKS.sub(" ", strip_controls(str(value)))


def cell(value: Any, style: str = "") -> Text:
    """A one-line table cell showing ``value`` literally: no markup, no control characters."""
    return Text(one_line(value), style=style)


def safe(value: Any) -> str:
    """``value`` as one clean line, escaped for use inside a Rich markup string."""
    return escape(one_line(value))


def for_terminal(text: str) -> str:
    """A task's output for a terminal: escape sequences and controls but tab/newline removed."""
    return strip_controls(text)
