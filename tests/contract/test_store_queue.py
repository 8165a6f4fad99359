"""The Store contract, scheduling queries: queued tasks in order, active tasks by node
(and, on SQLite, that those queries are index scans).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from shared.adapters.sqlite_store import SqliteStore
from shared.domain.states import TaskState
from shared.ports.store import Store
from tests.contract.store_fixtures import T0, add_job, keys

# --- scheduling queries -----------------------------------------------------


def test_queued_tasks_come_in_priority_then_submit_order(store: Store) -> None:
    late_normal, _ = add_job(store, 2, priority=2000, submit_time=T0 + timedelta(seconds=2))
    high, _ = add_job(store, 2, priority=4000, submit_time=T0 + timedelta(seconds=3))
    # Same priority and submit time: the lower job id first, though stored second.
    early_a_id = store.next_job_id()
    early_b, _ = add_job(store, 2, priority=2000, submit_time=T0 + timedelta(microseconds=1))
    early_a, _ = add_job(
        store, 2, priority=2000, submit_time=T0 + timedelta(microseconds=1), job_id=early_a_id
    )
    earliest, _ = add_job(store, 1, priority=2000, submit_time=T0)
    low, _ = add_job(store, 1, priority=0, submit_time=T0 - timedelta(days=1))
    # Task ids stored out of order, to rule out insertion order.
    reversed_ids, _ = add_job(
        store, priority=4000, submit_time=T0 + timedelta(seconds=3), task_ids=[2, 1]
    )
    expected = [
        (high.id, 1), (high.id, 2),
        (reversed_ids.id, 1), (reversed_ids.id, 2),
        (earliest.id, 1),
        (early_a.id, 1), (early_a.id, 2),
        (early_b.id, 1), (early_b.id, 2),
        (late_normal.id, 1), (late_normal.id, 2),
        (low.id, 1),
    ]  # fmt: skip
    assert keys(store.queued_tasks(limit=100)) == expected
    assert keys(store.queued_tasks(limit=3)) == expected[:3]
    assert store.queued_tasks(limit=0) == []


def test_queued_tasks_skip_tasks_in_other_states(store: Store) -> None:
    job, tasks = add_job(store, 3)
    tasks[0].move_to(TaskState.DISPATCHING)
    tasks[0].node = "n1"
    tasks[2].move_to(TaskState.CANCELED)
    store.commit(tasks=[tasks[0], tasks[2]])
    assert keys(store.queued_tasks(limit=10)) == [(job.id, 2)]


def test_queued_tasks_follow_priority_changes_made_by_commit(store: Store) -> None:
    first, _ = add_job(store, 1, priority=2000)
    second, second_tasks = add_job(store, 1, priority=2000)
    second_tasks[0].priority = 4000
    store.commit(tasks=second_tasks)
    assert keys(store.queued_tasks(limit=10)) == [(second.id, 1), (first.id, 1)]


def test_requeued_task_is_queued_again(store: Store) -> None:
    job, tasks = add_job(store, 1)
    tasks[0].move_to(TaskState.DISPATCHING)
    tasks[0].node = "n1"
    store.commit(tasks=tasks)
    assert store.queued_tasks(limit=10) == []
    tasks[0].move_to(TaskState.QUEUED)
    store.commit(tasks=tasks)
    assert keys(store.queued_tasks(limit=10)) == [(job.id, 1)]
    assert store.active_tasks() == []


def test_active_tasks_are_the_dispatching_and_running_tasks_of_a_node(store: Store) -> None:
    job, tasks = add_job(store, 5)
    placements = {1: ("n1", TaskState.DISPATCHING), 2: ("n1", TaskState.RUNNING),
                  3: ("n2", TaskState.RUNNING), 4: ("n1", TaskState.FINISHED)}  # fmt: skip
    for task in tasks:
        if task.id in placements:
            node, state = placements[task.id]
            task.node = node
            task.move_to(TaskState.DISPATCHING)
            if state is not TaskState.DISPATCHING:
                task.move_to(state)
    store.commit(tasks=tasks)
    assert sorted(keys(store.active_tasks(node="n1"))) == [(job.id, 1), (job.id, 2)]
    assert keys(store.active_tasks(node="n2")) == [(job.id, 3)]
    assert store.active_tasks(node="n3") == []
    assert sorted(keys(store.active_tasks())) == [(job.id, 1), (job.id, 2), (job.id, 3)]


def test_finished_task_no_longer_holds_cores(store: Store) -> None:
    job, tasks = add_job(store, 1)
    tasks[0].node = "n1"
    tasks[0].move_to(TaskState.DISPATCHING)
    store.commit(tasks=tasks)
    tasks[0].move_to(TaskState.FINISHED)
    store.commit(tasks=tasks)
    assert store.active_tasks(node="n1") == []


# --- SQLite adapter only: the scheduler's queries are index scans -------------


def test_sqlite_scheduler_queries_use_their_indexes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    con = store._con()  # the adapter's own connection, to capture its SQL
    statements: list[str] = []
    con.set_trace_callback(statements.append)
    store.queued_tasks(limit=10)
    store.active_tasks(node="n1")
    store.active_tasks()
    con.set_trace_callback(None)
    assert len(statements) == 3
    for sql in statements:
        plan = " | ".join(row[3] for row in con.execute("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX tasks_" in plan, (sql, plan)
        assert "TEMP B-TREE" not in plan, (sql, plan)
    store.close()
