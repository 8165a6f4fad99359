"""The Store contract, jobs by owner: ``list_jobs(owner=...)`` (``squeue -u``, HPC Pack's
``job list /owner:``), then what each adapter does to answer it from an index.

The first tests run on every adapter (tests/contract/store_fixtures.py); the SQLite
ones check its query plan and that a file made before the index gets it; the Cosmos ones
check the query text and the backfill of job documents written before the owner was
copied to their top level (:mod:`shared.adapters.cosmos_owners`).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_jobs
from shared.adapters import cosmos_owners as owners
from shared.adapters.sqlite_schema import JOB_OWNER
from shared.adapters.sqlite_store import SqliteStore
from shared.domain.models import Job
from shared.domain.states import JobState
from shared.ports.store import Store
from tests.contract.cosmos_fixtures import check_parameterised
from tests.contract.store_fixtures import T0


def _add(store: Store, owner: str, state: JobState = JobState.QUEUED) -> Job:
    job = Job(id=store.next_job_id(), name=f"of {owner}", owner=owner, state=state, submit_time=T0)
    store.add_job(job, [])
    return job


def _ids(jobs: list[Job]) -> list[int]:
    return [j.id for j in jobs]


def test_list_jobs_by_owner_lists_only_that_owners_jobs_newest_first(store: Store) -> None:
    a1, _, a2, _, a3 = (_add(store, o) for o in ("alice", "bob", "alice", "bob", "alice"))
    assert _ids(store.list_jobs(owner="alice")) == [a3.id, a2.id, a1.id]
    assert all(j.owner == "alice" for j in store.list_jobs(owner="alice"))
    assert len(store.list_jobs(owner="bob")) == 2
    assert len(store.list_jobs()) == 5  # no owner: everyone's, as before


def test_list_jobs_by_owner_pages_with_limit_and_before(store: Store) -> None:
    added = [_add(store, o) for o in ("alice", "bob") * 4]
    alice = [j.id for j in reversed(added) if j.owner == "alice"]
    first = store.list_jobs(owner="alice", limit=2)
    assert _ids(first) == alice[:2]
    rest = store.list_jobs(owner="alice", limit=2, before=first[-1].id)
    assert _ids(rest) == alice[2:4]
    assert store.list_jobs(owner="alice", limit=2, before=rest[-1].id) == []


def test_list_jobs_by_owner_and_state_takes_both(store: Store) -> None:
    _add(store, "alice", JobState.QUEUED)
    running = _add(store, "alice", JobState.RUNNING)
    _add(store, "bob", JobState.RUNNING)
    found = store.list_jobs(owner="alice", states={JobState.RUNNING})
    assert _ids(found) == [running.id]
    assert store.list_jobs(owner="alice", states=[]) == []


def test_a_job_keeps_its_owner_through_its_writes(store: Store) -> None:
    job = _add(store, "alice")
    job = store.get_job(job.id)
    job.state = JobState.RUNNING
    store.commit(job=job)
    found = store.list_jobs(owner="alice", states={JobState.RUNNING})
    assert _ids(found) == [job.id] and found[0].owner == "alice"


def test_an_unknown_owner_lists_nothing(store: Store) -> None:
    _add(store, "alice")
    assert store.list_jobs(owner="nobody") == []
    assert store.list_jobs(owner="Alice") == []  # names are exact, as POSIX user names


# --- SQLite: the index and its migration ---------------------------------------


def _plan(path: Path, owner_filter: str) -> str:
    with sqlite3.connect(path) as con:
        rows = con.execute(
            f"EXPLAIN QUERY PLAN SELECT doc FROM jobs WHERE id < 9 AND {owner_filter} "
            "ORDER BY id DESC LIMIT 5"
        ).fetchall()
    return " ".join(str(r[-1]) for r in rows)


def test_sqlite_lists_an_owners_jobs_from_its_index(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "store.db").close()
    plan = _plan(tmp_path / "store.db", f"{JOB_OWNER} = 'alice'")
    assert "USING INDEX jobs_by_owner" in plan and "TEMP B-TREE" not in plan, plan


def test_sqlite_file_from_before_the_owner_index_gets_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    old = SqliteStore(path)
    job = _add(old, "alice")
    old.close()
    with sqlite3.connect(path) as con:  # as a file written before the index was
        con.execute("DROP INDEX jobs_by_owner")
    store = SqliteStore(path)
    try:
        assert _ids(store.list_jobs(owner="alice")) == [job.id]
        assert "USING INDEX jobs_by_owner" in _plan(path, f"{JOB_OWNER} = 'alice'")
    finally:
        store.close()


# --- Cosmos: the query and the backfill of older documents ---------------------


def test_cosmos_lists_by_the_indexed_top_level_owner() -> None:
    query = docs.list_jobs({JobState.QUEUED}, 10, before=42, owner="alice")
    check_parameterised(query)
    assert "c.owner = @owner" in query.text and query.partition_key is None
    assert "/body/*" in str(docs.JOBS_INDEXING["excludedPaths"])  # why the copy is needed
    job = Job(id=1, name="j", owner="alice", submit_time=T0)
    assert docs.job_doc(job)["owner"] == "alice"


def test_the_backfill_query_is_parameterised_and_named_cross_partition() -> None:
    query = owners.unowned_jobs(10)
    check_parameterised(query)
    assert query.partition_key is None and owners.CROSS_PARTITION == ("unowned_jobs",)
    assert "c.visible = true" in query.text  # never a job add_job is still writing


def test_backfill_copies_the_body_owner_and_keeps_the_rest() -> None:
    doc: dict[str, Any] = {"id": "job", "jobId": 3, "body": {"owner": "bob"}, "_etag": "e"}
    assert owners.owned(doc) == {"id": "job", "jobId": 3, "body": {"owner": "bob"}, "owner": "bob"}
    assert owners.owned({"id": "job", "body": {}})["owner"] == owners.DEFAULT_OWNER


def test_cosmos_job_documents_of_an_older_version_are_listed_after_a_purge(
    cosmos_endpoint: str, tmp_path: Path
) -> None:
    from tests.emulators import drop_cosmos_database, open_cosmos_store

    store = open_cosmos_store(tmp_path)
    try:
        job = _add(store, "alice")
        doc = store._jobs.read_item(docs.JOB_DOC_ID, partition_key=job.id)
        del doc["owner"]  # as an older version wrote it: the owner in the body alone
        store._jobs.replace_item(docs.JOB_DOC_ID, doc)
        assert store.list_jobs(owner="alice") == []
        store.purge_unfinished_jobs(datetime.now(UTC) - timedelta(hours=1))
        assert _ids(store.list_jobs(owner="alice")) == [job.id]
        assert store._owners_clean_at is None  # it found one: the next purge looks again
        store.purge_unfinished_jobs(datetime.now(UTC) - timedelta(hours=1))
        assert store._owners_clean_at is not None  # clean: looked at again only later
        # a review: an old instance of a rolling deploy writes one again after the clean look
        store._jobs.replace_item(docs.JOB_DOC_ID, doc)
        store._owners_clean_at -= cosmos_jobs.OWNERS_RECHECK_S  # its recheck is due
        assert store.list_jobs(owner="alice") == []
        store.purge_unfinished_jobs(datetime.now(UTC) - timedelta(hours=1))
        assert _ids(store.list_jobs(owner="alice")) == [job.id]
    finally:
        store.close()
        drop_cosmos_database(tmp_path)
