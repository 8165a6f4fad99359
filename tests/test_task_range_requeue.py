"""Requeueing many tasks of one job at once (``shared/usecases/task_requeues.py``, the twin of
the range cancel): tasks of a range canceled alone come back as an open range (a few
documents, not one per task) whose template is their new attempt, stored ones as one task's
requeue does (a new attempt, the job reopened), each refusal said alone with the one-task
route's words, and the dependents canceled only for them brought back once. The HTTP route
and the CLI are in tests/test_task_range_requeue_api.py."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py

from __future__ import annotations

import pytest

from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, NotFound
from shared.usecases.control_plane import ControlPlane
from tests.test_control import clock, cp, register, sweep  # noqa: F401 - fixtures
from tests.test_task_range_cancel import documents

Q, C, F = TaskState.QUEUED, TaskState.CANCELED, TaskState.FINISHED


def run_to_end(cp: ControlPlane, agent, rounds: int = 200) -> list[tuple[int, int]]:
    """(task, attempt) of every run the agent made until nothing is left to dispatch."""
    ran: list[tuple[int, int]] = []
    for _ in range(rounds):
        cp.schedule_pass()
        done = agent.run_all()
        if not done and not agent.runs():
            cp.schedule_pass()
            if not agent.runs():
                break
        ran += [(r.task_id, r.attempt) for r in done]
    return ran


def test_a_canceled_range_is_requeued_as_a_range_in_a_few_documents(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(50_000, held=True))
    cp.cancel_tasks(job.id, [(100, 1100)])
    assert documents(cp, job.id) == (0, 3)
    done = cp.requeue_tasks(job.id, [(200, 1199)])
    outcomes = done.outcomes
    assert len(outcomes) == 1000 and [(o.id, o.state, o.sweep_index) for o in outcomes[:1]] == [
        (200, Q, 200)
    ]
    assert all(o.state is Q for o in outcomes[:901])  # 200-1100 requeued
    refused = {o.id: o for o in outcomes if o.state is None}
    assert sorted(refused) == list(range(1101, 1200))
    assert refused[1101].error == (
        f"task {job.id}.1101 is Queued; only a Failed or Canceled task can be requeued"
    )
    assert documents(cp, job.id) == (0, 4)  # 99 canceled, 200-1100 open, then the rest
    assert cp.get_job(job.id).task_counts == {Q: 49_900, C: 100}
    shown = {t.id: t.state for t in cp.list_tasks(job.id, after=98, limit=4)}
    assert shown == {99: Q, 100: C, 101: C, 102: C}
    assert cp.get_task(job.id, 200).state is Q and cp.get_task(job.id, 199).state is C
    assert cp.get_task(job.id, 200).attempt == 1  # a new attempt (the range's was 0)


def test_requeued_tasks_run_exactly_once_each_and_the_job_ends_finished(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(40))
    cp.cancel_tasks(job.id, [(5, 30)])  # a run of 26: cut off as a canceled range
    ran = run_to_end(cp, n1)
    assert cp.get_job(job.id).state is JobState.FAILED
    done = cp.requeue_tasks(job.id, [(5, 12), (14, 14), (16, 30)])
    assert all(o.state is Q for o in done.outcomes) and len(done.outcomes) == 24
    assert cp.get_job(job.id).state is JobState.QUEUED  # reopened
    ran += run_to_end(cp, n1)
    assert sorted(t for t, _a in ran) == [i for i in range(1, 41) if i not in (13, 15)]
    assert cp.get_job(job.id).task_counts == {F: 38, C: 2}
    cp.requeue_tasks(job.id, [(13, 13), (15, 15)])
    ran += run_to_end(cp, n1)
    assert sorted(t for t, _a in ran) == list(range(1, 41))  # each once
    assert cp.get_job(job.id).state is JobState.FINISHED


def test_stored_failed_and_canceled_tasks_get_a_new_attempt_others_are_refused_alone(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit({"tasks": [{"command": c} for c in ("a", "b", "c", "d")]})
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.ended(run, exit_code=3))  # task 1 Failed
    cp.cancel_task(job.id, 2)
    cp.schedule_pass()
    [run3] = n1.runs()
    n1.send(n1.started(run3))  # task 3 Running
    done = {o.id: o for o in cp.requeue_tasks(job.id, [(1, 4)]).outcomes}
    assert (done[1].state, done[2].state) == (Q, Q)
    assert (
        done[3].error
        == f"task {job.id}.3 is Running; only a Failed or Canceled task can be requeued"
    )
    assert (
        done[4].error
        == f"task {job.id}.4 is Queued; only a Failed or Canceled task can be requeued"
    )
    assert done[3].status == done[4].status == 409
    assert cp.get_task(job.id, 1).attempt == run.attempt + 1
    assert cp.get_task(job.id, 1).state is Q and cp.get_task(job.id, 2).state is Q
    with pytest.raises(Conflict, match="is Queued"):  # as the one-task route says it
        cp.requeue_task(job.id, 1)


def test_dependents_canceled_for_requeued_tasks_come_back_once_counted_together(cp):
    n1 = register(cp, "n1", cores=1)
    spec = {
        "tasks": [
            {"name": "prep", "command": "p", "sweep": "1-3"},
            {"name": "work", "command": "w", "sweep": "1-20", "dependsOn": ["prep"]},
            {"name": "sum", "command": "s", "dependsOn": ["work"]},
        ]
    }
    job = cp.submit(spec)
    cp.schedule_pass()
    for run in n1.runs():
        n1.send(n1.ended(run, exit_code=1))  # prep 1 fails: work and sum canceled for it
    ran = run_to_end(cp, n1)
    got = cp.get_job(job.id)
    assert got.state is JobState.FAILED and got.task_counts.get(C) == 21
    done = cp.requeue_tasks(job.id, [(1, 1)])
    assert [o.state for o in done.outcomes] == [Q] and done.dependents == 21
    ran += run_to_end(cp, n1)
    assert cp.get_job(job.id).state is JobState.FINISHED
    assert sorted(t for t, _a in ran) == list(range(1, 25))  # (task 1 failed before: sent)


def test_a_task_whose_prerequisite_did_not_finish_is_refused_as_alone(cp):
    n1 = register(cp, "n1", cores=1)
    spec = {
        "tasks": [
            {"name": "prep", "command": "p"},
            {"name": "work", "command": "w", "sweep": "1-5", "dependsOn": ["prep"]},
        ]
    }
    job = cp.submit(spec)
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.ended(run, exit_code=1))
    run_to_end(cp, n1)
    done = {o.id: o for o in cp.requeue_tasks(job.id, [(2, 3)]).outcomes}
    with pytest.raises(Conflict) as alone:
        cp.requeue_task(job.id, 2)
    assert done[2].error == str(alone.value) and "would be canceled again at once" in done[2].error
    assert done[3].error == str(alone.value).replace(f"{job.id}.2", f"{job.id}.3")
    assert cp.get_job(job.id).state is JobState.FAILED  # nothing reopened


def test_ids_outside_the_job_or_a_job_being_canceled_requeue_nothing(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(10))
    cp.cancel_tasks(job.id, [(2, 9)])
    with pytest.raises(NotFound, match=r"has tasks 1 to 10; it has no task 11-12:.*requeued"):
        cp.requeue_tasks(job.id, [(5, 12)])
    cp.schedule_pass()
    n1.send(n1.started(n1.runs()[0]))
    cp.cancel_job(job.id)  # task 1 runs until its agent kills it
    with pytest.raises(Conflict, match="is being canceled; requeue it once it is Canceled"):
        cp.requeue_tasks(job.id, [(2, 3)])
    assert cp.get_job(job.id).task_counts.get(Q, 0) == 0


def test_scattered_ids_of_a_canceled_range_are_created_not_cut(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(1000, held=True))
    cp.cancel_tasks(job.id, [(1, 1000)])
    done = cp.requeue_tasks(job.id, [(i, i) for i in range(2, 600, 3)])
    assert len(done.outcomes) == 200 and all(o.state is Q for o in done.outcomes)
    assert documents(cp, job.id) == (200, 1)  # one range, as one task's requeue leaves it
    assert cp.get_job(job.id).task_counts == {Q: 200, C: 800}


def test_a_request_cut_short_is_whole_per_commit_and_sending_it_again_requeues_the_rest(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(3000, held=True))
    cp.cancel_tasks(job.id, [(1, 3000)])
    spans = [(i, i + 9) for i in range(1, 3000, 30)]  # 100 runs: more than one commit
    real = cp.store.commit
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the control plane died")
        return real(*args, **kwargs)

    cp.store.commit = crash_on_second  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        cp.requeue_tasks(job.id, spans)
    cp.store.commit = real  # type: ignore[method-assign]
    first = cp.get_job(job.id).task_counts[Q]
    assert 0 < first < 1000
    again = cp.requeue_tasks(job.id, spans)
    assert sum(o.state is Q for o in again.outcomes) == 1000 - first
    assert cp.get_job(job.id).task_counts == {Q: 1000, C: 2000}
    listed = cp.list_tasks(job.id, states=[Q], limit=5000)
    assert sorted(t.id for t in listed) == [i for a, b in spans for i in range(a, b + 1)]


def test_pieces_left_canceled_run_after_a_job_requeue_and_a_range_from_its_cursor_reopens(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(40))
    cp.cancel_tasks(job.id, [(11, 40)])
    cp.requeue_task(job.id, 11)  # created: the canceled range's cursor moves past it
    done = cp.requeue_tasks(job.id, [(12, 20)])  # from that cursor: the range itself reopens
    assert all(o.state is Q for o in done.outcomes) and len(done.outcomes) == 9
    ran = run_to_end(cp, n1)
    assert sorted(t for t, _a in ran) == list(range(1, 21))
    assert cp.get_job(job.id).state is JobState.FAILED  # 21-40 still canceled
    cp.requeue_job(job.id)  # the canceled piece left after the run comes back Queued
    ran += run_to_end(cp, n1)
    assert sorted(t for t, _a in ran) == list(range(1, 41))  # each once
    assert cp.get_job(job.id).state is JobState.FINISHED


def test_dependents_doomed_by_two_requeued_tasks_come_back_when_both_are_requeued_at_once(cp):
    """Each alone would leave them canceled (the other still failed); together they come
    back, counted once for the request."""
    n1 = register(cp, "n1", cores=2)
    spec = {
        "tasks": [
            {"name": "prep", "command": "p", "sweep": "1-2"},
            {"name": "work", "command": "w", "sweep": "1-5", "dependsOn": ["prep"]},
            {"name": "sum", "command": "s", "dependsOn": ["work"]},
        ]
    }
    job = cp.submit(spec)
    cp.schedule_pass()
    for run in n1.runs():
        n1.send(n1.ended(run, exit_code=1))
    run_to_end(cp, n1)
    assert cp.get_job(job.id).task_counts == {TaskState.FAILED: 2, C: 6}
    done = cp.requeue_tasks(job.id, [(1, 2)])
    assert [o.state for o in done.outcomes] == [Q, Q] and done.dependents == 6
    ran = run_to_end(cp, n1)
    assert sorted(t for t, _a in ran) == list(range(1, 9))  # each once
    assert cp.get_job(job.id).state is JobState.FINISHED
