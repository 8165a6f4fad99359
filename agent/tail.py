"""The tail of a task's stdout that its end carries (TaskEnded.output): what ``hpc task view``
shows at once, before or without the whole output. Read by the agent as a task ends, and by
its lifeline when it reports an end for a silent agent (agent/lifeline_reports.py)."""

from __future__ import annotations

import os
from pathlib import Path

TAIL_CHARS = 4000
"""How much of the end of stdout travels in TaskEnded."""


def read_tail(path: Path, chars: int = TAIL_CHARS) -> str:
    """The last ``chars`` characters of a UTF-8 (or not) text file; empty if there is none."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 4 * chars))  # 4 bytes is the longest UTF-8 character
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")[-chars:]
