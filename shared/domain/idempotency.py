"""Idempotency keys (``Idempotency-Key``): what a request that carries one does, as a pure rule.

A client sends a fresh key with each request that creates something (a job submit, a node
add) and the same key when it retries that request after a lost answer. The first request
with a key *reserves* it (a create-if-absent write, atomic in both stores), does the work and
*completes* the record with its answer; a retry of the same request gets that answer again,
creating nothing. Keys are per user and forgotten after :data:`KEY_TTL`.

The record also ties the key to what the work creates (the job id, taken and written into the
record before the job is stored): a retry that finds a reservation whose worker never finished
(past :data:`LEASE`: it crashed, or its host was stopped) takes it over and answers the job
that worker made, or stores the job under that same id, so no crash nor concurrent duplicate
makes two jobs (a second ``add_job`` of one id is a Conflict in every store).

:func:`decide` takes the stored record, the request's fingerprint and the clock, and says
which of :class:`Verdict` applies; the use case (:mod:`shared.usecases.idempotency`) does it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.domain.records import Record, UtcTime

KEY_TTL = timedelta(hours=24)
"""How long a key is remembered after its reservation (Stripe's 24 h): a retry within it is
answered from the record, a request after it is a new request."""

BUSY_RETRY_S = 5
"""Retry-After of a key whose request has not answered: at most this many seconds (most
requests answer within it; a dead one's lease may run longer, and the retry asks again)."""

LEASE = timedelta(seconds=60)
"""How long a reservation belongs to the request that made it. Past it, with no answer
stored, that request is taken to have died (a crash, a stopped host) and a retry takes the
work over. Long enough for a large submit; a worker slower than it cannot make a second
job anyway (the job id is reserved first), it only lets the retry answer sooner."""

MAX_KEY_LENGTH = 255
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


class Verdict(StrEnum):
    """What a request with a key does, given the key's stored record."""

    RESERVE = "reserve"
    """No record: create one (Conflict if another request did first: decide again), then work."""
    RENEW = "renew"
    """The record is past :data:`KEY_TTL`: the key is forgotten; replace the record (under its
    etag) by a new reservation and work, as for a key never seen."""
    REPLAY = "replay"
    """Completed for the same request: answer the stored status and body, do nothing."""
    MISMATCH = "mismatch"
    """The key was used for a different request (route or body): 422, do nothing."""
    BUSY = "busy"
    """Reserved by a request still within its lease (a concurrent duplicate, or the first try
    still working): 409, retry after the lease."""
    RECOVER = "recover"
    """Reserved, no answer, lease over: its request died. Take the reservation over (under its
    etag), answer what it made if it made it (the reserved job id exists), else work."""


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    retry_after_s: int = 0
    """For BUSY: whole seconds until the lease ends (at least 1, at most BUSY_RETRY_S)."""


class KeyRecord(Record):
    """One user's key: the request it was first used for, and the answer once there is one.

    Stored under (owner, key); the Store port's ``*_idempotency_key`` methods keep it."""

    owner: str
    key: str
    route: str
    """``POST /api/jobs``: said in the 422 of a key reused for another route."""
    fingerprint: str
    """:func:`fingerprint` of the request (route and canonical body)."""
    reserved_at: UtcTime
    lease_until: UtcTime
    expires: UtcTime
    job_id: int | None = None
    """The job id taken for this request before its job is stored (None: not taken yet, so
    no job of it can exist)."""
    node_names: list[str] | None = None
    """The names of the nodes a node add makes, kept before any is made (None: not chosen
    yet, so none of it can exist): a retry of a request that died makes the rest."""
    status: int | None = None
    """The answer's HTTP status (None: the work has not completed)."""
    body: str | None = None
    """The answer's JSON text, replayed as it was sent."""

    @property
    def completed(self) -> bool:
        return self.status is not None


def decide(record: KeyRecord | None, fingerprint: str, now: datetime) -> Decision:
    """The rule; ``now`` is the control plane's clock. Expiry comes first (a forgotten key
    may be reused for anything), then the fingerprint (a different request never sees
    another's answer nor waits on it), then the record's progress."""
    if record is None:
        return Decision(Verdict.RESERVE)
    if now >= record.expires:
        return Decision(Verdict.RENEW)
    if record.fingerprint != fingerprint:
        return Decision(Verdict.MISMATCH)
    if record.completed:
        return Decision(Verdict.REPLAY)
    if now < record.lease_until:
        left = (record.lease_until - now).total_seconds()
        return Decision(Verdict.BUSY, retry_after_s=max(1, min(BUSY_RETRY_S, math.ceil(left))))
    return Decision(Verdict.RECOVER)


def reservation(owner: str, key: str, route: str, fingerprint: str, now: datetime) -> KeyRecord:
    """A new reservation (RESERVE, RENEW): leased from ``now``, expiring after KEY_TTL."""
    return KeyRecord(
        owner=owner,
        key=key,
        route=route,
        fingerprint=fingerprint,
        reserved_at=now,
        lease_until=now + LEASE,
        expires=now + KEY_TTL,
    )


def taken_over(record: KeyRecord, now: datetime) -> KeyRecord:
    """The reservation a RECOVER writes (under the record's etag): a new lease, the job id
    and expiry kept (the key's 24 h run from its first use)."""
    return record.model_copy(update={"lease_until": now + LEASE})


def fingerprint(route: str, body: Any) -> str:
    """SHA-256 of the route and the body as canonical JSON (keys sorted, no spaces): the same
    request sent with its keys in another order or other whitespace is the same request."""
    text = json.dumps([route, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def key_problem(value: str) -> str | None:
    """Why ``value`` is not a usable key (None: it is): 1-255 printable ASCII characters."""
    if not value:
        return f"the {HEADER} header is empty: send 1-{MAX_KEY_LENGTH} printable ASCII characters"
    if len(value) > MAX_KEY_LENGTH:
        return (
            f"the {HEADER} header is {len(value)} characters long; send at most "
            f"{MAX_KEY_LENGTH} (a UUID is 36)"
        )
    bad = next((c for c in value if not " " <= c <= "~"), None)
    if bad is not None:
        # a character past ASCII arrives decoded as Latin-1 (UTF-8's "ä" as "Ã¤"): not quoted
        shown = repr(bad) if bad < "\x80" else "a character outside ASCII"
        return (
            f"the {HEADER} header holds {shown}: send printable ASCII characters only "
            "(letters, digits, punctuation, spaces), e.g. a UUID"
        )
    if "," in value:
        return (
            f"the {HEADER} header holds a comma (HTTP joins a header sent twice with commas, "
            "so a key may not hold one): send one key, without commas, e.g. a UUID"
        )
    return None
