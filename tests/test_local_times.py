"""Reasons' UTC times read in the local zone (hpc.render.local_times): a probe in Tokyo typed
``--begin 2026-12-04T09:00`` and read ``held until 2026-12-04 00:00:00 UTC`` beside a local
submit time."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from hpc.render import local_times

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def zone(request: pytest.FixtureRequest) -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.parametrize(
    ("zone", "said", "read"),
    [
        ("Asia/Tokyo", "held until 2026-12-04 00:00:00 UTC",
         "held until 2026-12-04 09:00:00 JST (2026-12-04 00:00:00 UTC)"),
        ("Asia/Tokyo", "reserved, projected at 14:05:00 UTC; more",
         "reserved, projected at 23:05:00 JST (14:05:00 UTC); more"),
        ("UTC", "held until 2026-12-04 00:00:00 UTC", "held until 2026-12-04 00:00:00 UTC"),
        ("Asia/Tokyo", "waiting for 8 free cores", "waiting for 8 free cores"),
    ],
    indirect=["zone"],
)  # fmt: skip
def test_a_reasons_utc_times_read_in_the_local_zone(zone: None, said: str, read: str) -> None:
    assert local_times(said, now=NOW) == read
