"""The Cosmos DB Store's index of the hot paths (shared/adapters/cosmos_index.py).

The stand-in ignores a query's partition key, so what is checked is what the adapter
sends: during a scheduler pass and a heartbeat (driven through the real use cases), every
query of the ``jobs`` and ``index`` containers names one partition. The pointers' rules
are pinned against the stand-in: a crash between a pointer's upsert and its batch leaves
an extra pointer (skipped by reads, deleted by the repair), a late conditional delete never
removes a newer pointer, the repair restores a lost one, and a task requeued and
re-dispatched is found exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters import cosmos_index_docs as ix
from shared.adapters.cosmos_index import Plan
from shared.adapters.cosmos_store import CosmosStore
from shared.adapters.local_output import LocalOutputStore
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.domain import lifecycle
from shared.domain.models import Host, Job, Task
from shared.domain.states import TaskState
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict
from shared.settings import Settings
from shared.usecases.control_plane import ControlPlane
from shared.usecases.deps import Backoff
from shared.wiring import declare_queues
from tests.contract.cosmos_fixtures import check_parameterised
from tests.contract.store_fixtures import T0, add_job, keys
from tests.contract.test_cosmos_batch import PointerContainer, batch_store
from tests.emulators import COSMOS_KEY, cosmos_database_name, drop_cosmos_database
from tests.test_control import Clock, register

INDEX_QUERIES = {
    "queue_tasks": ix.queue("task", 10),
    "queue_tasks_skip": ix.queue("task", 10, [3, 4]),
    "queue_ranges": ix.queue("range", 10, [3]),
    "active": ix.active(None),
    "active_node": ix.active("n1"),
    "pointers": ix.pointers(ix.QUEUE),
    "pointers_ids": ix.pointers(ix.ACTIVE, ["t-1-1"]),
    "pointers_of_job": ix.pointers_of_job(ix.QUEUE, 7),
}
SCANS = {
    "scan_queued": ix.scan_queued(),
    "scan_active": ix.scan_active(),
    "scan_open_ranges": ix.scan_open_ranges(),
}


def check_index_partition(query_text: str, parameters: list[dict], partition_key: Any) -> None:
    """An index query names its logical partition in its text and as its partition key."""
    assert partition_key in (ix.QUEUE, ix.ACTIVE), query_text
    assert re.search(r"\bWHERE c\.pk = @pk\b", query_text), query_text
    assert next(p["value"] for p in parameters if p["name"] == "@pk") == partition_key


# --- the queries' text (no server) ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(INDEX_QUERIES))
def test_index_queries_are_parameterised_and_read_one_partition(name: str) -> None:
    query = INDEX_QUERIES[name]
    check_parameterised(query)
    check_index_partition(query.text, query.parameters, query.partition_key)
    assert "enable_cross_partition_query" not in query.kwargs()


def test_only_the_repair_scans_cross_partitions() -> None:
    for query in SCANS.values():
        check_parameterised(query)
        assert query.kwargs()["enable_cross_partition_query"] is True
    assert set(SCANS) == set(ix.CROSS_PARTITION)


def test_the_queue_order_has_its_composite_index() -> None:
    order = re.search(r"ORDER BY (.*)$", ix.queue("task", 1).text)
    assert order is not None
    paths = ["/" + term.split()[0].removeprefix("c.") for term in order.group(1).split(",")]
    composites = [[p["path"] for p in c] for c in ix.INDEX_INDEXING["compositeIndexes"]]
    assert paths in composites


def test_a_pointer_is_judged_by_the_period_it_was_written_for() -> None:
    task = Task(job_id=1, id=1, command="x", attempt=2)
    queued = ix.queue_pointer(1, 1, 2000, 0, 2)
    assert ix.judge_task(ix.QUEUE, queued, task) == ix.CURRENT
    assert ix.judge_task(ix.QUEUE, {**queued, "gen": 1}, task) == ix.OVER  # an older period
    assert ix.judge_task(ix.QUEUE, {**queued, "gen": 3}, task) == ix.AHEAD  # a requeue in flight
    assert ix.judge_task(ix.ACTIVE, {"attempt": 2}, task) == ix.AHEAD  # a dispatch in flight
    assert ix.judge_task(ix.QUEUE, queued, None) == ix.AHEAD  # not written yet (add_job)
    lifecycle.tasks.dispatch(task, node="n1", incarnation=1, now=T0)
    assert ix.judge_task(ix.QUEUE, queued, task) == ix.OVER
    assert ix.judge_task(ix.ACTIVE, {"attempt": 2}, task) == ix.CURRENT
    task.move_to(TaskState.FINISHED, now=T0)
    assert ix.judge_task(ix.ACTIVE, {"attempt": 2}, task) == ix.OVER


def test_on_cosmos_pointers_go_in_batches_of_one_partition_before_the_commits_own() -> None:
    """The transactional-batch path (Cosmos DB; the stand-in lacks it), on recording
    containers: add_job creates its pointers 100 a batch first; a dispatch upserts its
    active pointers in one batch before its own batch, then deletes the queue pointers."""
    store, jobs = batch_store()
    index = store.index._container
    assert isinstance(index, PointerContainer)
    order: list[str] = []
    for name, container in (("jobs", jobs), ("index", index)):
        real = container.execute_item_batch

        def log(ops: Any, partition_key: Any, _real: Any = real, _n: str = name, **kw: Any) -> Any:
            order.append(f"{_n}:{partition_key}")
            return _real(ops, partition_key, **kw)

        container.execute_item_batch = log  # type: ignore[method-assign]
    job = Job(id=7)
    tasks = [Task(job_id=7, id=i, command="x") for i in range(1, 151)]
    store.add_job(job, tasks)
    assert order == ["index:queue", "index:queue", "jobs:7", "jobs:7"]
    assert [len(ops) for _, ops in index.batches] == [100, 50]
    assert {op[0] for _, ops in index.batches for op in ops} == {"create"}

    order.clear()
    for t in tasks[:2]:
        lifecycle.tasks.dispatch(t, node="n1", incarnation=1, now=T0)
    store.commit(tasks=tasks[:2])
    assert order == ["index:active", "jobs:7"]
    assert {i for pk, i in index.docs if pk == ix.ACTIVE} == {"t-7-1", "t-7-2"}
    assert len([1 for pk, _ in index.docs if pk == ix.QUEUE]) == 148  # the 2 left after


# --- against the stand-in ------------------------------------------------------------


@pytest.fixture
def cosmos_store(cosmos_endpoint: str, tmp_path: Path) -> Iterator[CosmosStore]:
    store = CosmosStore(cosmos_endpoint, COSMOS_KEY, cosmos_database_name(tmp_path))
    yield store
    store.close()
    drop_cosmos_database(tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def control_plane(store: CosmosStore, tmp_path: Path, clock: Clock) -> ControlPlane:
    bus = SqliteBus(tmp_path / "bus.db")
    declare_queues(SqliteBusAdmin(bus))
    return ControlPlane(
        store=store,
        bus=bus,
        output=LocalOutputStore(tmp_path / "out"),
        settings=Settings(home=tmp_path, heartbeat_timeout_s=10, dispatch_timeout_s=30),
        clock=clock,
        backoff=Backoff(sleep=lambda _s: None),
    )


class Sent:
    """Records every query the store sends, by container."""

    def __init__(self, store: CosmosStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.queries: list[tuple[str, dict[str, Any]]] = []
        containers = {"jobs": store._jobs, "cluster": store._cluster}
        containers["index"] = store.index._container
        for name, container in containers.items():
            real = container.query_items

            def record(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
                self.queries.append((_name, kw))
                return _real(*args, **kw)

            monkeypatch.setattr(container, "query_items", record)

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        out, self.queries = self.queries, []
        return out


@contextmanager
def late_removals(store: CosmosStore) -> Iterator[Callable[[], None]]:
    """Inside the block, commits hold back their "remove after" step; the function given runs
    the first one held back (a late delete), after the block if need be."""
    late: list[tuple[Plan, Sequence[Task]]] = []
    real_after = store.index.after_commit

    def hold_back(plan: Plan, tasks: Sequence[Task], ranges: Sequence[TaskRange]) -> None:
        late.append((plan, tasks))

    store.index.after_commit = hold_back  # type: ignore[method-assign]

    def run_late() -> None:
        plan, committed = late[0]
        real_after(plan, committed, [])

    try:
        yield run_late
    finally:
        store.index.after_commit = real_after  # type: ignore[method-assign]


def pointers(store: CosmosStore, pk: str) -> dict[str, dict]:
    return {p["id"]: p for p in store.index._query(ix.pointers(pk))}


def check_one_partition_each(sent: list[tuple[str, dict[str, Any]]]) -> None:
    for container, kw in sent:
        assert "enable_cross_partition_query" not in kw, (container, kw["query"])
        assert kw.get("partition_key") is not None, (container, kw["query"])
        if container == "cluster":  # the nodes or the groups, each one partition
            assert kw["partition_key"] in ("nodes", "groups"), kw["query"]
            assert re.search(r"\bc\.pk = @pk\b", kw["query"]), kw["query"]
        elif container == "index":
            check_index_partition(kw["query"], kw["parameters"], kw["partition_key"])
        else:
            assert re.search(r"\bc\.jobId = @jobId\b", kw["query"]), kw["query"]


@pytest.mark.cosmos
def test_a_scheduler_pass_and_a_heartbeat_query_one_partition_each(
    cosmos_store: CosmosStore, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cp = control_plane(cosmos_store, tmp_path, clock)
    n1 = register(cp, "n1", cores=2)
    cp.submit({"name": "s", "tasks": [{"command": "echo $HPC_SWEEP_INDEX", "sweep": "1-5"}]})
    cp.submit({"command": "x", "nodeGroups": ["OnPremNodes"]})
    sent = Sent(cosmos_store, monkeypatch)
    assert cp.schedule_pass() == 2
    during_pass = sent.take()
    runs = n1.runs()
    n1.send(*(n1.started(r) for r in runs))
    sent.take()
    n1.send(n1.heartbeat(running=[f"{r.job_id}.{r.task_id}.{r.attempt}" for r in runs]))
    during_heartbeat = sent.take()

    check_one_partition_each(during_pass)
    check_one_partition_each(during_heartbeat)
    index_pass = [kw["query"] for c, kw in during_pass if c == "index"]
    assert any("c.kind = @kind" in q for q in index_pass)  # the queue was read from the index
    assert any("ARRAY_CONTAINS(c.nodes, @node)" in kw["query"] for c, kw in during_heartbeat)
    assert {(t.job_id, t.id) for t in cosmos_store.active_tasks(node="n1")} == {
        (r.job_id, r.task_id) for r in runs
    }


@pytest.mark.cosmos
def test_a_crash_between_the_pointer_upsert_and_the_batch_leaves_an_extra_pointer(
    cosmos_store: CosmosStore,
) -> None:
    class Crash(BaseException):
        pass

    def crash(_where: str) -> None:
        raise Crash

    store = cosmos_store
    job, _ = add_job(store, 2)
    task = store.get_task(job.id, 1)
    lifecycle.tasks.dispatch(task, node="n1", incarnation=1, now=T0)
    store.index.fault = crash
    with pytest.raises(Crash):
        store.commit(tasks=[task])
    store.index.fault = None

    assert "t-1-1" in pointers(store, ix.ACTIVE)  # the extra pointer, ahead of its task
    assert store.active_tasks(node="n1") == [] and store.active_tasks() == []
    assert keys(store.queued_tasks(limit=10)) == [(job.id, 1), (job.id, 2)]
    # holdings() reads pointers alone: the crashed dispatch's core counts busy until repaired
    assert [(h.job_id, h.task_id) for h in store.holdings()] == [(job.id, 1)]
    assert store.repair_indexes() == {"created": 0, "deleted": 0}  # young: maybe in flight
    store.index.grace_s = 0
    assert store.repair_indexes() == {"created": 0, "deleted": 1}
    assert pointers(store, ix.ACTIVE) == {} and store.holdings() == []
    assert set(pointers(store, ix.QUEUE)) == {"t-1-1", "t-1-2"}  # the queued ones stay


@pytest.mark.cosmos
def test_a_late_conditional_delete_does_not_remove_a_newer_pointer(
    cosmos_store: CosmosStore,
) -> None:
    store = cosmos_store
    job, _ = add_job(store, 1)
    task = store.get_task(job.id, 1)
    lifecycle.tasks.dispatch(task, node="n1", incarnation=1, now=T0)
    store.commit(tasks=[task])
    # The requeue commits, but its "remove after" (of the attempt-0 active pointer) is late.
    with late_removals(store) as run_late:
        requeued = store.get_task(job.id, 1)
        lifecycle.tasks.lose_attempt(
            requeued, max_retries=3, canceling=False, reason="n1 lost", count=True, now=T0
        )
        store.commit(tasks=[requeued])
    # Meanwhile the new attempt is dispatched to n2 (its pointer upserted before its batch).
    again = store.get_task(job.id, 1)
    lifecycle.tasks.dispatch(again, node="n2", incarnation=1, now=T0 + timedelta(seconds=1))
    store.commit(tasks=[again])
    run_late()  # the late delete runs now

    active = pointers(store, ix.ACTIVE)
    assert active["t-1-1"]["attempt"] == 1 and active["t-1-1"]["nodes"] == ["n2"]
    assert keys(store.active_tasks(node="n2")) == [(job.id, 1)]
    assert store.active_tasks(node="n1") == []
    assert pointers(store, ix.QUEUE) == {}  # the attempt-1 queue pointer left after dispatch


@pytest.mark.cosmos
def test_a_late_delete_of_a_dispatched_tasks_queue_pointer_spares_its_requeue(
    cosmos_store: CosmosStore,
) -> None:
    store = cosmos_store
    job, _ = add_job(store, 1)
    with late_removals(store) as run_late:
        task = store.get_task(job.id, 1)
        lifecycle.tasks.dispatch(task, node="n1", incarnation=1, now=T0)
        store.commit(tasks=[task])  # its removal of the attempt-0 queue pointer is late
    requeued = store.get_task(job.id, 1)
    lifecycle.tasks.lose_attempt(
        requeued, max_retries=3, canceling=False, reason="n1 lost", count=True, now=T0
    )
    store.commit(tasks=[requeued])  # upserts the attempt-1 queue pointer first
    run_late()

    assert pointers(store, ix.QUEUE)["t-1-1"]["gen"] == 1
    assert [(t.key, t.attempt) for t in store.queued_tasks(limit=5)] == [("1.1", 1)]


@pytest.mark.cosmos
def test_a_stale_writer_never_replaces_the_pointer_of_a_later_period(
    cosmos_store: CosmosStore,
) -> None:
    store = cosmos_store
    job, _ = add_job(store, 1)
    stale = store.get_task(job.id, 1)  # Queued in attempt 0, read by a slow writer
    task = store.get_task(job.id, 1)
    lifecycle.tasks.dispatch(task, node="n1", incarnation=1, now=T0)
    store.commit(tasks=[task])
    lifecycle.tasks.lose_attempt(
        task, max_retries=3, canceling=False, reason="n1 lost", count=True, now=T0
    )
    store.commit(tasks=[task])  # Queued again, in attempt 1
    stale.priority = 4000
    with pytest.raises(Conflict):
        store.commit(tasks=[stale])

    assert pointers(store, ix.QUEUE)["t-1-1"]["gen"] == 1
    assert [(t.key, t.attempt) for t in store.queued_tasks(limit=5)] == [("1.1", 1)]


@pytest.mark.cosmos
def test_repair_restores_deleted_pointers(cosmos_store: CosmosStore) -> None:
    store = cosmos_store
    job, _ = add_job(store, 2)
    task = store.get_task(job.id, 2)
    lifecycle.tasks.dispatch(
        task, node="n1", incarnation=1, now=T0, hosts=[Host(node="n1", cores=1, incarnation=1)]
    )
    requeued = store.get_task(job.id, 1)  # (in its second attempt: the repair must say so)
    lifecycle.tasks.dispatch(requeued, node="n2", incarnation=1, now=T0)
    lifecycle.tasks.lose_attempt(
        requeued, max_retries=3, canceling=False, reason="n2 lost", count=True, now=T0
    )
    store.commit(tasks=[task, requeued])
    for pk in (ix.QUEUE, ix.ACTIVE):
        for doc_id in pointers(store, pk):
            store.index._container.delete_item(doc_id, partition_key=pk)
    assert store.queued_tasks(limit=10) == [] and store.active_tasks(node="n1") == []

    assert store.repair_indexes() == {"created": 2, "deleted": 0}
    assert [(t.key, t.attempt) for t in store.queued_tasks(limit=10)] == [(f"{job.id}.1", 1)]
    assert keys(store.active_tasks(node="n1")) == [(job.id, 2)]
    assert [(h.job_id, h.task_id) for h in store.holdings()] == [(job.id, 2)]
    assert store.repair_indexes() == {"created": 0, "deleted": 0}  # level-triggered: done


@pytest.mark.cosmos
def test_a_task_requeued_and_redispatched_is_found_exactly_once(
    cosmos_store: CosmosStore, tmp_path: Path, clock: Clock
) -> None:
    cp = control_plane(cosmos_store, tmp_path, clock)
    n1, n2 = register(cp, "n1", cores=1), register(cp, "n2", cores=1)
    cp.reconcile()
    job = cp.submit({"command": "x", "nodeGroups": ["OnPremNodes"]})
    cp.schedule_pass()
    owner, other = (n1, n2) if cp.get_task(job.id, 1).node == "n1" else (n2, n1)
    [first] = owner.runs()
    owner.send(owner.started(first))
    for _ in range(4):  # the owner falls silent: its attempt is given up, the task requeued
        clock.advance(4)
        other.send(other.heartbeat())
        cp.reconcile()
    assert cp.get_task(job.id, 1).state is TaskState.QUEUED
    cp.schedule_pass()
    [second] = other.runs()
    other.send(other.started(second))

    assert second.attempt == first.attempt + 1
    store = cosmos_store
    assert keys(store.active_tasks()) == [(job.id, 1)]
    assert keys(store.active_tasks(node=other.name)) == [(job.id, 1)]
    assert store.active_tasks(node=owner.name) == []
    assert store.queued_tasks(limit=10) == []
    assert [(h.job_id, h.task_id) for h in store.holdings()] == [(job.id, 1)]
    assert list(pointers(store, ix.ACTIVE)) == ["t-1-1"] and pointers(store, ix.QUEUE) == {}


@pytest.mark.cosmos
def test_a_range_pointer_leaves_with_its_range_and_comes_back_when_it_reopens(
    cosmos_store: CosmosStore, tmp_path: Path, clock: Clock
) -> None:
    cp = control_plane(cosmos_store, tmp_path, clock)
    register(cp, "n1", cores=1)
    job = cp.submit({"name": "s", "tasks": [{"command": "x", "sweep": "1-3"}]})
    assert [r.job_id for r in cosmos_store.open_ranges(limit=5)] == [job.id]
    cp.cancel_job(job.id)
    assert cosmos_store.open_ranges(limit=5) == []
    assert [p["kind"] for p in pointers(cosmos_store, ix.QUEUE).values()] == []
    cp.requeue_job(job.id)
    assert [r.job_id for r in cosmos_store.open_ranges(limit=5)] == [job.id]
    assert cp.schedule_pass() == 1
    assert [r.left for r in cosmos_store.open_ranges(limit=5)] == [2]
