"""The control plane's use cases on the embedded store and bus, with a hand-driven clock.

The agent side is played by :class:`tests.agent_double.AgentDouble`: it registers,
reads the node's session and sends stamped events, so each rule (idempotent events,
retries, cancel, requeue) is pinned without processes or timing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.local_output import LocalOutputStore
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.adapters.sqlite_store import SqliteStore
from shared.domain.messages import SCHEDULER_QUEUE, CancelTask, Superseded
from shared.domain.states import JobState, NodeState, TaskState
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.settings import Settings
from shared.usecases.control_plane import ControlPlane
from shared.usecases.deps import Backoff
from shared.wiring import declare_queues
from tests.agent_double import AgentDouble


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


def make_cp(tmp_path, clock) -> ControlPlane:
    bus = SqliteBus(tmp_path / "bus.db")
    declare_queues(SqliteBusAdmin(bus))
    settings = Settings(home=tmp_path, heartbeat_timeout_s=10, dispatch_timeout_s=30)
    return ControlPlane(
        store=SqliteStore(tmp_path / "store.db"),
        bus=bus,
        output=LocalOutputStore(tmp_path / "out"),
        settings=settings,
        clock=clock,
        backoff=Backoff(sleep=lambda _s: None),
    )


@pytest.fixture
def cp(tmp_path, clock) -> ControlPlane:
    return make_cp(tmp_path, clock)


def register(cp: ControlPlane, name: str, cores: int = 2, groups=("OnPremNodes",)) -> AgentDouble:
    agent = AgentDouble(cp, name, cores=cores, groups=groups)
    assert agent.register().accepted
    return agent


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
    assert SqliteBusAdmin(cp.bus).count(SCHEDULER_QUEUE) >= 1


# --- scheduling and events ------------------------------------------------------------------


def test_a_pass_dispatches_within_cores_and_sends_each_node_its_tasks(cp):
    n1 = register(cp, "n1", cores=2)
    n2 = register(cp, "n2", cores=2)
    job = cp.submit(sweep(10))
    assert cp.schedule_pass() == 4
    assert cp.schedule_pass() == 0  # nothing free until tasks end
    runs = n1.assignments() + n2.assignments()
    assert len(runs) == 4
    first = runs[0]
    assert first.env["HPC_JOB_ID"] == str(job.id)
    assert first.env["HPC_SWEEP_INDEX"] == str(first.task_id)
    assert first.env["HPC_NODE_GROUP"] == "OnPremNodes"
    assert cp.get_job(job.id).state is JobState.RUNNING
    assert cp.get_job(job.id).task_counts == {TaskState.QUEUED: 6, TaskState.DISPATCHING: 4}


def test_a_sweep_runs_to_finished_and_every_task_is_counted_once(cp):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(5))
    while cp.schedule_pass():
        n1.run_all()
    final = cp.get_job(job.id)
    assert final.state is JobState.FINISHED
    assert final.task_counts == {TaskState.FINISHED: 5}
    assert [t.output for t in cp.list_tasks(job.id)] == [f"out {i}" for i in range(1, 6)]


def test_duplicate_and_stale_events_change_nothing(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = n1.run_all()
    before = cp.get_job(job.id)
    n1.send(
        n1.ended(run, exit_code=1),
        n1.ended((job.id, 1, run.attempt + 5), exit_code=1),
        n1.started(run),
    )
    after = cp.get_job(job.id)
    assert after.task_counts == before.task_counts == {TaskState.FINISHED: 1}
    assert cp.get_task(job.id, 1).exit_code == 0


def test_a_failed_task_fails_the_job_after_the_rest_finish(cp):
    n1 = register(cp, "n1", cores=4)
    job = cp.submit(sweep(2))
    cp.schedule_pass()
    runs = n1.runs()
    n1.send(n1.ended(runs[0], exit_code=3))
    assert cp.get_job(job.id).state is JobState.RUNNING
    n1.send(n1.ended(runs[1], exit_code=0))
    final = cp.get_job(job.id)
    assert final.state is JobState.FAILED
    assert final.error == "1 of 2 tasks failed"


def test_higher_priority_job_is_placed_first(cp):
    n1 = register(cp, "n1", cores=1)
    low = cp.submit({"command": "x", "priority": "Lowest"})
    high = cp.submit({"command": "x", "priority": "Highest"})
    cp.schedule_pass()
    [run] = n1.assignments()
    assert run.job_id == high.id
    assert cp.get_job(low.id).state is JobState.QUEUED


# --- node loss ------------------------------------------------------------------------------


def test_silent_node_becomes_unreachable_and_its_tasks_are_requeued_as_a_new_attempt(cp, clock):
    n1 = register(cp, "n1", cores=2)
    n2 = register(cp, "n2", cores=2)
    cp.reconcile()  # the control plane is listening from now on
    job = cp.submit(sweep(2, nodeGroups=["OnPremNodes"]))
    cp.schedule_pass()
    lost = n1.runs()
    n1.send(*[n1.started(r) for r in lost])
    for _ in range(3):
        clock.advance(4)
        n2.send(n2.heartbeat())
        cp.reconcile()
    assert cp.store.get_node("n1").state is NodeState.UNREACHABLE
    assert cp.store.get_node("n2").state is NodeState.ONLINE
    for run in lost:
        task = cp.get_task(job.id, run.task_id)
        assert task.state is TaskState.QUEUED and task.attempt == 1
    # A late report of the old attempt that did not run to its end changes nothing.
    n1.send(n1.ended(lost[0], exit_code=None, canceled=True))
    assert cp.get_task(job.id, lost[0].task_id).state is TaskState.QUEUED
    while cp.schedule_pass():
        n2.run_all()
    assert cp.get_job(job.id).task_counts == {TaskState.FINISHED: 2}


def test_task_is_failed_after_losing_its_node_more_than_max_retries(cp, clock):
    job = None
    for _ in range(3):
        register(cp, "n1", cores=1)  # a new agent process each round (same machine)
        cp.reconcile()
        if job is None:
            job = cp.submit({"command": "x", "maxRetries": 1})
        cp.schedule_pass()
        for _ in range(3):
            clock.advance(4)
            cp.reconcile()
    task = cp.get_task(job.id, 1)
    assert task.state is TaskState.FAILED
    assert "unreachable" in task.error and "requeued 1 times" in task.error
    assert cp.get_job(job.id).state is JobState.FAILED


def test_unreachable_node_that_heartbeats_again_is_told_its_incarnation_is_over(cp, clock):
    n1 = register(cp, "n1")
    cp.reconcile()
    for _ in range(3):
        clock.advance(4)
        cp.reconcile()
    assert cp.store.get_node("n1").state is NodeState.UNREACHABLE
    n1.send(n1.heartbeat())
    assert cp.store.get_node("n1").state is NodeState.UNREACHABLE
    [over] = [r for r in n1.replies() if isinstance(r, Superseded)]
    assert over.incarnation == n1.incarnation and "unreachable" in over.reason
    again = AgentDouble(cp, "n1", host_id=n1.host_id)  # it registers again
    answer = again.register()
    assert answer.accepted and answer.incarnation == n1.incarnation + 1
    assert cp.store.get_node("n1").state is NodeState.ONLINE


def test_heartbeat_listing_an_attempt_the_node_does_not_own_cancels_it(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.heartbeat(running=[f"{job.id}.1.0", f"{job.id}.1.7"]))
    [cancel] = n1.assignments()
    assert isinstance(cancel, CancelTask)
    assert (cancel.job_id, cancel.task_id, cancel.attempt) == (job.id, 1, 7)
    assert run.attempt == 0


def test_heartbeat_listing_only_its_own_tasks_cancels_nothing(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    n1.assignments()
    n1.send(n1.heartbeat(running=[f"{job.id}.1.0"]))
    assert n1.assignments() == []


def test_restarted_agent_gets_its_lost_tasks_requeued(cp):
    first = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    second = AgentDouble(cp, "n1", cores=1, host_id=first.host_id)
    assert second.register().incarnation == first.incarnation + 1
    task = cp.get_task(job.id, 1)
    assert task.state is TaskState.QUEUED and task.attempt == 1


def test_agent_stopping_cleanly_requeues_without_using_a_retry(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    n1.send(n1.stopping())
    task = cp.get_task(job.id, 1)
    assert task.state is TaskState.QUEUED and task.requeue_count == 0
    assert cp.store.get_node("n1").state is NodeState.OFFLINE


def test_lost_dispatch_is_requeued_after_the_dispatch_timeout(cp, clock):
    n1 = register(cp, "n1", cores=1)
    cp.reconcile()
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    for _ in range(8):
        clock.advance(4)
        n1.send(n1.heartbeat())
        cp.reconcile()
    assert cp.get_task(job.id, 1).state is TaskState.QUEUED


# --- cancel and requeue ---------------------------------------------------------------------


def test_cancel_cancels_queued_tasks_now_and_running_ones_through_their_agent(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(3))
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    canceled = cp.cancel_job(job.id)
    assert canceled.state is JobState.CANCELING
    [cancel] = n1.assignments()
    assert isinstance(cancel, CancelTask) and cancel.task_id == run.task_id
    assert cancel.incarnation == n1.incarnation
    assert cp.schedule_pass() == 0  # nothing of a canceling job is placed
    n1.send(n1.ended(run, exit_code=-15, canceled=True))
    final = cp.get_job(job.id)
    assert final.state is JobState.CANCELED
    assert final.task_counts == {TaskState.CANCELED: 3}


def test_cancel_of_a_finished_job_is_a_conflict(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    n1.run_all()
    with pytest.raises(Conflict, match="already Finished"):
        cp.cancel_job(job.id)


def test_requeue_runs_only_the_failed_tasks_again(cp):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(2))
    cp.schedule_pass()
    runs = n1.runs()
    n1.send(n1.ended(runs[0], exit_code=0), n1.ended(runs[1], exit_code=1))
    assert cp.get_job(job.id).state is JobState.FAILED
    requeued = cp.requeue_job(job.id)
    assert requeued.state is JobState.QUEUED
    assert requeued.task_counts == {TaskState.FINISHED: 1, TaskState.QUEUED: 1}
    cp.schedule_pass()
    [again] = n1.run_all()
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


def test_one_failing_unit_does_not_stop_the_rest_of_the_batch(cp, monkeypatch):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = n1.runs()

    def broken(*_args):
        raise RuntimeError("boom")

    from shared.usecases import events

    monkeypatch.setattr(events, "_heartbeat", broken)
    with pytest.raises(RuntimeError, match="boom"):
        n1.send(n1.heartbeat(), n1.started(run))
    assert cp.get_task(job.id, 1).state is TaskState.RUNNING  # applied despite the failure


def test_agent_registering_on_a_stopping_node_brings_it_online(cp):
    n1 = register(cp, "n1")
    node = cp.store.get_node("n1")
    node.move_to(NodeState.STOPPING)
    cp.store.put_node(node)
    AgentDouble(cp, "n1", host_id=n1.host_id).register()
    assert cp.store.get_node("n1").state is NodeState.ONLINE


def test_retry_tries_a_lost_write_race_again_but_not_a_refusal(cp):
    """A Conflict (a stale etag) is retried from a fresh read; a Refused is the answer."""
    from shared.errors import Refused

    calls = []

    def race() -> str:
        calls.append("race")
        if len(calls) < 3:
            raise Conflict("changed since it was read")
        return "written"

    assert cp.deps.retry(race) == "written" and len(calls) == 3

    def refused() -> None:
        calls.append("refused")
        raise Refused("already Finished")

    with pytest.raises(Refused, match="already Finished"):
        cp.deps.retry(refused)
    assert calls.count("refused") == 1
