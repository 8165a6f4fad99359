"""Runtime limits as users write them: Slurm's ``[[D:]H:]M:S`` (or plain seconds), and back."""

from __future__ import annotations

MAX_LIMIT_S = 366 * 86400


def parse_duration(text: str) -> int:
    """``90``, ``1:30``, ``2:00:00`` or ``1:02:00:00`` (D:H:M:S) as seconds (at least 1)."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not [[D:]H:]M:S or seconds, e.g. 2:00:00 or 90")
    seconds = 0
    for part, unit in zip(reversed(parts), (1, 60, 3600, 86400), strict=False):
        seconds += int(part) * unit
    if not 1 <= seconds <= MAX_LIMIT_S:
        raise ValueError(f"runtime limit {text!r} must be between 1 second and 366 days")
    return seconds


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``D-HH:MM:SS`` from one day), as HPC users read limits."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}"
