"""Canceling many tasks of one job at once (``shared/usecases/task_cancels.py``, Slurm's
``scancel 39_[100-1100]``): tasks of a sweep not created yet are cut off their range as a
canceled range (a few documents, not one per task), stored ones are canceled as one task's
cancel does (a running one through its agent, by attempt and incarnation), each refusal is
said alone, and a requeue of one of them runs it. The HTTP route and the CLI are in
tests/test_task_range_cancel_api.py."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py

from __future__ import annotations

import pytest

from shared.domain.messages import CancelTask
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, NotFound
from shared.usecases.control_plane import ControlPlane
from tests.test_control import clock, cp, register, sweep  # noqa: F401 - fixtures

Q, D, R, C = TaskState.QUEUED, TaskState.DISPATCHING, TaskState.RUNNING, TaskState.CANCELED


def documents(cp: ControlPlane, job_id: int) -> tuple[int, int]:
    """(stored tasks, ranges) of the job: what its cancel wrote."""
    return len(cp.store.list_tasks(job_id, limit=100_000)), len(cp.store.get_ranges(job_id))


def test_a_thousand_tasks_not_created_yet_are_canceled_in_three_range_documents(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(50_000, held=True))
    done = cp.cancel_tasks(job.id, [(100, 1100)], by="alice")
    assert [(o.id, o.state, o.sweep_index) for o in done[:2]] == [(100, C, 100), (101, C, 101)]
    assert len(done) == 1001 and all(o.state is C for o in done)
    assert documents(cp, job.id) == (0, 3)  # not 1,001 task documents
    assert cp.get_job(job.id).task_counts == {Q: 48_999, C: 1001}
    shown = {t.id: t for t in cp.list_tasks(job.id, after=98, limit=4)}
    assert [(i, t.state) for i, t in shown.items()] == [(99, Q), (100, C), (101, C), (102, C)]
    assert shown[100].error == "canceled by alice"
    assert cp.get_task(job.id, 1101).state is Q and cp.get_task(job.id, 1100).state is C
    assert [t.id for t in cp.list_tasks(job.id, states=[Q], after=1090, limit=2)] == [1101, 1102]


def test_canceled_tasks_are_never_dispatched_and_the_rest_run_in_order(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(8))
    cp.schedule_pass()  # task 1 exists, dispatched
    cp.cancel_tasks(job.id, [(2, 2), (4, 6)])
    ran: list[int] = []
    for _ in range(20):
        ran += [r.task_id for r in n1.run_all()]
        cp.schedule_pass()
    assert ran == [1, 3, 7, 8]
    ended = cp.get_job(job.id)
    assert ended.state is JobState.FAILED and ended.task_counts == {TaskState.FINISHED: 4, C: 4}


def test_a_running_task_gets_the_agents_cancel_by_attempt_and_queued_ones_end_now(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit({"tasks": [{"command": "a"}, {"command": "b"}, {"command": "c"}]})
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    done = cp.cancel_tasks(job.id, [(1, 3)], by="bob")
    assert [(o.id, o.state) for o in done] == [(1, R), (2, C), (3, C)]
    kills = [m for m in n1.assignments() if isinstance(m, CancelTask)]
    assert [(k.task_id, k.attempt, k.incarnation) for k in kills] == [
        (1, run.attempt, run.incarnation)
    ]
    n1.send(n1.ended(run, exit_code=-15, canceled=True))
    assert cp.get_task(job.id, 1).state is C
    assert cp.get_job(job.id).state is JobState.CANCELED  # every task canceled


def test_tasks_ended_or_canceled_already_are_refused_alone_and_the_rest_go_on(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(20))
    cp.schedule_pass()
    n1.run_all()  # task 1 Finished
    cp.cancel_task(job.id, 5)  # created Canceled, alone
    cp.cancel_tasks(job.id, [(10, 19)])  # a canceled range
    done = {o.id: o for o in cp.cancel_tasks(job.id, [(1, 12)])}
    assert done[1].error == f"task {job.id}.1 is already Finished; nothing to cancel"
    assert (
        done[5].error
        == done[10].error.replace(".10", ".5")
        == (f"task {job.id}.5 is already Canceled; nothing to cancel")
    )
    assert {i for i, o in done.items() if o.state is C} == {2, 3, 4, 6, 7, 8, 9}
    assert all(o.status == 409 for o in done.values() if o.state is None)


def test_ids_outside_the_job_or_a_job_being_canceled_cancel_nothing(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(10))
    with pytest.raises(NotFound, match=r"has tasks 1 to 10; it has no task 11-12, 40:") as e:
        cp.cancel_tasks(job.id, [(5, 12), (40, 40)])
    assert e.value.fields == {"taskCount": 10}
    assert cp.get_job(job.id).task_counts == {Q: 10}
    cp.schedule_pass()
    n1.send(n1.started(n1.runs()[0]))
    cp.cancel_job(job.id)  # task 1 runs until its agent kills it
    with pytest.raises(Conflict, match="is being canceled"):
        cp.cancel_tasks(job.id, [(2, 3)])


def test_a_task_of_a_canceled_range_is_requeued_alone_and_the_job_requeue_reruns_the_rest(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(30))
    cp.cancel_tasks(job.id, [(11, 20)])
    again = cp.requeue_task(job.id, 15).task
    assert (again.state, again.sweep_index) == (Q, 15)
    assert cp.get_job(job.id).task_counts == {Q: 21, C: 9}
    with pytest.raises(Conflict, match="is Queued; only a Failed or Canceled"):
        cp.requeue_task(job.id, 15)
    ran: list[int] = []
    for _ in range(80):
        ran += [r.task_id for r in n1.run_all()]
        cp.schedule_pass()
    assert sorted(ran) == [*range(1, 11), 15, *range(21, 31)]
    assert cp.get_job(job.id).state is JobState.FAILED
    cp.requeue_job(job.id)  # the 9 still canceled run too
    for _ in range(40):
        ran += [r.task_id for r in n1.run_all()]
        cp.schedule_pass()
    assert sorted(ran) == [*range(1, 31)] and len(ran) == 30  # each once
    assert cp.get_job(job.id).state is JobState.FINISHED


def test_scattered_ids_are_created_not_cut_so_ranges_do_not_multiply(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(1000, held=True))
    done = cp.cancel_tasks(job.id, [(i, i) for i in range(2, 600, 3)])
    assert len(done) == 200 and all(o.state is C for o in done)
    assert documents(cp, job.id) == (200, 1)  # one range, as one task's cancel leaves it
    assert cp.get_job(job.id).task_counts == {Q: 800, C: 200}
