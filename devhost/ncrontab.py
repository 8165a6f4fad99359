"""Timer schedules as Functions writes them: NCRONTAB (six fields, seconds first) or a TimeSpan.

``"*/5 * * * * *"`` is every five seconds; ``"0 30 9 * * Mon-Fri"`` is 09:30:00
on weekdays; ``"00:05:00"`` is every five minutes. croniter puts an optional
seconds field *last*, so the seconds field is moved there before handing the
expression over. Times are UTC, the Functions default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from devhost.config import parse_timespan


@dataclass(frozen=True)
class Schedule:
    """When a timer fires; ``next_after`` is strictly after its argument."""

    expression: str
    _cron: str | None = None
    _interval: timedelta | None = None

    def next_after(self, moment: datetime) -> datetime:
        if self._interval is not None:
            return moment + self._interval
        assert self._cron is not None
        return croniter(self._cron, moment).get_next(datetime)


def parse_schedule(expression: str) -> Schedule:
    """Parse a schedule (``%Setting%`` already resolved); ValueError if it is not valid."""
    text = expression.strip()
    fields = text.split()
    if len(fields) == 1 and ":" in text:
        interval = timedelta(seconds=parse_timespan(text))
        if interval <= timedelta(0):
            raise ValueError(f"a TimeSpan schedule must be positive: {expression!r}")
        return Schedule(expression, _interval=interval)
    if len(fields) != 6:
        raise ValueError(
            f"NCRONTAB needs six fields, seconds first ('*/5 * * * * *'), got {expression!r}"
        )
    cron = " ".join(fields[1:] + fields[:1])
    if not croniter.is_valid(cron):
        raise ValueError(f"not a valid NCRONTAB expression: {expression!r}")
    return Schedule(expression, _cron=cron)
