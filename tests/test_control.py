"""The control plane's use cases on the embedded store and bus, with a hand-driven clock.

The agent side is played by the test: it reads the node's session and sends
events, so each rule (idempotent events, retries, cancel, requeue) is pinned
without processes or timing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.local_output import LocalOutputStore
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_store import SqliteStore
from shared.usecases.control_plane import ControlPlane
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.domain.messages import (
    ASSIGNMENT,
    NODES_QUEUE,
    SCHEDULER_QUEUE,
    CancelTask,
    Heartbeat,
    NodeRegistered,
    NodeStopping,
    RunTask,
    TaskEnded,
    TaskStarted,
)
from shared.settings import Settings
from shared.domain.states import JobState, NodeState, TaskState
from shared.wiring import declare_queues


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cp(tmp_path, clock) -> ControlPlane:
    bus = SqliteBus(tmp_path / "bus.db")
    declare_queues(bus)
    settings = Settings(home=tmp_path, heartbeat_timeout_s=10, dispatch_timeout_s=30)
    return ControlPlane(
        store=SqliteStore(tmp_path / "store.db"),
        bus=bus,
        output=LocalOutputStore(tmp_path / "out"),
        settings=settings,
        clock=clock,
    )


def register(cp: ControlPlane, name: str, cores: int = 2, groups=("OnPremNodes",), inc="i1"):
    cp.apply_events([NodeRegistered(node=name, groups=list(groups), cores=cores, incarnation=inc)])


def assignments(cp: ControlPlane, node: str) -> list[RunTask | CancelTask]:
    """What the node's agent would receive now (completed, as the agent would)."""
    out = []
    with cp.bus.get_session_receiver(NODES_QUEUE, session_id=node) as rx:
        while batch := rx.receive(max_messages=100, max_wait_ms=0):
            for m in batch:
                out.append(ASSIGNMENT.validate_json(m.body))
                rx.complete(m)
    return out


def run_all(cp: ControlPlane, node: str, exit_code: int = 0) -> list[RunTask]:
    runs = [a for a in assignments(cp, node) if isinstance(a, RunTask)]
    cp.apply_events(
        [
            TaskStarted(node=node, job_id=r.job_id, task_id=r.task_id, attempt=r.attempt)
            for r in runs
        ]
        + [
            TaskEnded(
                node=node,
                job_id=r.job_id,
                task_id=r.task_id,
                attempt=r.attempt,
                exit_code=exit_code,
                output=f"out {r.task_id}",
            )
            for r in runs
        ]
    )
    return runs


def sweep(n: int, **extra) -> dict:
    return {
        "name": "s",
        "tasks": [{"command": "echo $HPC_SWEEP_INDEX", "sweep": f"1-{n}"}],
        **extra,
    }


# --- submit ---------------------------------------------------------------------------


def test_submit_to_an_unknown_node_group_is_404_and_stores_nothing(cp):
    register(cp, "n1")
    with pytest.raises(
        NotFound, match="node group 'Nope' does not exist; known groups: AzureNodes, OnPremNodes"
    ):
        cp.submit({"nodeGroups": ["Nope"], "command": "x"})
    assert cp.list_jobs() == []


def test_submit_asking_more_cores_than_the_largest_node_says_how_many_there_are(cp):
    register(cp, "n1", cores=4)
    with pytest.raises(InvalidRequest, match="asks for 8 cores but the largest node .* has 4"):
        cp.submit({"command": "x", "cores": 8, "nodeGroup": "OnPremNodes"})
    assert cp.list_jobs() == []


def test_submit_to_a_group_without_nodes_is_refused(cp):
    register(cp, "n1")
    with pytest.raises(InvalidRequest, match="AzureNodes has no nodes yet"):
        cp.submit({"command": "x", "nodeGroup": "AzureNodes"})


def test_submit_over_the_task_limit_is_refused(cp):
    register(cp, "n1")
    cp.settings.max_tasks_per_job = 10
    with pytest.raises(InvalidRequest, match="11 tasks; at most 10"):
        cp.submit(sweep(11))


def test_submitted_job_is_queued_with_its_task_counts_and_kicks_the_scheduler(cp):
    register(cp, "n1")
    job = cp.submit(sweep(5))
    stored = cp.get_job(job.id)
    assert stored.state is JobState.QUEUED
    assert stored.task_counts == {TaskState.QUEUED: 5}
    assert cp.bus.count(SCHEDULER_QUEUE) >= 1


# --- scheduling and events ------------------------------------------------------------------


def test_a_pass_dispatches_within_cores_and_sends_each_node_its_tasks(cp):
    register(cp, "n1", cores=2)
    register(cp, "n2", cores=2)
    job = cp.submit(sweep(10))
    assert cp.schedule_pass() == 4
    assert cp.schedule_pass() == 0  # nothing free until tasks end
    runs = assignments(cp, "n1") + assignments(cp, "n2")
    assert len(runs) == 4
    first = runs[0]
    assert first.env["HPC_JOB_ID"] == str(job.id)
    assert first.env["HPC_SWEEP_INDEX"] == str(first.task_id)
    assert first.env["HPC_NODE_GROUP"] == "OnPremNodes"
    assert cp.get_job(job.id).state is JobState.RUNNING
    assert cp.get_job(job.id).task_counts == {TaskState.QUEUED: 6, TaskState.DISPATCHING: 4}


def test_a_sweep_runs_to_finished_and_every_task_is_counted_once(cp):
    register(cp, "n1", cores=2)
    job = cp.submit(sweep(5))
    while cp.schedule_pass():
        run_all(cp, "n1")
    final = cp.get_job(job.id)
    assert final.state is JobState.FINISHED
    assert final.task_counts == {TaskState.FINISHED: 5}
    assert [t.output for t in cp.list_tasks(job.id)] == [f"out {i}" for i in range(1, 6)]


def test_duplicate_and_stale_events_change_nothing(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = run_all(cp, "n1")
    before = cp.get_job(job.id)
    cp.apply_events(
        [
            TaskEnded(node="n1", job_id=job.id, task_id=1, attempt=run.attempt, exit_code=1),
            TaskEnded(node="n1", job_id=job.id, task_id=1, attempt=run.attempt + 5, exit_code=1),
            TaskStarted(node="n1", job_id=job.id, task_id=1, attempt=run.attempt),
        ]
    )
    after = cp.get_job(job.id)
    assert after.task_counts == before.task_counts == {TaskState.FINISHED: 1}
    assert cp.get_task(job.id, 1).exit_code == 0


def test_a_failed_task_fails_the_job_after_the_rest_finish(cp):
    register(cp, "n1", cores=4)
    job = cp.submit(sweep(2))
    cp.schedule_pass()
    runs = [a for a in assignments(cp, "n1") if isinstance(a, RunTask)]
    cp.apply_events(
        [
            TaskEnded(node="n1", job_id=job.id, task_id=runs[0].task_id, attempt=0, exit_code=3),
        ]
    )
    assert cp.get_job(job.id).state is JobState.RUNNING
    cp.apply_events(
        [
            TaskEnded(node="n1", job_id=job.id, task_id=runs[1].task_id, attempt=0, exit_code=0),
        ]
    )
    final = cp.get_job(job.id)
    assert final.state is JobState.FAILED
    assert final.error == "1 of 2 tasks failed"


def test_higher_priority_job_is_placed_first(cp):
    register(cp, "n1", cores=1)
    low = cp.submit({"command": "x", "priority": "Lowest"})
    high = cp.submit({"command": "x", "priority": "Highest"})
    cp.schedule_pass()
    [run] = assignments(cp, "n1")
    assert run.job_id == high.id
    assert cp.get_job(low.id).state is JobState.QUEUED


# --- node loss ------------------------------------------------------------------------------


def test_silent_node_becomes_unreachable_and_its_tasks_are_requeued_as_a_new_attempt(cp, clock):
    register(cp, "n1", cores=2)
    register(cp, "n2", cores=2)
    job = cp.submit(sweep(2, nodeGroups=["OnPremNodes"]))
    cp.schedule_pass()
    lost = [a for a in assignments(cp, "n1") if isinstance(a, RunTask)]
    clock.advance(11)
    cp.apply_events([Heartbeat(node="n2", incarnation="i1", free_cores=2)])
    cp.reconcile()
    assert cp.store.get_node("n1").state is NodeState.UNREACHABLE
    assert cp.store.get_node("n2").state is NodeState.ONLINE
    for run in lost:
        task = cp.get_task(job.id, run.task_id)
        assert task.state is TaskState.QUEUED and task.attempt == 1
    # The lost node's late report of the old attempt is ignored.
    cp.apply_events(
        [TaskEnded(node="n1", job_id=job.id, task_id=lost[0].task_id, attempt=0, exit_code=0)]
    )
    assert cp.get_task(job.id, lost[0].task_id).state is TaskState.QUEUED
    while cp.schedule_pass():
        run_all(cp, "n2")
    assert cp.get_job(job.id).task_counts == {TaskState.FINISHED: 2}


def test_task_is_failed_after_losing_its_node_more_than_max_retries(cp, clock):
    job = None
    for round_ in range(3):
        register(cp, "n1", cores=1, inc=f"i{round_}")
        if job is None:
            job = cp.submit({"command": "x", "maxRetries": 1})
        cp.schedule_pass()
        clock.advance(11)
        cp.reconcile()
    task = cp.get_task(job.id, 1)
    assert task.state is TaskState.FAILED
    assert "unreachable" in task.error and "requeued 1 times" in task.error
    assert cp.get_job(job.id).state is JobState.FAILED


def test_unreachable_node_that_heartbeats_again_comes_back_online(cp, clock):
    register(cp, "n1")
    clock.advance(11)
    cp.reconcile()
    assert cp.store.get_node("n1").state is NodeState.UNREACHABLE
    cp.apply_events([Heartbeat(node="n1", incarnation="i1", free_cores=2)])
    assert cp.store.get_node("n1").state is NodeState.ONLINE


def test_node_back_from_unreachable_is_told_to_kill_attempts_that_were_requeued(cp, clock):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = assignments(cp, "n1")
    cp.apply_events([TaskStarted(node="n1", job_id=job.id, task_id=1, attempt=0)])
    clock.advance(11)
    cp.reconcile()  # n1 silent: task 1 requeued as attempt 1
    cp.apply_events([Heartbeat(node="n1", incarnation="i1", free_cores=0, running=["1.1.0"])])
    stray = [a for a in assignments(cp, "n1") if isinstance(a, CancelTask)]
    assert [(c.job_id, c.task_id, c.attempt) for c in stray] == [(job.id, 1, 0)]


def test_heartbeat_listing_only_its_own_tasks_cancels_nothing(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    assignments(cp, "n1")
    cp.apply_events(
        [Heartbeat(node="n1", incarnation="i1", free_cores=0, running=[f"{job.id}.1.0"])]
    )
    assert assignments(cp, "n1") == []


def test_restarted_agent_gets_its_lost_tasks_requeued(cp):
    register(cp, "n1", cores=1, inc="first")
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    register(cp, "n1", cores=1, inc="second")
    assert cp.get_task(job.id, 1).state is TaskState.QUEUED


def test_agent_stopping_cleanly_requeues_without_using_a_retry(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    cp.apply_events([NodeStopping(node="n1", incarnation="i1")])
    task = cp.get_task(job.id, 1)
    assert task.state is TaskState.QUEUED and task.requeue_count == 0
    assert cp.store.get_node("n1").state is NodeState.OFFLINE


def test_lost_dispatch_is_requeued_after_the_dispatch_timeout(cp, clock):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    clock.advance(31)
    cp.apply_events([Heartbeat(node="n1", incarnation="i1", free_cores=1)])
    cp.reconcile()
    assert cp.get_task(job.id, 1).state is TaskState.QUEUED


# --- cancel and requeue ---------------------------------------------------------------------


def test_cancel_cancels_queued_tasks_now_and_running_ones_through_their_agent(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(3))
    cp.schedule_pass()
    [run] = [a for a in assignments(cp, "n1") if isinstance(a, RunTask)]
    cp.apply_events([TaskStarted(node="n1", job_id=job.id, task_id=run.task_id, attempt=0)])
    canceled = cp.cancel_job(job.id)
    assert canceled.state is JobState.CANCELING
    [cancel] = assignments(cp, "n1")
    assert isinstance(cancel, CancelTask) and cancel.task_id == run.task_id
    assert cp.schedule_pass() == 0  # nothing of a canceling job is placed
    cp.apply_events(
        [
            TaskEnded(
                node="n1",
                job_id=job.id,
                task_id=run.task_id,
                attempt=0,
                exit_code=-15,
                canceled=True,
            )
        ]
    )
    final = cp.get_job(job.id)
    assert final.state is JobState.CANCELED
    assert final.task_counts == {TaskState.CANCELED: 3}


def test_cancel_of_a_finished_job_is_a_conflict(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    run_all(cp, "n1")
    with pytest.raises(Conflict, match="already Finished"):
        cp.cancel_job(job.id)


def test_requeue_runs_only_the_failed_tasks_again(cp):
    register(cp, "n1", cores=2)
    job = cp.submit(sweep(2))
    cp.schedule_pass()
    runs = [a for a in assignments(cp, "n1") if isinstance(a, RunTask)]
    cp.apply_events(
        [
            TaskEnded(node="n1", job_id=job.id, task_id=runs[0].task_id, attempt=0, exit_code=0),
            TaskEnded(node="n1", job_id=job.id, task_id=runs[1].task_id, attempt=0, exit_code=1),
        ]
    )
    assert cp.get_job(job.id).state is JobState.FAILED
    requeued = cp.requeue_job(job.id)
    assert requeued.state is JobState.QUEUED
    assert requeued.task_counts == {TaskState.FINISHED: 1, TaskState.QUEUED: 1}
    cp.schedule_pass()
    [again] = run_all(cp, "n1")
    assert again.task_id == runs[1].task_id and again.attempt == 1
    assert cp.get_job(job.id).state is JobState.FINISHED


def test_unknown_ids_are_not_found(cp):
    with pytest.raises(NotFound):
        cp.get_job(99)
    register(cp, "n1")
    job = cp.submit(sweep(1))
    with pytest.raises(NotFound):
        cp.get_task(job.id, 2)
    with pytest.raises(NotFound):
        cp.cancel_job(42)


def test_one_failing_event_does_not_stop_the_rest_of_the_batch(cp, monkeypatch):
    register(cp, "n1", cores=2)
    job = cp.submit(sweep(1))
    cp.schedule_pass()

    def broken(ev):
        raise RuntimeError("boom")

    monkeypatch.setattr(cp, "_on_stopping", broken)
    with pytest.raises(RuntimeError, match="boom"):
        cp.apply_events(
            [
                NodeStopping(node="n1", incarnation="i1"),
                TaskStarted(node="n1", job_id=job.id, task_id=1, attempt=0),
            ]
        )
    assert cp.get_task(job.id, 1).state is TaskState.RUNNING  # applied despite the failure


def test_agent_registering_on_a_stopping_node_brings_it_online(cp):
    register(cp, "n1")
    node = cp.store.get_node("n1")
    node.move_to(NodeState.STOPPING)
    cp.store.put_node(node)
    register(cp, "n1", inc="i2")
    assert cp.store.get_node("n1").state is NodeState.ONLINE
