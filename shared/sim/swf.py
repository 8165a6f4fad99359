"""Standard Workload Format (Parallel Workloads Archive) traces: one job per line, 18 fields.

Fields used (1-based, as the SWF definition numbers them): 1 job id, 2 submit time,
4 run time, 5 allocated processors, 8 requested processors, 9 requested time, 12 user id.
A value of -1 means unknown; requested processors fall back to allocated ones and the
requested time to the run time. Jobs that never ran (run time or processors unknown or
zero) are skipped. Header lines start with ``;``. ``.gz`` files are read as gzip.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SwfJob:
    id: int
    submit: float
    run: float
    procs: int
    limit: float
    """Requested time (the user's runtime limit)."""
    user: int = -1
    """The submitting user's id (SWF field 12; -1: unknown)."""


class SwfError(ValueError):
    """A line that is not SWF, with its number."""


MAX_TIME_S = 1e10
"""Times (seconds) a trace may hold: about 300 years, beyond any log, within the clock's
range (the replay turns them into dates)."""


def read(path: Path) -> list[SwfJob]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:  # type: ignore[operator]
        return list(parse(f))


def parse(lines: Iterator[str] | list[str]) -> Iterator[SwfJob]:
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith(";"):
            continue
        fields = text.split()
        if len(fields) < 9:
            raise SwfError(f"line {number}: {len(fields)} fields, an SWF job line has 18")
        try:
            job_id, submit, run = int(fields[0]), float(fields[1]), float(fields[3])
            allocated, requested, limit = int(fields[4]), int(fields[7]), float(fields[8])
        except ValueError:
            raise SwfError(f"line {number}: not numbers: {text[:80]!r}") from None
        if not all(math.isfinite(x) and abs(x) <= MAX_TIME_S for x in (submit, run, limit)):
            raise SwfError(
                f"line {number}: times must be finite numbers of seconds up to "
                f"{MAX_TIME_S:.0e}: {text[:80]!r}"
            )
        procs = requested if requested > 0 else allocated
        if run <= 0 or procs <= 0:
            continue
        user = _user(fields)
        yield SwfJob(job_id, submit, run, procs, limit if limit > 0 else run, user)


def _user(fields: list[str]) -> int:
    """Field 12 (user id), or -1 where the line is shorter or the field is not a number."""
    if len(fields) < 12:
        return -1
    try:
        return int(fields[11])
    except ValueError:
        return -1
