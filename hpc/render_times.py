"""Times as the CLI shows them: API timestamps in this machine's zone (``when``, ``ago``),
and the UTC times the control plane writes into reasons read in it too (``local_times``).
Out of :mod:`hpc.render`, which re-exports them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (``2026-01-01T12:00:00.500000Z``) as an aware datetime (UTC if it
    names no zone); None if absent or not a time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def moment_of(value: Any) -> datetime | str:
    """An API timestamp as an aware datetime, or the text to show instead ("-" or as given)."""
    moment = parse_time(value)
    if moment is None:
        return value if isinstance(value, str) and value else "-"
    return moment


def when(value: Any, *, now: datetime | None = None) -> str:
    """An ISO timestamp as local ``HH:MM:SS`` (with the date unless it is today)."""
    moment = moment_of(value)
    if isinstance(moment, str):
        return moment
    local = moment.astimezone()
    today = (now or datetime.now(UTC)).astimezone().date()
    return local.strftime("%H:%M:%S" if local.date() == today else "%Y-%m-%d %H:%M:%S")


def when_and_utc(value: Any, *, now: datetime | None = None) -> str:
    """:func:`when`, and the UTC time beside it where the local zone is not UTC: the pending
    reason the control plane writes says a hold's end in UTC ("held until ... UTC"), and the
    two read as two times (a probe, in Tokyo)."""
    moment = moment_of(value)
    shown = when(value, now=now)
    if isinstance(moment, str) or not moment.astimezone().utcoffset():
        return shown
    return f"{shown} ({moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC)"


_UTC_IN_TEXT = re.compile(r"\b(?:(\d{4}-\d{2}-\d{2}) )?(\d{2}:\d{2}:\d{2}) UTC\b")


def local_times(text: str, *, now: datetime | None = None) -> str:
    """The UTC times the control plane writes into reasons (``held until 2026-12-04
    00:00:00 UTC``, ``projected at 14:05:00 UTC``) read in this machine's zone, as the views'
    other times are, with the UTC time kept beside them: a probe in Tokyo typed 09:00 and
    read 00:00 beside a local submit time. Unchanged where the local zone is UTC."""
    today = (now or datetime.now(UTC)).date()

    def local(m: re.Match[str]) -> str:
        day = date.fromisoformat(m[1]) if m[1] else today
        moment = datetime.combine(day, time.fromisoformat(m[2]), UTC)
        if not moment.astimezone().utcoffset():
            return m[0]
        shown = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z" if m[1] else "%H:%M:%S %Z")
        return f"{shown} ({m[0]})"

    return _UTC_IN_TEXT.sub(local, text)


def ago(value: Any, *, now: datetime | None = None) -> str:
    """An ISO timestamp as ``12s ago`` / ``5m ago`` / ``3h ago`` / ``4d ago``."""
    moment = moment_of(value)
    if isinstance(moment, str):
        return moment
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    if seconds < 172800:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"
