"""Requests that carry an ``Idempotency-Key``: reserve the key, do the work once, keep the answer.

:func:`run_once` applies the pure rule (:func:`shared.domain.idempotency.decide`) to the
stored record and does what it says; every write to the record is conditional (a create, or
a replace under the etag it was read with), and one that loses a race decides again from
the record as it now is. :func:`submit_once` and :func:`add_nodes_once` are the two routes
that create something new on each call (``POST /api/jobs``, ``POST /api/nodes``).

Answers: a 2xx is stored and replayed for 24 h. A 4xx (the spec was refused, a group is
full...) is *not* stored: the key is released, so the user can fix what the message says
(add nodes, requeue the prerequisite job, fix the spec) and retry, with the same key or a
new one; nothing was created, so nothing can be created twice. Stripe replays 4xx too, but
an HPC refusal is mostly about the cluster's state, which the user is expected to change and
submit again. An error of unknown outcome (a 5xx, a store that failed mid-write) keeps the
reservation: a retry after its lease takes it over and finds what was made.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.domain.cluster import Node, Principal
from shared.domain.idempotency import (
    HEADER,
    KeyRecord,
    Verdict,
    decide,
    fingerprint,
    reservation,
    taken_over,
)
from shared.domain.models import Job
from shared.errors import Conflict, HpcError, InvalidRequest, NotFound, Refused
from shared.usecases import nodes_add, submit
from shared.usecases.deps import Deps
from shared.usecases.nodes_add import NodeAdd

log = logging.getLogger(__name__)

ATTEMPTS = 5
"""Decisions at most for one request whose writes to its record keep losing races."""

JOBS_ROUTE = "POST /api/jobs"
NODES_ROUTE = "POST /api/nodes"


@dataclass(frozen=True)
class Answer:
    """What the route answers: its status and JSON text (as stored, replayed unchanged)."""

    status: int
    body: str
    replayed: bool = False


@dataclass(frozen=True)
class Keyed:
    """A request with a key: whose, which key, and what it asks (route, fingerprint)."""

    owner: str
    key: str
    route: str
    fingerprint: str

    @classmethod
    def of(cls, principal: Principal, key: str, route: str, body: Any) -> Keyed:
        return cls(principal.name, key, route, fingerprint(route, body))


class KeyReused(InvalidRequest):
    """422: the key was first used for another request."""


class KeyHeld(Refused):
    """409: the key belongs to a request that has not answered; the key is kept."""


Work = Callable[[KeyRecord, bool], Answer]
"""Does the request's work under a reservation (``True``: one taken over from a request that
died, which may have made what it asked for) and returns the answer to store."""


def run_once(deps: Deps, keyed: Keyed, work: Work) -> Answer:
    """The answer of ``keyed``: replayed, refused, or made by ``work`` exactly once."""
    for _ in range(ATTEMPTS):
        now = deps.clock()
        record = deps.store.get_idempotency_key(keyed.owner, keyed.key)
        decision = decide(record, keyed.fingerprint, now)
        verdict = decision.verdict
        if verdict is Verdict.REPLAY:
            assert record is not None and record.status is not None and record.body is not None
            return Answer(record.status, record.body, replayed=True)
        if verdict is Verdict.MISMATCH:
            assert record is not None
            first = (
                f"{record.route} with another body"
                if record.route == keyed.route
                else f"{record.route}, not {keyed.route}"
            )
            raise KeyReused(
                f"{HEADER} {keyed.key!r} was used for a different request ({first}) in the "
                "last 24 h: send a new key for a new request, or the same request to get the "
                "first answer again"
            )
        if verdict is Verdict.BUSY:
            raise busy(decision.retry_after_s)
        if verdict is Verdict.RECOVER:
            assert record is not None
            claim = taken_over(record, now)
        else:  # RESERVE; RENEW replaces the forgotten record under its etag
            claim = reservation(keyed.owner, keyed.key, keyed.route, keyed.fingerprint, now)
            claim.etag = record.etag if record is not None else None
        try:
            deps.store.put_idempotency_key(claim)
        except Conflict:
            continue  # another request reserved or took it first: decide again
        return _work(deps, claim, work, verdict is Verdict.RECOVER)
    raise busy(1)


def busy(retry_after_s: int) -> KeyHeld:
    return KeyHeld(
        f"a request with this {HEADER} is in progress; retry in {retry_after_s} s "
        "(the retry gets its answer)",
        retryAfterS=retry_after_s,
    )


def _work(deps: Deps, claim: KeyRecord, work: Work, recovering: bool) -> Answer:
    try:
        answer = work(claim, recovering)
    except HpcError as error:
        if error.status < 500 and not isinstance(error, KeyHeld):
            _release(deps, claim)  # refused: nothing was made; the user fixes and retries
        raise
    claim.status, claim.body = answer.status, answer.body
    try:
        deps.store.put_idempotency_key(claim)
    except Conflict:  # slower than its lease and taken over: the taker answers the same
        log.warning(
            "idempotency key of %s was taken over before its answer was stored", claim.owner
        )
    except ValueError:  # too large to keep: a retry after the lease finds what was made
        log.exception("the answer to idempotency key of %s is not stored", claim.owner)
    return answer


def _release(deps: Deps, claim: KeyRecord) -> None:
    with contextlib.suppress(Conflict):  # taken over meanwhile: it is the taker's now
        deps.store.delete_idempotency_key(claim)


def save(deps: Deps, claim: KeyRecord) -> None:
    """Write progress into a reservation under its etag; KeyHeld if another request took it
    over meanwhile (then this one must make nothing more)."""
    try:
        deps.store.put_idempotency_key(claim)
    except Conflict:
        raise KeyHeld(
            f"another request with this {HEADER} took it over; retry to get its answer",
            retryAfterS=1,
        ) from None


# --- the routes ----------------------------------------------------------------


def submit_once(
    deps: Deps, data: Any, principal: Principal, key: str, render: Callable[[Job], str]
) -> Answer:
    """``POST /api/jobs`` with a key. The job id is taken after the checks (a refused submit
    takes none) and written into the reservation *before* the job is stored, so a request
    taking over a dead one's reservation answers the job it stored, or stores the job under
    that same id: a second store of one id is a Conflict, never a second job."""
    keyed = Keyed.of(principal, key, JOBS_ROUTE, data)

    def work(claim: KeyRecord, recovering: bool) -> Answer:
        if claim.job_id is not None:  # a dead request's: did it store its job?
            made = _visible_job(deps, claim.job_id)
            if made is not None:  # made by the first request: this answer is its replay
                return Answer(201, render(made), replayed=True)
        accepted = submit.accept(deps, data, principal)
        if claim.job_id is None:
            claim.job_id = deps.store.next_job_id()
            save(deps, claim)
        try:
            job = submit.store_job(deps, accepted, claim.job_id, principal)
        except Conflict:  # the id's job exists: stored by the request this one took over
            made = _visible_job(deps, claim.job_id)
            if made is not None:  # stored by the request this one overtook: its replay
                return Answer(201, render(made), replayed=True)
            if recovering and deps.store.purge_unfinished_job(claim.job_id):
                # left half-written by the dead request (Cosmos writes a job in parts): the
                # id is this key's, so purge it now rather than in an hour, and store it
                job = _store_again(deps, accepted, claim.job_id, principal)
            else:  # still being written by the request this one overtook
                raise busy(1) from None
        return Answer(201, render(job))

    return run_once(deps, keyed, work)


def _store_again(deps: Deps, accepted: submit.Accepted, job_id: int, principal: Principal) -> Job:
    """Store the job after purging a half-written one of its id: a Conflict now means the
    overtaken request was still writing parts (they fail at its final write): retry later."""
    try:
        return submit.store_job(deps, accepted, job_id, principal)
    except Conflict:
        raise busy(1) from None


def _visible_job(deps: Deps, job_id: int) -> Job | None:
    try:
        return deps.store.get_job(job_id)
    except NotFound:
        return None


def add_request(claim: KeyRecord) -> str:
    """A keyed node add's id, the same for a retry that takes its reservation over (the
    nodes it finds made under it are its own: shared.usecases.nodes_add)."""
    text = f"{claim.owner}\0{claim.key}\0{claim.reserved_at.isoformat()}"
    return "key-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def add_nodes_once(
    deps: Deps,
    body: Any,
    principal: Principal,
    key: str,
    asked: NodeAdd,
    render: Callable[[list[Node]], str],
) -> Answer:
    """``POST /api/nodes`` with a key (``body`` is the request's). The names are chosen after
    the checks and written into the reservation *before* any node or VM is made, as a
    submit's job id: a request taking over a dead one's reservation makes the nodes of those
    names that it had not made, and answers all of them."""
    keyed = Keyed.of(principal, key, NODES_ROUTE, body)

    def work(claim: KeyRecord, recovering: bool) -> Answer:
        request = add_request(claim)

        def reserve(names: list[str]) -> None:
            claim.node_names = list(names)
            save(deps, claim)

        if claim.node_names is not None:  # a dead request's: make what it did not
            made = nodes_add.make_nodes(
                deps, asked, claim.node_names, request=request, rename=reserve
            )
            return Answer(201, render(made))

        added = nodes_add.add_nodes(
            deps,
            asked.group,
            asked.count,
            cores=asked.cores,
            size=asked.size,
            spot=asked.spot,
            reserve=reserve,
            request=request,
        )
        return Answer(201, render(added))

    return run_once(deps, keyed, work)
