"""`hpc job view`'s hold end beside its UTC time where the local zone is not UTC: the pending
reason says "held until 2026-12-02 14:00:00 UTC", and a probe in Tokyo read "Hold until
23:00:00" beside it as another time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from hpc.render import when_and_utc

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.undo()
    time.tzset()


def in_zone(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("TZ", name)
    time.tzset()


def test_tokyo_says_both(monkeypatch: pytest.MonkeyPatch, zone: None) -> None:
    in_zone(monkeypatch, "Asia/Tokyo")
    shown = when_and_utc("2026-12-02T14:00:00+00:00", now=NOW)
    assert shown == "23:00:00 (2026-12-02 14:00:00 UTC)"


def test_utc_says_one(monkeypatch: pytest.MonkeyPatch, zone: None) -> None:
    in_zone(monkeypatch, "UTC")
    assert when_and_utc("2026-12-02T14:00:00+00:00", now=NOW) == "14:00:00"
