"""Exactly once, at the control plane: each defect of the "Exactly once" issue, pinned.

Agents are played by :class:`tests.agent_double.AgentDouble` over the real embedded
store and bus; the clock is driven by hand. The process-level fault tests (kill -9 of
the control plane and of agents) are in tests/test_faults.py.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shared.domain.messages import REJECTED_QUEUE, EndedAttempt
from shared.domain.states import NodeState, TaskState
from shared.errors import Conflict
from shared.ports.store import Store
from tests.agent_double import AgentDouble
from tests.test_control import Clock, make_cp, register, sweep

F, Q = TaskState.FINISHED, TaskState.QUEUED


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cp(tmp_path, clock):
    return make_cp(tmp_path, clock)


def listen(
    cp, clock, seconds: float, *agents: AgentDouble, running: list[str] | None = None
) -> None:
    """Let time pass with the reconciler running every 4 s and these agents heartbeating
    (listing ``running``)."""
    left = seconds
    while left > 0:
        step = min(4.0, left)
        clock.advance(step)
        left -= step
        for agent in agents:
            agent.send(agent.heartbeat(running=running))
        cp.reconcile()


# 1 ------------------------------------------------------------------------------------


def test_a_stop_that_arrives_before_the_end_sent_ahead_of_it_does_not_rerun_the_task(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = n1.runs()
    start, end, stop = n1.started(run), n1.ended(run), n1.stopping()
    n1.send(stop, end, start)  # one batch, delivered out of order
    task = cp.get_task(job.id, 1)
    assert task.state is F and task.attempt == 0
    assert cp.get_job(job.id).task_counts == {F: 1}
    assert cp.store.get_node("n1").state is NodeState.OFFLINE


def test_the_late_end_of_a_lost_attempt_is_kept_and_the_new_attempt_is_canceled(cp, clock):
    n1 = register(cp, "n1", cores=1)
    n2 = register(cp, "n2", cores=1)
    cp.reconcile()
    job = cp.submit({"command": "x", "nodeGroups": ["OnPremNodes"]})
    cp.schedule_pass()
    owner, other = (n1, n2) if cp.get_task(job.id, 1).node == "n1" else (n2, n1)
    [first] = owner.runs()
    owner.send(owner.started(first))
    listen(cp, clock, 16, other)  # owner is cut off: its attempt is given up
    cp.schedule_pass()
    [second] = other.runs()
    other.send(other.started(second))
    assert second.attempt == first.attempt + 1
    owner.send(owner.ended(first, exit_code=0))  # its end finally arrives
    task = cp.get_task(job.id, 1)
    assert task.state is F and task.result_attempt == first.attempt
    [cancel] = other.assignments()
    assert (cancel.kind, cancel.attempt) == ("cancel", second.attempt)
    other.send(other.ended(second, exit_code=-15, canceled=True))
    assert cp.get_job(job.id).task_counts == {F: 1}


def test_a_control_plane_that_was_away_does_not_declare_live_nodes_dead(cp, clock):
    n1 = register(cp, "n1", cores=1)
    cp.reconcile()
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    clock.advance(60)  # the control plane was down; n1's heartbeats wait in the queue
    cp.reconcile()  # back up: the first run must not judge n1 by the gap
    assert cp.store.get_node("n1").state is NodeState.ONLINE
    assert cp.get_task(job.id, 1).state is TaskState.RUNNING
    n1.send(n1.heartbeat(running=[f"{job.id}.1.0"]))  # the backlog is applied
    listen(cp, clock, 20, n1, running=[f"{job.id}.1.0"])
    assert cp.get_task(job.id, 1).state is TaskState.RUNNING


# 2 ------------------------------------------------------------------------------------


def test_assignments_carry_the_incarnation_and_a_new_one_requeues_the_old_ones_work(cp, clock):
    old = register(cp, "n1", cores=2)
    job = cp.submit(sweep(2))
    cp.schedule_pass()
    stale = old.runs()
    assert {r.incarnation for r in stale} == {old.incarnation}
    new = AgentDouble(cp, "n1", cores=2, host_id=old.host_id)  # restarted at once
    assert new.register().incarnation == old.incarnation + 1
    assert {t.state for t in cp.list_tasks(job.id)} == {Q}
    # The new agent drops and reports the old assignments: nothing changes.
    new.send(*[new.refused(r) for r in stale])
    assert {(t.state, t.attempt) for t in cp.list_tasks(job.id)} == {(Q, 1)}
    clock.advance(10.5)  # an end of the old incarnation may be in flight for an events lock
    cp.schedule_pass()
    assert {r.incarnation for r in new.runs()} == {new.incarnation}


def test_a_dispatch_to_an_incarnation_that_ended_meanwhile_is_requeued_when_refused(cp):
    old = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = old.runs()
    # Simulate the race: the placement was written for the old incarnation after the
    # new agent registered (the task still names incarnation `old`).
    node = cp.store.get_node("n1")
    node.incarnation += 1
    cp.store.put_node(node)
    new = AgentDouble(cp, "n1", cores=1, host_id=old.host_id)
    new.incarnation = node.incarnation
    new.send(new.refused(run))
    task = cp.get_task(job.id, 1)
    assert task.state is Q and task.attempt == 1 and task.requeue_count == 0


# 3 ------------------------------------------------------------------------------------


def test_a_lost_end_is_recovered_from_the_heartbeats_list_of_recent_endings(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    # TaskEnded never arrives; the next heartbeat says it ended.
    n1.send(n1.heartbeat(ended=[EndedAttempt(key=f"{job.id}.1.0", exit_code=0)]))
    task = cp.get_task(job.id, 1)
    assert task.state is F and task.attempt == 0
    assert cp.get_job(job.id).task_counts == {F: 1}


def test_a_running_attempt_its_node_forgot_is_requeued_once_its_end_cannot_be_in_flight(cp, clock):
    """Missing from heartbeats for the heartbeat timeout (10 s here) plus the events lock
    (10 s: an event held by a crashed handler comes back within it), it is requeued."""
    n1 = register(cp, "n1", cores=1)
    cp.reconcile()
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    listen(cp, clock, 16, n1)  # heartbeats list neither the attempt nor its end
    assert cp.get_task(job.id, 1).state is TaskState.RUNNING  # not yet: may be in flight
    listen(cp, clock, 12, n1)
    task = cp.get_task(job.id, 1)
    assert task.state is Q and task.attempt == 1
    assert "never reported its end" in task.error
    assert cp.store.get_node("n1").state is NodeState.ONLINE


# 4 ------------------------------------------------------------------------------------


def test_a_poison_event_is_parked_with_its_reason_and_the_good_ones_apply(cp):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(2))
    cp.schedule_pass()
    runs = n1.runs()
    good = [n1.started(r).to_bytes() for r in runs]
    poison = (
        n1.started(runs[0])
        .to_bytes()
        .replace(f'"taskId":{runs[0].task_id}'.encode(), f'"taskId":{2**70}'.encode())
    )
    garbage = b"\xff not json"
    cp.apply_event_messages([("m1", good[0]), ("m2", poison), ("m3", garbage), ("m4", good[1])])
    assert {t.state for t in cp.list_tasks(job.id)} == {TaskState.RUNNING}
    parked = {}
    with cp.bus.get_receiver(REJECTED_QUEUE) as rx:
        for m in rx.receive(max_messages=10, max_wait_ms=0):
            parked[m.message_id] = m
            rx.complete(m)
    assert set(parked) == {"m2", "m3"}
    assert parked["m2"].application_properties["DeadLetterReason"] == "InvalidEvent"
    assert "taskId" in parked["m2"].application_properties["DeadLetterErrorDescription"]
    assert parked["m3"].body == garbage


# 5 and 7 ----------------------------------------------------------------------------------


def test_a_late_registration_of_an_older_agent_is_refused_and_changes_nothing(cp, clock):
    older = AgentDouble(cp, "n1", cores=1)
    clock.advance(1)
    live = register(cp, "n1", cores=1)
    live.host_id = older.host_id = "same-host-id"
    node = cp.store.get_node("n1")
    node.host_id = "same-host-id"
    cp.store.put_node(node)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    answer = older.register()
    assert not answer.accepted and "older than the one holding the node" in answer.reason
    after = cp.store.get_node("n1")
    assert (after.incarnation, after.state, after.agent_id) == (
        live.incarnation,
        NodeState.ONLINE,
        live.agent_id,
    )
    assert cp.get_task(job.id, 1).state is TaskState.DISPATCHING


def test_an_impostor_under_a_live_nodes_name_is_refused_and_the_node_untouched(cp, clock):
    live = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = live.runs()
    live.send(live.started(run))
    impostor = AgentDouble(cp, "n1", cores=8, host_id="another-machine")
    answer = impostor.register()
    assert not answer.accepted
    assert "held by a live agent" in answer.reason and "--name" in answer.reason
    node = cp.store.get_node("n1")
    assert (node.incarnation, node.cores, node.state) == (live.incarnation, 1, NodeState.ONLINE)
    assert cp.get_task(job.id, 1).state is TaskState.RUNNING
    # Once the holder is silent past the timeout, the name is free.
    clock.advance(16)
    assert AgentDouble(cp, "n1", host_id="another-machine").register().accepted


# 6 ------------------------------------------------------------------------------------


class FlakyStore:
    """The real store, with commits refused at random (before writing), as a busy Cosmos
    DB refuses a write whose etag another writer just changed."""

    def __init__(self, store: Store, rng: random.Random, rate: float) -> None:
        self._store, self._rng, self._rate = store, rng, rate
        self.refused = 0

    def commit(self, *args, **kwargs):
        if self.refused == 0 or self._rng.random() < self._rate:
            self.refused += 1
            raise Conflict("injected conflict")
        return self._store.commit(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)


@pytest.mark.parametrize("seed", range(20))
def test_job_counters_equal_task_states_after_random_conflicts(cp, seed):
    n1 = register(cp, "n1", cores=200)
    job = cp.submit(sweep(150))
    cp.schedule_pass()
    runs = n1.runs()
    assert len(runs) == 150
    flaky = FlakyStore(cp.deps.store, random.Random(seed), rate=0.5)
    cp.deps.store = flaky  # type: ignore[assignment]
    events = [n1.started(r) for r in runs] + [n1.ended(r, exit_code=r.task_id % 3) for r in runs]
    random.Random(seed).shuffle(events)
    for i in range(0, len(events), 150):  # each batch holds events of more than 99 tasks
        for _ in range(20):  # the bus delivers a failed batch again
            try:
                cp.apply_events(events[i : i + 150])
                break
            except Conflict:
                continue
    assert flaky.refused > 0
    cp.deps.store = flaky._store
    tasks = cp.list_tasks(job.id, limit=1000)
    actual = Counter(t.state for t in tasks)
    stored = cp.get_job(job.id)
    assert stored.task_counts == dict(actual)
    assert sum(stored.task_counts.values()) == 150


def test_events_of_more_than_99_tasks_of_one_job_commit_each_task_once(cp):
    n1 = register(cp, "n1", cores=200)
    job = cp.submit(sweep(150))
    cp.schedule_pass()
    n1.run_all()
    assert cp.get_job(job.id).task_counts == {F: 150}


# duplicates, reordering, stale events: a whole burst ----------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_a_burst_with_every_event_duplicated_reordered_and_stale_ones_mixed_in(cp, seed):
    """Two nodes run a 300-task sweep; every event is delivered twice, batches are shuffled,
    and events of attempts and incarnations long gone are mixed in. No task may be
    dispatched again after it ran to its end, and every task is counted once."""
    rng = random.Random(seed)
    agents = [register(cp, f"n{i}", cores=4) for i in (1, 2)]
    stale = AgentDouble(cp, "n1", cores=4, host_id=agents[0].host_id)
    stale.incarnation = agents[0].incarnation  # an "older" copy, superseded below
    agents[0] = AgentDouble(cp, "n1", cores=4, host_id=agents[0].host_id)
    assert agents[0].register().accepted  # n1 restarted: `stale` is a dead incarnation
    job = cp.submit(sweep(300))
    ended_keys: set[int] = set()
    redispatched = []
    for _ in range(400):
        if not cp.schedule_pass() and cp.get_job(job.id).state.value == "Finished":
            break
        batch = []
        for agent in agents:
            for run in agent.runs():
                if run.task_id in ended_keys:
                    redispatched.append(run)
                batch += [agent.started(run), agent.ended(run)]
                ended_keys.add(run.task_id)
        batch += [
            stale.ended((job.id, rng.randint(1, 300), 0), exit_code=1),
            agents[1].ended((job.id, rng.randint(1, 300), 7), exit_code=1),
            stale.heartbeat(running=[f"{job.id}.{rng.randint(1, 300)}.0"]),
        ]
        doubled = batch + batch
        rng.shuffle(doubled)
        half = len(doubled) // 2
        cp.apply_events(doubled[:half])
        cp.apply_events(doubled[half:])
    assert redispatched == []
    final = cp.get_job(job.id)
    assert final.task_counts == {F: 300}
    assert all(t.exit_code == 0 and t.attempt == 0 for t in cp.list_tasks(job.id, limit=1000))


def test_a_restarted_agent_carries_recorded_ends_so_a_finished_task_is_not_requeued(cp):
    old = register(cp, "n1", cores=2)
    job = cp.submit(sweep(2))
    cp.schedule_pass()
    done, cut = old.runs()
    old.send(old.started(done), old.started(cut))
    # kill -9: `done` had run to its end (its shell recorded exit 0), `cut` had not.
    new = AgentDouble(cp, "n1", cores=2, host_id=old.host_id)
    request = new.request().model_copy(
        update={"ended": [EndedAttempt(key=f"{job.id}.{done.task_id}.0", exit_code=0)]}
    )
    cp.apply_events([request])
    finished, requeued = cp.get_task(job.id, done.task_id), cp.get_task(job.id, cut.task_id)
    assert (finished.state, finished.attempt) == (F, 0)
    assert (requeued.state, requeued.attempt) == (Q, 1)
    assert cp.get_job(job.id).task_counts == {F: 1, Q: 1}


def test_an_end_locked_by_a_dead_control_plane_is_waited_for_after_a_new_registration(cp, clock):
    """A probe: kill -9 of the whole ``hpc up`` tree. The agent had sent the task's end,
    which the dying control plane held locked on the events queue; the restarted agent's
    registration requeued the task at once, attempt 1 ran to its end within 5 s, and
    attempt 0's end, back after the lock, was dropped: the task ran to its end twice. Now
    the next attempt waits one events lock (10 s) or until that end comes."""
    old = register(cp, "n1", cores=1)
    job = cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = old.runs()
    old.send(old.started(run))
    late = old.ended(run)  # sent, but held locked by the control plane that died
    new = AgentDouble(cp, "n1", cores=1, host_id=old.host_id)
    assert new.register().accepted  # no end record: the old agent had sent its end
    task = cp.get_task(job.id, 1)
    assert (task.state, task.attempt) == (Q, 1)
    clock.advance(4)
    assert cp.schedule_pass() == 0  # held: attempt 0's end may still come
    cp.apply_events([late])  # the lock ran out: the end comes back
    task = cp.get_task(job.id, 1)
    assert (task.state, task.exit_code) == (F, 0)
    assert cp.schedule_pass() == 0 and new.runs() == []
    assert cp.get_job(job.id).task_counts == {F: 1}


def test_a_requeued_attempt_whose_end_never_comes_starts_after_one_events_lock(cp, clock):
    old = register(cp, "n1", cores=1)
    cp.submit(sweep(1))
    cp.schedule_pass()
    [run] = old.runs()
    old.send(old.started(run))
    new = AgentDouble(cp, "n1", cores=1, host_id=old.host_id)
    assert new.register().accepted
    clock.advance(9)
    assert cp.schedule_pass() == 0
    clock.advance(1.5)  # past the events lock: nothing of attempt 0 can be in flight
    assert cp.schedule_pass() == 1
    [again] = new.runs()
    assert (again.task_id, again.attempt) == (1, 1)
