"""When a job may start, as ``hpc job submit --begin`` and ``hpc job hold --until`` take it:
an ISO 8601 time (local if no zone), Slurm's ``now+DURATION`` and ``now+2hours``, its
``HH:MM[:SS]`` and ``tomorrow``; a time in the past refused in the flag's words. Each
``parse_*`` raises ``ValueError`` with a message naming what it takes. (Out of hpc/spec.py,
which makes the rest of the spec.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from shared.domain.durations import MAX_LIMIT_S, parse_duration
from shared.domain.specvalues import NotATime, iso_time, quoted


def parse_time(text: str) -> str:
    """An ISO 8601 time, checked by the server's own rule (what it reads, 1970 to 9999): one
    with a zone (``Z``, ``+01:00``) sent as given, one without taken as this machine's local
    time, as Slurm's ``--begin`` takes it and as the CLI shows times (a probe in Tokyo typed
    its wall clock and the job started 9 hours late: the API reads a time without a zone as
    UTC), and sent with its offset."""
    iso_time(text)  # ValueError saying what is wrong
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is not None:
        return text.strip()
    local = moment.astimezone()  # a naive time, read as local
    iso_time(local)  # its UTC may fall outside 1970-9999 at the edges
    return local.isoformat()


_SLURM_UNIT = re.compile(
    r"([0-9]{1,7}) *(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?|w|weeks?)"
)
"""Slurm's ``now+count[units]`` for --begin (sbatch: seconds, minutes, hours, days, weeks)."""
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _not_past(text: str, iso: str, now: datetime | None) -> str:
    """``iso`` (what ``text`` came to) if it is ahead; a past time is refused in the flag's
    words before anything is sent (a probe read the API's "holdUntil ... is in the past" of
    its ``--begin 2020-01-01``)."""
    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if at <= (now or datetime.now(UTC)):
        raise ValueError(
            f"{quoted(text)} is {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, in the past: "
            "give a later time"
        )
    return iso


def parse_begin(text: str, *, now: datetime | None = None) -> str:
    """``--begin``: an ISO 8601 time (local if no zone: :func:`parse_time`), Slurm's relative
    ``now+DURATION`` (``now+90`` is 90 s, ``now+1:00:00`` an hour), or its ``HH:MM[:SS]``
    (the next such local time: today, or tomorrow once it has passed) and ``tomorrow``
    (local midnight), sent as the UTC time it comes to, since the spec's ``holdUntil`` is a
    time. (A probe's ``--begin 23:59`` and ``tomorrow`` were refused.)"""
    word = text.strip().lower()
    clock = _CLOCK.fullmatch(word)
    if clock or word == "tomorrow":
        local = (now or datetime.now(UTC)).astimezone()
        if clock:
            hour, minute, second = (int(g or 0) for g in clock.groups())
            if hour > 23 or minute > 59 or second > 59:
                raise ValueError(
                    f"{quoted(text)} is not a time of day: give HH:MM[:SS], e.g. 23:59"
                )
            at = local.replace(hour=hour, minute=minute, second=second, microsecond=0)
            at += timedelta(days=1) if at <= local else timedelta(0)
        else:
            at = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if word == "now":
        raise ValueError(
            "'now' is when a job may start anyway: leave --begin out, or give now+DURATION"
        )
    head, plus, tail = text.strip().partition("+")
    if head.strip().lower() != "now" or not plus:
        try:
            return _not_past(text, parse_time(text), now)
        except NotATime:
            raise ValueError(
                f"{quoted(text)} is not a time: give an ISO 8601 one (2026-12-01T14:00, local "
                "if no zone), HH:MM[:SS] (the next such time), tomorrow, or now+DURATION "
                "(now+1:00:00)"
            ) from None
    unit = _SLURM_UNIT.fullmatch(tail.strip().lower())
    try:
        if unit:  # Slurm's now+1hour, now+2days, now+30minutes, now+1week
            seconds = int(unit.group(1)) * _UNIT_S[unit.group(2)[0]]
            if not 1 <= seconds <= MAX_LIMIT_S:  # as parse_duration bounds a duration
                raise ValueError(f"{tail.strip()} is not from 1 second to 366 days")
        else:
            seconds = parse_duration(tail.strip())
    except ValueError as e:
        raise ValueError(
            f"{quoted(text)}: after now+ comes a duration: {e}, or a count and unit as "
            "Slurm's now+1hour, now+2days"
        ) from None
    moment = (now or datetime.now(UTC)) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
"""Slurm's ``--begin HH:MM[:SS]``."""
