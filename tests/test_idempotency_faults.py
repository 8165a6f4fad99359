"""A submit with an ``Idempotency-Key`` whose request dies between its steps (the store raises
an exception that is not an Exception, which runs no clean-up, as a killed process would):
its retry, once the dead request's lease is over, makes exactly one job, under the job id the
dead request reserved; within the lease the retry is told to wait (409). On Cosmos DB a job
cut off mid-``add_job`` is left half-written: the retry purges it by its id and stores it.
Also a first request slower than its lease, overtaken by its retry: both answer the same, one,
job. Each runs on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.domain.cluster import Principal
from shared.domain.idempotency import LEASE, KeyRecord
from shared.domain.models import Job
from shared.usecases.control_plane import ControlPlane
from shared.usecases.idempotency import Answer, KeyHeld
from tests.emulators import drop_cosmos_database, open_cosmos_store
from tests.test_control import Clock, make_cp, register

ALICE = Principal(name="alice", role="user")
SPEC = {"command": "echo *", "sweep": "1-5"}


class Crash(BaseException):
    """The process died here."""


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.cosmos)])
def cp(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[ControlPlane]:
    """On each store: the exactly-once argument rests on each one's create-if-absent and on
    ``add_job`` refusing a job id that exists."""
    plane = make_cp(tmp_path, clock)
    if request.param == "cosmos":
        request.getfixturevalue("cosmos_endpoint")  # the stand-in (skips without Node.js)
        plane.deps.store = open_cosmos_store(tmp_path)
    register(plane, "n1", cores=4)
    yield plane
    plane.store.close()
    if request.param == "cosmos":
        drop_cosmos_database(tmp_path)


def submit(cp: ControlPlane, key: str = "k") -> Answer:
    return cp.submit_once(SPEC, ALICE, key, lambda job: f'{{"id": {job.id}}}')


def jobs(cp: ControlPlane) -> list[Job]:
    return cp.store.list_jobs(limit=1000)


def test_a_request_dead_before_its_job_was_stored_is_redone_once_under_its_job_id(
    cp: ControlPlane, clock: Clock
) -> None:
    def crash(_written: int) -> None:
        raise Crash

    cp.store.add_job_fault = crash
    with pytest.raises(Crash):
        submit(cp)
    cp.store.add_job_fault = None
    record = cp.store.get_idempotency_key("alice", "k")
    assert record is not None and record.job_id is not None and jobs(cp) == []
    with pytest.raises(KeyHeld, match="in progress; retry"):
        submit(cp)  # within the dead request's lease: it might still be working
    clock.advance(LEASE.total_seconds())
    answer = submit(cp)
    assert (answer.status, answer.replayed) == (201, False)
    assert [j.id for j in jobs(cp)] == [record.job_id]
    assert answer.body == f'{{"id": {record.job_id}}}'
    assert submit(cp) == Answer(201, answer.body, replayed=True)
    assert len(jobs(cp)) == 1


def test_a_request_dead_after_its_job_was_stored_is_answered_with_that_job(
    cp: ControlPlane, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    put = cp.store.put_idempotency_key

    def crash_on_the_answer(record: KeyRecord) -> None:
        if record.status is not None:
            raise Crash
        put(record)

    monkeypatch.setattr(cp.store, "put_idempotency_key", crash_on_the_answer)
    with pytest.raises(Crash):
        submit(cp)
    monkeypatch.setattr(cp.store, "put_idempotency_key", put)
    [stored] = jobs(cp)
    clock.advance(LEASE.total_seconds() + 1)
    answer = submit(cp)
    assert answer.status == 201 and answer.body == f'{{"id": {stored.id}}}'
    assert answer.replayed  # the dead request made it (a probe: no Idempotent-Replayed)
    assert [j.id for j in jobs(cp)] == [stored.id]
    assert submit(cp).replayed


def test_a_first_request_slower_than_its_lease_and_its_retry_answer_one_job(
    cp: ControlPlane, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_job = cp.store.add_job
    calls: list[int] = []
    retried: list[Answer] = []

    def slow_add_job(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # the first request, about to store its job, stalls past its
            clock.advance(LEASE.total_seconds() + 1)  # lease; its retry takes the key over
            retried.append(submit(cp))
        add_job(*args, **kwargs)

    monkeypatch.setattr(cp.store, "add_job", slow_add_job)
    first = submit(cp)
    [job] = jobs(cp)
    assert len(calls) == 2  # both tried to store it: one id, so the second was a Conflict
    assert first.status == retried[0].status == 201
    assert first.body == retried[0].body == f'{{"id": {job.id}}}'
    assert submit(cp).replayed


def test_a_request_dead_before_it_took_a_job_id_is_redone_with_a_new_one(
    cp: ControlPlane, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash() -> int:
        raise Crash

    next_job_id = cp.store.next_job_id
    monkeypatch.setattr(cp.store, "next_job_id", crash)
    with pytest.raises(Crash):
        submit(cp)
    monkeypatch.setattr(cp.store, "next_job_id", next_job_id)
    clock.advance(LEASE.total_seconds())
    assert submit(cp).status == 201
    assert len(jobs(cp)) == 1
