"""Idempotency keys, the pure rule: given the stored record, the request and the clock, what to do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.idempotency import (
    BUSY_RETRY_S,
    KEY_TTL,
    LEASE,
    MAX_KEY_LENGTH,
    KeyRecord,
    Verdict,
    decide,
    fingerprint,
    key_problem,
    reservation,
    taken_over,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
FP = fingerprint("POST /api/jobs", {"command": "true"})
OTHER = fingerprint("POST /api/jobs", {"command": "false"})


def record(*, done: bool = False, job_id: int | None = None) -> KeyRecord:
    r = reservation("alice", "k1", "POST /api/jobs", FP, T0)
    r.job_id = job_id
    if done:
        r.status, r.body = 201, '{"id": 7}'
    return r


@pytest.mark.parametrize(
    ("stored", "request_fp", "now", "verdict"),
    [
        # never seen: reserve it
        (None, FP, T0, Verdict.RESERVE),
        # answered, same request: the stored answer again, at any time within 24 h
        (record(done=True), FP, T0 + SECOND, Verdict.REPLAY),
        (record(done=True), FP, T0 + KEY_TTL - SECOND, Verdict.REPLAY),
        # another request under the key: refused, answered or not, lease or not
        (record(done=True), OTHER, T0 + SECOND, Verdict.MISMATCH),
        (record(), OTHER, T0 + SECOND, Verdict.MISMATCH),
        (record(), OTHER, T0 + LEASE + SECOND, Verdict.MISMATCH),
        # reserved, not answered, within its lease: a concurrent duplicate waits
        (record(), FP, T0, Verdict.BUSY),
        (record(job_id=7), FP, T0 + LEASE - SECOND, Verdict.BUSY),
        # reserved, not answered, lease over: its request died; take it over
        (record(), FP, T0 + LEASE, Verdict.RECOVER),
        (record(job_id=7), FP, T0 + LEASE + SECOND, Verdict.RECOVER),
        # past 24 h: forgotten, whatever it held and whatever is asked now
        (record(done=True), FP, T0 + KEY_TTL, Verdict.RENEW),
        (record(done=True), OTHER, T0 + KEY_TTL, Verdict.RENEW),
        (record(job_id=7), FP, T0 + KEY_TTL + SECOND, Verdict.RENEW),
    ],
)
def test_decide(stored: KeyRecord | None, request_fp: str, now: datetime, verdict: Verdict) -> None:
    assert decide(stored, request_fp, now).verdict is verdict


def test_busy_says_when_the_lease_ends_in_whole_seconds_at_least_one() -> None:
    assert decide(record(), FP, T0).retry_after_s == BUSY_RETRY_S  # not the whole lease
    assert decide(record(), FP, T0 + LEASE - SECOND / 2).retry_after_s == 1


def test_a_take_over_keeps_the_job_id_and_the_24_h_and_renews_the_lease() -> None:
    old = record(job_id=7)
    later = T0 + LEASE * 3
    new = taken_over(old, later)
    assert (new.job_id, new.expires, new.reserved_at) == (7, old.expires, old.reserved_at)
    assert new.lease_until == later + LEASE
    assert decide(new, FP, later + SECOND).verdict is Verdict.BUSY


def test_the_fingerprint_is_of_the_route_and_the_canonical_body() -> None:
    a = fingerprint("POST /api/jobs", {"command": "true", "name": "a"})
    assert a == fingerprint("POST /api/jobs", {"name": "a", "command": "true"})
    assert a != fingerprint("POST /api/nodes", {"command": "true", "name": "a"})
    assert a != fingerprint("POST /api/jobs", {"command": "true", "name": "b"})


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "empty"),
        ("x" * (MAX_KEY_LENGTH + 1), "at most 255"),
        ("caf\u00e9", "a character outside ASCII:"),  # not quoted: it arrives as Latin-1
        ("a\tb", "holds '\\t'"),
        ("x1, x2", "comma"),  # two headers, joined by HTTP (a probe got key "x1,x2")
        ("a\x7fb", "printable ASCII"),
    ],
)
def test_bad_keys_are_refused_saying_what_to_send(key: str, problem: str) -> None:
    said = key_problem(key)
    assert said is not None and problem in said


@pytest.mark.parametrize(
    "key", ["k", "x" * MAX_KEY_LENGTH, "3f0c8a9e-1d2b-4c5d-8e9f-0a1b2c3d4e5f", "a b/c?d#e\\f"]
)
def test_good_keys_are_taken(key: str) -> None:
    assert key_problem(key) is None
