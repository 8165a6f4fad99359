"""Runtime limits as users write them: Slurm's ``[[D:]H:]M:S``, its ``D-H[:M[:S]]`` (or
plain seconds), and back."""

from __future__ import annotations

import re

MAX_LIMIT_S = 366 * 86400

FORMS = "[[D:]H:]M:S, D-H[:M[:S]], seconds or 2h, 30m, 1h30m"
"""The forms :func:`parse_duration` takes, as its errors and the CLI's help name them."""

_DIGITS = re.compile(r"[0-9]{1,12}")
"""ASCII digits only (``str.isdigit`` takes ``²``), and few enough that ``int`` never meets
Python's limit on long numbers' digits: 12 already make far more than 366 days."""


_UNITS = re.compile(r"(?:([0-9]{1,6})d)?(?:([0-9]{1,7})h)?(?:([0-9]{1,9})m)?(?:([0-9]{1,12})s)?")
"""Durations with units, largest first (``1d12h``, ``2h``, ``90m``, ``1h30m``, ``45s``): a
probe's ``--runtime-limit 2h`` was refused while ``--begin now+2hours`` was taken."""


def parse_duration(text: str) -> int:
    """``90``, ``1:30``, ``2:00:00`` or ``1:02:00:00`` (D:H:M:S) as seconds (at least 1).

    Also Slurm's ``--time`` forms with days, ``D-H``, ``D-H:M`` and ``D-H:M:S``, because
    :func:`format_duration` shows a limit of a day or more as ``1-00:00:00``: what the CLI
    prints must be something it takes back. (A bare number stays seconds, not Slurm's
    minutes, as it always was here.) And units, largest first: ``2h``, ``90m``, ``1h30m``,
    ``1d12h``, ``45s``."""
    units_given = _UNITS.fullmatch(text.strip().lower())
    if units_given and any(units_given.groups()):  # 2h, 30m, 1h30m, 1d12h, 45s
        seconds = sum(
            int(n) * u for n, u in zip(units_given.groups(), (86400, 3600, 60, 1), strict=True) if n
        )
        if not 1 <= seconds <= MAX_LIMIT_S:
            raise ValueError(f"a duration of {text!r}: give one from 1 second to 366 days")
        return seconds
    days, dash, rest = text.strip().partition("-")
    if dash:
        parts = rest.split(":")
        units: tuple[int, ...] = (3600, 60, 1)[: len(parts)]  # D-H, D-H:M, D-H:M:S
        ok = len(parts) <= 3 and _DIGITS.fullmatch(days) is not None
    else:
        parts = days.split(":")
        units = (86400, 3600, 60, 1)[4 - len(parts) :] if len(parts) <= 4 else ()
        ok, days = 1 <= len(parts) <= 4, "0"
    if ok and any(p.isascii() and p.isdigit() and len(p.lstrip("0")) > 12 for p in parts):
        raise ValueError(f"a duration of {text!r}: give one from 1 second to 366 days")
    if not ok or not all(_DIGITS.fullmatch(p) for p in parts):
        raise ValueError(f"{text!r} is not {FORMS}, e.g. 2:00:00, 1-12:00:00 or 90")
    # the leading part may be any size (90:00 is 90 minutes); each later one is a clock
    # field: 1:99 is a typo, not 0:02:39
    lead = 0 if dash else 1
    for part, unit in list(zip(parts, units, strict=True))[lead:]:
        top = 24 if unit == 3600 else 60
        if int(part) >= top:
            name = {3600: "hours", 60: "minutes", 1: "seconds"}[unit]
            raise ValueError(
                f"{text!r}: {name} must be below {top} after the first field "
                f"({FORMS}, e.g. 2:00:00, 1-12:00:00 or 90)"
            )
    seconds = int(days) * 86400 + sum(int(p) * u for p, u in zip(parts, units, strict=True))
    if not 1 <= seconds <= MAX_LIMIT_S:
        raise ValueError(f"a duration of {text!r}: give one from 1 second to 366 days")
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
