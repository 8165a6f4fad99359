"""The Store contract, job counts: they move as deltas, and the job document changes only
when the job itself does (the port's ``commit`` docstring).

The first part runs against every adapter. The Cosmos part checks what the Cosmos adapter
sends (tallies, never a replace of the job document for a counts-only commit) and its
folding: against the stand-in (which has no transactional batch, so the adapter takes its
one-at-a-time fallback) and against a recording container that answers batches as Cosmos
DB does. The stand-in cannot prove atomicity (its fold replaces the job document, then
deletes the tallies, one request each): that is covered by the recorded batch (one batch,
the replace under the job's etag and every delete in it) and, for the fallback, by the job
document naming the tallies it absorbed, tested here with a fold cut short between its
replace and its deletes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos.exceptions import CosmosBatchOperationError

from shared.adapters import cosmos_docs as docs
from shared.adapters import cosmos_tallies as tallies
from shared.domain.models import Job, Step, Task
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict
from shared.ports.store import Store
from tests.contract.cosmos_fixtures import check_parameterised, check_partition
from tests.contract.store_fixtures import OpenStore, add_job
from tests.emulators import drop_cosmos_database, open_cosmos_store

pytestmark_cosmos = pytest.mark.cosmos

Q, D, R, F, X = (
    TaskState.QUEUED,
    TaskState.DISPATCHING,
    TaskState.RUNNING,
    TaskState.FINISHED,
    TaskState.FAILED,
)


def _move(job: Job, task: Task, new: TaskState) -> None:
    """The task moves (as a use case would move it) and the job counts it."""
    old = task.state
    task.state = new
    job.count(old, new, name=task.name)


# --- every adapter ------------------------------------------------------------------


def test_a_counts_only_commit_neither_checks_nor_changes_the_job_etag(store: Store) -> None:
    job, tasks = add_job(store, 2)
    etag = job.etag
    rival = store.get_job(job.id)
    rival.name = "renamed"
    store.commit(job=rival)  # the job's own fields changed: a new etag
    _move(job, tasks[0], D)
    store.commit(job=job, tasks=[tasks[0]])  # from the read before the rename: still fine
    stored = store.get_job(job.id)
    assert stored.etag == rival.etag != etag
    assert stored.name == "renamed"
    assert stored.task_counts == {Q: 1, D: 1}
    assert job.etag == etag  # the caller's copy keeps the etag it read


def test_commits_from_the_same_read_for_different_tasks_all_apply_and_add_up(
    store: Store,
) -> None:
    job, tasks = add_job(store, 3)
    copies = [store.get_job(job.id) for _ in tasks]
    for copy, task, new in zip(copies, tasks, [D, F, X], strict=True):
        _move(copy, task, new)
        store.commit(job=copy, tasks=[task])
    stored = store.get_job(job.id)
    assert stored.task_counts == {D: 1, F: 1, X: 1}
    assert stored.etag == job.etag


def test_a_task_etag_still_guards_the_task_of_a_counts_only_commit(store: Store) -> None:
    job, _ = add_job(store, 1)
    mine, theirs = store.get_job(job.id), store.get_job(job.id)
    t1, t2 = store.get_task(job.id, 1), store.get_task(job.id, 1)
    _move(mine, t1, D)
    store.commit(job=mine, tasks=[t1])
    _move(theirs, t2, TaskState.CANCELED)
    with pytest.raises(Conflict):
        store.commit(job=theirs, tasks=[t2])
    assert store.get_job(job.id).task_counts == {D: 1}  # the refused delta was not added


def test_a_job_field_write_keeps_the_deltas_others_committed_meanwhile(store: Store) -> None:
    job, tasks = add_job(store, 3)
    writer, other = store.get_job(job.id), store.get_job(job.id)
    _move(other, tasks[0], D)
    store.commit(job=other, tasks=[tasks[0]])
    writer.move_to(JobState.RUNNING)
    _move(writer, tasks[1], D)
    store.commit(job=writer, tasks=[tasks[1]])  # under the etag it read: still current
    stored = store.get_job(job.id)
    assert stored.state is JobState.RUNNING
    assert stored.task_counts == {Q: 1, D: 2}
    assert stored.etag == writer.etag != job.etag


def test_a_job_field_write_that_moves_a_task_out_of_a_state_others_moved_it_into(
    store: Store,
) -> None:
    """The last task's end often closes its job: a write of the job's own fields with the
    delta Running -1. The task came into Running by another commit's delta (on Cosmos, a
    tally not folded yet): the stored counts hold no Running, and cutting them at zero lost
    the -1, so the job read Finished 1, Running 1 (found on the Cosmos stand-in)."""
    job, [task] = add_job(store, 1)
    for new in (D, R):  # the agent's events: counts-only commits from fresh reads
        mover = store.get_job(job.id)
        _move(mover, task, new)
        store.commit(job=mover, tasks=[task])
    closer = store.get_job(job.id)
    _move(closer, task, F)
    closer.move_to(JobState.RUNNING)
    closer.move_to(JobState.FINISHED)
    store.commit(job=closer, tasks=[task])
    assert store.get_job(job.id).task_counts == {F: 1}


def test_a_stale_job_field_write_conflicts_and_writes_nothing(store: Store) -> None:
    job, tasks = add_job(store, 2)
    stale = store.get_job(job.id)
    fresh = store.get_job(job.id)
    fresh.priority = 3000
    store.commit(job=fresh)
    stale.move_to(JobState.RUNNING)
    _move(stale, tasks[0], D)
    with pytest.raises(Conflict):
        store.commit(job=stale, tasks=[tasks[0]])
    stored = store.get_job(job.id)
    assert (stored.state, stored.priority, stored.task_counts) == (JobState.QUEUED, 3000, {Q: 2})
    assert store.get_task(job.id, 1).state is Q


def test_a_delta_that_reopens_ended_tasks_checks_the_job_etag(store: Store) -> None:
    """A rerun (ended -> Queued) must serialize with settling, which is decided from counts
    and written under the etag (see shared.domain.counts)."""
    job, tasks = add_job(store, 1)
    _move(job, tasks[0], X)
    store.commit(job=job, tasks=[tasks[0]])
    stale = store.get_job(job.id)
    settling = store.get_job(job.id)
    settling.move_to(JobState.FAILED)
    store.commit(job=settling)
    task = store.get_task(job.id, 1)
    _move(stale, task, Q)  # counts only, but out of an ended state
    with pytest.raises(Conflict):
        store.commit(job=stale, tasks=[task])
    assert store.get_job(job.id).task_counts == {X: 1}


def test_an_unchanged_job_in_a_commit_writes_nothing_of_the_job(store: Store) -> None:
    job, tasks = add_job(store, 1)
    tasks[0].name = "renamed"
    store.commit(job=job, tasks=[tasks[0]])
    stored = store.get_job(job.id)
    assert stored.etag == job.etag
    assert stored.task_counts == {Q: 1}


def test_get_job_and_list_jobs_sum_every_committed_delta(store: Store) -> None:
    job, tasks = add_job(store, 4)
    for task, new in zip(tasks, [D, R, F, F], strict=True):
        copy = store.get_job(job.id)
        _move(copy, task, new)
        store.commit(job=copy, tasks=[task])
    expected = {D: 1, R: 1, F: 2}
    assert store.get_job(job.id).task_counts == expected
    [listed] = [j for j in store.list_jobs() if j.id == job.id]
    assert listed.task_counts == expected


def test_steps_move_as_deltas_too(store: Store) -> None:
    job = Job(
        id=store.next_job_id(),
        state=JobState.RUNNING,
        task_count=3,
        task_counts={R: 3},
        steps={"prep": Step(left=2)},
    )
    tasks = [
        Task(job_id=job.id, id=i, name="prep" if i < 3 else "", command="x", state=R)
        for i in (1, 2, 3)
    ]
    store.add_job(job, tasks)
    a, b = store.get_job(job.id), store.get_job(job.id)
    _move(a, tasks[0], F)
    _move(b, tasks[1], X)
    store.commit(job=a, tasks=[tasks[0]])
    store.commit(job=b, tasks=[tasks[1]])
    stored = store.get_job(job.id)
    assert stored.steps["prep"] == Step(left=0, failed=1)
    assert stored.task_counts == {R: 1, F: 1, X: 1}


def test_instances_sharing_storage_add_up_each_others_deltas(open_store: OpenStore) -> None:
    one, two = open_store(), open_store()
    job, tasks = add_job(one, 2)
    copy, task = two.get_job(job.id), two.get_task(job.id, 1)
    _move(copy, task, D)
    two.commit(job=copy, tasks=[task])
    _move(job, tasks[1], F)  # the first instance's copy, from add_job (before that commit)
    one.commit(job=job, tasks=[tasks[1]])
    assert one.get_job(job.id).task_counts == two.get_job(job.id).task_counts == {D: 1, F: 1}


# --- Cosmos DB: what is sent, and folding --------------------------------------------


class Recording:
    """A container proxy that records the calls the adapter makes, then makes them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args[0] if args else None))
            return method(*args, **kwargs)

        return call


def _tallies_of(store: Any, job_id: int) -> list[dict[str, Any]]:
    _, found = tallies.split(store._query(store._jobs, tallies.job_and_tallies(job_id)))
    return found


@pytest.fixture
def cosmos(cosmos_endpoint: str, tmp_path: Path) -> Iterator[Any]:
    """A CosmosStore on the stand-in (started by the cosmos_endpoint fixture)."""
    store = open_cosmos_store(tmp_path)
    yield store
    store.close()
    drop_cosmos_database(tmp_path)


@pytestmark_cosmos
def test_cosmos_counts_only_commit_creates_a_tally_and_sends_no_job_replace(cosmos: Any) -> None:
    job, tasks = add_job(cosmos, 2)
    recording = Recording(cosmos._jobs)
    cosmos._jobs = recording
    _move(job, tasks[0], D)
    cosmos.commit(job=job, tasks=[tasks[0]])
    cosmos._jobs = recording.inner
    written = [
        (name, arg if isinstance(arg, str) else (arg or {}).get("id"))
        for name, arg in recording.calls
        if name in ("replace_item", "create_item", "upsert_item", "execute_item_batch")
    ]
    assert ("replace_item", docs.JOB_DOC_ID) not in written
    assert ("replace_item", docs.task_doc_id(1)) in written
    [tally] = _tallies_of(cosmos, job.id)
    assert tally["id"].startswith("tally-") and tally["type"] == "tally"
    assert tally["body"] == {"states": {"Queued": -1, "Dispatching": 1}, "steps": {}}


@pytestmark_cosmos
def test_cosmos_a_read_with_many_tallies_folds_them(cosmos: Any) -> None:
    job, tasks = add_job(cosmos, tallies.FOLD_AT + 2)
    for task in tasks:
        _move(job, task, D)  # (from add_job's copy: no read folds them before the test does)
        cosmos.commit(job=job, tasks=[task])
    assert len(_tallies_of(cosmos, job.id)) == tallies.FOLD_AT + 2
    folded = cosmos.get_job(job.id)  # sees more than FOLD_AT: folds, and returns the sums
    assert folded.task_counts == {D: tallies.FOLD_AT + 2}
    assert _tallies_of(cosmos, job.id) == []
    again = cosmos.get_job(job.id)
    assert again.task_counts == {D: tallies.FOLD_AT + 2}
    assert again.etag != job.etag  # the fold replaced the job document (add_job's etag)


@pytestmark_cosmos
def test_cosmos_the_reconciler_folds_every_tallied_job(cosmos: Any) -> None:
    first, ftasks = add_job(cosmos, 2)
    second, stasks = add_job(cosmos, 1)
    for job, task in [(first, ftasks[0]), (first, ftasks[1]), (second, stasks[0])]:
        copy = cosmos.get_job(job.id)
        _move(copy, task, F)
        cosmos.commit(job=copy, tasks=[task])
    assert cosmos.fold_counts() == 2
    assert _tallies_of(cosmos, first.id) == _tallies_of(cosmos, second.id) == []
    assert cosmos.get_job(first.id).task_counts == {F: 2}
    assert cosmos.get_job(second.id).task_counts == {F: 1}
    assert cosmos.fold_counts() == 0


@pytestmark_cosmos
def test_cosmos_a_fold_that_conflicts_changes_nothing(cosmos: Any) -> None:
    job, tasks = add_job(cosmos, 2)
    _move(job, tasks[0], D)
    cosmos.commit(job=job, tasks=[tasks[0]])
    doc, found = tallies.split(cosmos._query(cosmos._jobs, tallies.job_and_tallies(job.id)))
    assert doc is not None
    rival = cosmos.get_job(job.id)
    rival.name = "renamed"
    cosmos.commit(job=rival)  # the job document changes after the fold read it
    assert not tallies.fold(cosmos._jobs, cosmos._hook, batch=cosmos.batch, job=doc, tallies=found)
    assert [t["id"] for t in _tallies_of(cosmos, job.id)] == [t["id"] for t in found]
    stored = cosmos.get_job(job.id)
    assert (stored.name, stored.etag, stored.task_counts) == ("renamed", rival.etag, {Q: 1, D: 1})


@pytestmark_cosmos
def test_cosmos_a_fold_cut_short_before_its_deletes_counts_nothing_twice(cosmos: Any) -> None:
    """The stand-in's fold is one request at a time: the job document names the tallies it
    absorbed, so a crash between its replace and its deletes (simulated: the deletes are
    lost) neither double-counts on a read nor on the next fold, which cleans up."""
    if cosmos.batch:
        pytest.skip("the one-at-a-time fold is the stand-in's")
    job, tasks = add_job(cosmos, 2)
    for task in tasks:
        copy = cosmos.get_job(job.id)
        _move(copy, task, F)
        cosmos.commit(job=copy, tasks=[task])
    doc, found = tallies.split(cosmos._query(cosmos._jobs, tallies.job_and_tallies(job.id)))
    assert doc is not None
    recording: Any = Recording(cosmos._jobs)
    recording.delete_item = lambda *_a, **_k: None  # the crash: no delete happens
    assert tallies.fold(recording, cosmos._hook, batch=False, job=doc, tallies=found)
    assert len(_tallies_of(cosmos, job.id)) == 2  # still there, but absorbed
    assert cosmos.get_job(job.id).task_counts == {F: 2}
    copy = cosmos.get_job(job.id)
    copy.name = "another write of the job"  # a job-field write keeps the absorbed list
    cosmos.commit(job=copy)
    assert cosmos.get_job(job.id).task_counts == {F: 2}
    assert cosmos.fold_counts() == 0  # nothing live to fold
    assert cosmos.get_job(job.id).task_counts == {F: 2}


def test_cosmos_tally_queries_are_parameterised_and_name_their_partition() -> None:
    check_parameterised(tallies.job_and_tallies(7))
    check_partition(tallies.job_and_tallies(7))
    for name in tallies.CROSS_PARTITION:
        query = getattr(tallies, name)(*([[7, 8]] if name == "tallies_of" else []))
        check_parameterised(query)
        assert query.partition_key is None


# --- Cosmos DB's transactional batch (the stand-in lacks it): a recording container ------


class BatchJobs:
    """A jobs container answering as Cosmos DB does: batches all-or-nothing with per-op
    etag checks, point reads, and the two tally queries the adapter runs."""

    def __init__(self) -> None:
        self.docs: dict[tuple[int, str], dict[str, Any]] = {}
        self.batches: list[list[tuple[Any, ...]]] = []

    def put(self, doc: dict[str, Any]) -> None:
        self.docs[(doc["jobId"], doc["id"])] = {**doc, "_etag": uuid.uuid4().hex}

    def read_item(self, item: str, partition_key: int, **_: Any) -> dict[str, Any]:
        from tests.contract.cosmos_fixtures import _error

        if (partition_key, item) not in self.docs:
            raise _error(404, "Not Found")
        return dict(self.docs[(partition_key, item)])

    def query_items(self, *, query: str, parameters: list[dict[str, Any]], **_: Any) -> list:
        values = {p["name"]: p["value"] for p in parameters}
        out = []
        for (pk, _id), doc in sorted(self.docs.items()):
            if "@jobId" in values and pk != values["@jobId"]:
                continue
            if doc.get("type") == "tally" or (doc["id"] == "job" and "@job" in values):
                out.append(doc if not query.startswith("SELECT c.jobId") else {"jobId": pk})
        return out

    def execute_item_batch(self, ops: list, partition_key: int, **_: Any) -> list[dict]:
        self.batches.append(ops)
        staged = dict(self.docs)
        results: list[dict[str, Any]] = []
        for index, (kind, args, *rest) in enumerate(ops):
            options = rest[0] if rest else {}
            doc_id = args[0] if kind in ("replace", "delete") else args[0]["id"]
            key = (partition_key, doc_id)
            fails = (
                (kind == "create" and key in staged)
                or (kind != "create" and key not in staged)
                or (kind == "replace" and staged[key]["_etag"] != options.get("if_match_etag"))
            )
            if fails:
                raise CosmosBatchOperationError(
                    error_index=index, headers={}, status_code=412,
                    message="batch failed", operation_responses=[{"statusCode": 412}] * len(ops),
                )  # fmt: skip
            if kind == "delete":
                del staged[key]
                results.append({"statusCode": 204})
                continue
            etag = uuid.uuid4().hex
            staged[key] = {**args[-1], "_etag": etag}
            results.append({"statusCode": 200, "eTag": etag})
        self.docs = staged
        return results


def _batch_store(job: Job, tasks: list[Task]) -> tuple[Any, BatchJobs]:
    from shared.adapters.cosmos_jobs import CosmosJobs

    store = CosmosJobs.__new__(CosmosJobs)
    container = BatchJobs()
    container.put(docs.job_doc(job))
    for task in tasks:
        container.put(docs.task_doc(task))
    store._jobs = container  # type: ignore[assignment]
    store.batch = True
    store._hook = lambda *_a, **_k: None  # type: ignore[method-assign]
    return store, container


def test_cosmos_batch_counts_only_commit_is_one_batch_of_task_replaces_and_a_tally() -> None:
    job = Job(id=7, task_count=2, task_counts={Q: 2})
    tasks = [Task(job_id=7, id=i, command="x") for i in (1, 2)]
    store, container = _batch_store(job, tasks)
    read = store.get_job(7)
    task = Task.model_validate(container.docs[(7, "task-1")]["body"])
    task.etag = container.docs[(7, "task-1")]["_etag"]
    _move(read, task, D)
    store.commit(job=read, tasks=[task])
    [ops] = container.batches
    assert [(op[0], op[1][0] if op[0] == "replace" else op[1][0]["type"]) for op in ops] == [
        ("replace", "task-1"),
        ("create", "tally"),
    ]
    assert store.get_job(7).task_counts == {Q: 1, D: 1}
    assert store.get_job(7).etag == read.etag == container.docs[(7, "job")]["_etag"]


def test_cosmos_batch_fold_is_one_batch_replacing_the_job_under_its_etag() -> None:
    job = Job(id=7, task_count=200, task_counts={Q: 200})
    store, container = _batch_store(job, [])
    for _ in range(120):
        delta = Job(id=7)
        delta.count(Q, F)
        container.put(tallies.tally_doc(7, delta.counts_delta()))
    etag = container.docs[(7, "job")]["_etag"]
    assert store.get_job(7).task_counts == {Q: 80, F: 120}  # read, summed, folded
    [ops] = container.batches
    assert len(ops) == 100
    assert ops[0][0] == "replace" and ops[0][2] == {"if_match_etag": etag}
    assert {op[0] for op in ops[1:]} == {"delete"}
    assert len([d for d in container.docs.values() if d["type"] == "tally"]) == 21
    assert store.get_job(7).task_counts == {Q: 80, F: 120}
    assert store.fold_counts() == 1
    assert store.get_job(7).task_counts == {Q: 80, F: 120}
    assert not [d for d in container.docs.values() if d["type"] == "tally"]


def test_cosmos_batch_fold_that_conflicts_is_skipped_whole() -> None:
    job = Job(id=7, task_count=2, task_counts={Q: 2})
    store, container = _batch_store(job, [])
    delta = Job(id=7)
    delta.count(Q, F)
    container.put(tallies.tally_doc(7, delta.counts_delta()))
    doc, found = tallies.split(
        container.query_items(
            query="", parameters=[{"name": "@jobId", "value": 7}, {"name": "@job", "value": "job"}]
        )
    )
    container.put(docs.job_doc(job))  # another writer: a new etag
    before = dict(container.docs)
    assert not tallies.fold(container, store._hook, batch=True, job=doc, tallies=found)  # type: ignore[arg-type]
    assert container.docs == before
