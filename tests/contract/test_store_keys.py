"""The Store contract, idempotency keys: a reservation is create-if-absent (of concurrent ones
exactly one wins), every later write is under the etag it was read with, keys are per owner,
sizes are Cosmos DB's; then how each adapter forgets a key after its 24 h (SQLite: later
reservations delete expired rows; Cosmos DB: the documents' ``ttl`` in a container with
time-to-live on).

Runs on every adapter (tests/contract/store_fixtures.py).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from unittest.mock import MagicMock

import pytest

from shared.adapters import cosmos_docs as docs
from shared.adapters.cosmos_keys import key_doc, key_doc_id
from shared.adapters.cosmos_store import CosmosStore
from shared.adapters.sqlite_store import SqliteStore
from shared.domain.idempotency import KEY_TTL, KeyRecord, reservation
from shared.errors import Conflict
from shared.ports.store import MAX_DOCUMENT_BYTES, Store
from tests.contract.store_fixtures import T0, OpenStore, add_job
from tests.contract.test_store_parts import Crash, big_job, crash_at


def _new(owner: str = "alice", key: str = "k1", fp: str = "fp1", at: object = T0) -> KeyRecord:
    return reservation(owner, key, "POST /api/jobs", fp, at)  # type: ignore[arg-type]


def _fields(record: KeyRecord | None) -> dict[str, object]:
    assert record is not None
    return record.model_dump(exclude={"etag"})


def test_a_reservation_is_read_back_as_written_and_an_unknown_key_is_none(store: Store) -> None:
    assert store.get_idempotency_key("alice", "k1") is None
    made = _new()
    store.put_idempotency_key(made)
    assert made.etag is not None
    got = store.get_idempotency_key("alice", "k1")
    assert _fields(got) == _fields(made) and got is not None and got.etag == made.etag


def test_a_second_reservation_of_a_key_is_a_conflict_and_changes_nothing(store: Store) -> None:
    first = _new(fp="first")
    store.put_idempotency_key(first)
    with pytest.raises(Conflict):
        store.put_idempotency_key(_new(fp="second"))
    got = store.get_idempotency_key("alice", "k1")
    assert got is not None and got.fingerprint == "first" and got.etag == first.etag


def test_of_concurrent_reservations_of_one_key_exactly_one_wins(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(4)]  # as separate processes would, one storage
    won: list[str] = []
    start = threading.Barrier(len(stores))

    def reserve(i: int) -> None:
        start.wait()
        try:
            stores[i].put_idempotency_key(_new(fp=f"fp{i}"))
            won.append(f"fp{i}")
        except Conflict:
            pass

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    got = stores[0].get_idempotency_key("alice", "k1")
    assert got is not None and got.fingerprint == won[0]


def test_a_completion_is_written_under_the_etag_and_a_stale_one_is_refused(store: Store) -> None:
    made = _new()
    store.put_idempotency_key(made)
    stale = made.model_copy()
    made.job_id, made.status, made.body = 12, 201, '{"id": 12}'
    store.put_idempotency_key(made)
    stale.status, stale.body = 201, '{"id": 99}'
    with pytest.raises(Conflict):
        store.put_idempotency_key(stale)
    got = store.get_idempotency_key("alice", "k1")
    assert got is not None and (got.job_id, got.status, got.body) == (12, 201, '{"id": 12}')


def test_a_replace_of_a_key_never_reserved_is_a_conflict(store: Store) -> None:
    ghost = _new()
    ghost.etag = "not-an-etag"
    with pytest.raises(Conflict):
        store.put_idempotency_key(ghost)
    assert store.get_idempotency_key("alice", "k1") is None


def test_keys_are_per_owner_and_matched_exactly(store: Store) -> None:
    store.put_idempotency_key(_new("alice", "k1", "a"))
    store.put_idempotency_key(_new("bob", "k1", "b"))  # another user's same key: no conflict
    store.put_idempotency_key(_new("alice", "K1", "A"))  # keys are case-sensitive
    assert _fields(store.get_idempotency_key("alice", "k1"))["fingerprint"] == "a"
    assert _fields(store.get_idempotency_key("bob", "k1"))["fingerprint"] == "b"
    assert _fields(store.get_idempotency_key("alice", "K1"))["fingerprint"] == "A"
    assert store.get_idempotency_key("carol", "k1") is None


@pytest.mark.parametrize("key", ["a/b\\c?d#e%2F f", "x" * 255, "~!@$^&*()[]{}|;:'\",.<>"])
def test_keys_of_any_printable_ascii_up_to_255_characters_round_trip(
    store: Store, key: str
) -> None:
    store.put_idempotency_key(_new(key=key))
    got = store.get_idempotency_key("alice", key)
    assert got is not None and got.key == key


def test_a_delete_is_under_the_etag_and_one_already_gone_is_fine(store: Store) -> None:
    made = _new()
    store.put_idempotency_key(made)
    stale = made.model_copy()
    store.put_idempotency_key(made)  # a new etag
    with pytest.raises(Conflict):
        store.delete_idempotency_key(stale)
    store.delete_idempotency_key(made)
    assert store.get_idempotency_key("alice", "k1") is None
    store.delete_idempotency_key(made)  # gone: nothing to do
    store.put_idempotency_key(_new(fp="again"))  # and the key may be reserved again


def test_an_answer_over_the_document_limit_is_refused_before_anything_is_written(
    store: Store,
) -> None:
    made = _new()
    store.put_idempotency_key(made)
    made.status, made.body = 201, "x" * MAX_DOCUMENT_BYTES
    with pytest.raises(ValueError, match="2 MB"):
        store.put_idempotency_key(made)
    got = store.get_idempotency_key("alice", "k1")
    assert got is not None and got.status is None


# --- how each adapter forgets a key after its 24 h ---------------------------------------


def test_sqlite_deletes_expired_keys_when_a_later_reservation_is_made(tmp_path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    store.put_idempotency_key(_new("alice", "old"))
    store.put_idempotency_key(_new("alice", "young", at=T0 + KEY_TTL / 2))
    store.put_idempotency_key(_new("bob", "new", at=T0 + KEY_TTL + timedelta(seconds=1)))
    assert store.get_idempotency_key("alice", "old") is None  # past its 24 h: deleted
    assert store.get_idempotency_key("alice", "young") is not None
    (rows,) = store._con().execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()
    assert rows == 2
    store.close()


def test_cosmos_key_documents_carry_a_ttl_of_24_h_and_an_id_cosmos_takes() -> None:
    doc = key_doc(_new(key="a/b?c#d\\" + "x" * 250))
    assert doc["ttl"] == int(KEY_TTL.total_seconds())
    assert doc["id"] == doc["pk"] and len(doc["id"]) <= 255
    assert not set(doc["id"]) & set("/\\?#")
    assert key_doc_id("alice", "k") != key_doc_id("bob", "k")
    assert key_doc_id("al", "ice\0k") != key_doc_id("al\0ice", "k")


def test_cosmos_creates_the_keys_container_with_time_to_live_on() -> None:
    client = MagicMock()
    CosmosStore("https://keys-test.invalid:443/", client=client)
    database = client.create_database_if_not_exists.return_value
    calls = {c.args[0]: c.kwargs for c in database.create_container_if_not_exists.call_args_list}
    assert calls[docs.KEYS]["default_ttl"] == -1
    assert all("default_ttl" not in kw for name, kw in calls.items() if name != docs.KEYS)


# --- a taken-over key's job, left half-written: purge_unfinished_job ----------------------


def test_a_half_written_job_is_purged_by_its_id_and_may_then_be_stored(store: Store) -> None:
    visible, _ = add_job(store, 2)
    job, tasks, ranges = big_job(store)
    store.add_job_fault = crash_at(1)
    with pytest.raises(Crash):
        store.add_job(job, tasks, ranges)
    store.add_job_fault = None
    purged = store.purge_unfinished_job(job.id)  # Cosmos: it was; SQLite: nothing was left
    assert purged is isinstance(store, CosmosStore)
    assert not store.purge_unfinished_job(job.id)  # gone now
    assert not store.purge_unfinished_job(visible.id)  # a visible job is never purged
    assert store.get_job(visible.id).id == visible.id
    store.add_job(job, tasks, ranges)  # the same id again, now whole
    assert store.get_job(job.id).task_count == len(tasks) + 10
    assert len(store.list_tasks(job.id, limit=1000)) == len(tasks)
