"""Canceling one task of a sweep that the scheduler has not created yet (Slurm's
``scancel 1234_90``; shared/usecases/sweeps.py ``cancel_unborn``): it is created then,
Canceled, in the commit that tells its range to skip it, so it exists once and is never
dispatched, whichever of the cancel and a scheduler pass commits first; the job's counts
move once; the job settles; a requeue runs it. Then the HTTP route and the CLI."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py

from __future__ import annotations

import pytest

from shared.domain import rangecut
from shared.domain.messages import CancelTask, RunTask
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict
from shared.usecases import dispatch, sweeps
from shared.usecases.control_plane import ControlPlane
from shared.usecases.queue import runnable_queue
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc
from tests.test_control import clock, cp, register, sweep  # noqa: F401 - fixtures

Q, D, C, F = TaskState.QUEUED, TaskState.DISPATCHING, TaskState.CANCELED, TaskState.FINISHED


def stored(cp: ControlPlane, job_id: int) -> list[int]:
    return [t.id for t in cp.store.list_tasks(job_id, limit=1000)]


def states(cp: ControlPlane, job_id: int) -> list[tuple[int, TaskState]]:
    return [(t.id, t.state) for t in cp.list_tasks(job_id)]


def run_to_the_end(cp: ControlPlane, node: AgentDouble) -> list[int]:
    """Pass, run, pass... until two passes in a row find nothing to do (a pass that lost a
    race to a cancel dispatches nothing and leaves it to the next); the task ids run."""
    ran: list[int] = []
    idle = 0
    for _ in range(100):
        runs = node.run_all()
        ran += [r.task_id for r in runs]
        idle = 0 if cp.schedule_pass() or runs else idle + 1
        if idle == 2:
            return ran
    raise AssertionError("the job never settled")


def test_a_sweep_task_not_created_yet_is_canceled_alone_and_shown_canceled(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(5))
    cp.schedule_pass()  # task 1 exists; 2-5 are still the sweep's range
    task = cp.cancel_task(job.id, 4)
    assert (task.state, task.end_time) == (C, cp.deps.clock())
    assert cp.get_job(job.id).task_counts == {D: 1, Q: 3, C: 1}
    assert stored(cp, job.id) == [1, 4]  # created now, once
    assert cp.get_task(job.id, 4).state is C
    assert states(cp, job.id) == [(1, D), (2, Q), (3, Q), (4, C), (5, Q)]
    assert [t.id for t in cp.list_tasks(job.id, states=[Q])] == [2, 3, 5]
    assert [t.id for t in cp.list_tasks(job.id, states=[C])] == [4]
    assert [t.id for t in cp.list_tasks(job.id, after=3, limit=2)] == [4, 5]
    (r,) = cp.store.get_ranges(job.id)
    assert (r.cursor, r.created_ahead, r.left) == (1, [4], 3)
    with pytest.raises(Conflict, match="already Canceled; nothing to cancel"):
        cp.cancel_task(job.id, 4)
    assert cp.get_job(job.id).task_counts == {D: 1, Q: 3, C: 1}  # counted once
    # never dispatched: its node got task 1 only, and no kill for task 4
    assert [(type(a), a.task_id) for a in n1.assignments()] == [(RunTask, 1)]


def test_the_queue_and_the_autoscalers_demand_leave_it_out_and_it_never_runs(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(5))
    cp.cancel_task(job.id, 3)
    queued = runnable_queue(cp.deps, limit=100, active=[])  # (what autoscale reads too)
    assert [t.id for t in queued] == [1, 2, 4, 5]
    assert cp.job_pending_reasons([cp.get_job(job.id)])  # the job still waits, for task 1
    assert run_to_the_end(cp, n1) == [1, 2, 4, 5]
    done = cp.get_job(job.id)
    assert (done.state, done.task_counts) == (JobState.FAILED, {F: 4, C: 1})
    assert done.error == "1 of 5 tasks canceled"
    assert stored(cp, job.id) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("target", [1, 3], ids=["at the cursor", "ahead of it"])
def test_a_cancel_between_a_passs_read_and_its_commit_wins_and_the_task_never_runs(
    cp, monkeypatch, target
):
    n1 = register(cp, "n1", cores=4)
    job = cp.submit(sweep(5))
    read = dispatch.runnable_queue

    def read_then_cancel(*args, **kw):
        window = read(*args, **kw)
        monkeypatch.setattr(dispatch, "runnable_queue", read)
        assert cp.cancel_task(job.id, target).state is C  # the pass's window still has it
        return window

    monkeypatch.setattr(dispatch, "runnable_queue", read_then_cancel)
    ran = run_to_the_end(cp, n1)
    assert target not in ran and sorted(ran) == [i for i in range(1, 6) if i != target]
    assert stored(cp, job.id) == [1, 2, 3, 4, 5]
    assert cp.get_task(job.id, target).state is C
    done = cp.get_job(job.id)
    assert (done.state, done.task_counts) == (JobState.FAILED, {F: 4, C: 1})


def test_a_pass_that_creates_the_task_first_makes_the_cancel_kill_it_instead(cp, monkeypatch):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(5))
    get_ranges = cp.store.get_ranges

    def stale_ranges(job_id):
        ranges = get_ranges(job_id)  # the cancel's read; a pass commits before its write
        monkeypatch.setattr(cp.store, "get_ranges", get_ranges)
        assert cp.schedule_pass() == 2
        return ranges

    monkeypatch.setattr(cp.store, "get_ranges", stale_ranges)
    task = cp.cancel_task(job.id, 1)  # its commit conflicts; the retry finds task 1 stored
    assert task.state is D and task.cancel_requested
    assert stored(cp, job.id) == [1, 2]
    assert cp.get_job(job.id).task_counts == {D: 2, Q: 3}
    got = n1.assignments()
    assert [(type(a), a.task_id) for a in got] == [(RunTask, 1), (RunTask, 2), (CancelTask, 1)]
    n1.send(n1.ended(got[0], exit_code=-15, canceled=True))
    assert cp.get_task(job.id, 1).state is C
    assert cp.get_job(job.id).task_counts == {D: 1, Q: 3, C: 1}


def test_a_cancel_that_read_the_range_before_a_pass_moved_it_retries(cp, monkeypatch):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(5))
    get_ranges = cp.store.get_ranges

    def stale_ranges(job_id):
        ranges = get_ranges(job_id)
        monkeypatch.setattr(cp.store, "get_ranges", get_ranges)
        assert cp.schedule_pass() == 2  # creates 1 and 2: the range's etag changes
        return ranges

    monkeypatch.setattr(cp.store, "get_ranges", stale_ranges)
    assert cp.cancel_task(job.id, 4).state is C
    (r,) = cp.store.get_ranges(job.id)
    assert (r.cursor, r.created_ahead) == (2, [4])  # the pass's cursor kept, 4 listed
    assert cp.get_job(job.id).task_counts == {D: 2, Q: 2, C: 1}
    assert sorted(run_to_the_end(cp, n1)) == [1, 2, 3, 5]


def test_a_job_whose_every_task_is_canceled_so_ends_canceled(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(3))
    for task_id in (2, 3, 1):
        assert cp.cancel_task(job.id, task_id).state is C
    done = cp.get_job(job.id)
    assert (done.state, done.task_counts) == (JobState.CANCELED, {C: 3})
    assert done.error == "all 3 tasks canceled"
    assert cp.store.open_ranges(limit=10) == []
    assert stored(cp, job.id) == [1, 2, 3]


def test_a_job_whose_last_tasks_are_canceled_so_ends_failed_and_a_requeue_runs_them(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(3))
    cp.schedule_pass()
    n1.run_all()
    cp.cancel_task(job.id, 3)
    cp.cancel_task(job.id, 2)  # the last task: the job ends
    done = cp.get_job(job.id)
    assert (done.state, done.task_counts) == (JobState.FAILED, {F: 1, C: 2})
    for task_id in (2, 3):
        assert cp.requeue_task(job.id, task_id).task.state is Q
    assert cp.get_job(job.id).state is JobState.QUEUED
    assert cp.get_job(job.id).task_counts == {F: 1, Q: 2}
    assert run_to_the_end(cp, n1) == [2, 3]
    done = cp.get_job(job.id)
    assert (done.state, done.task_counts) == (JobState.FINISHED, {F: 3})


def test_a_requeued_task_runs_once_in_a_running_sweep(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(4))
    cp.cancel_task(job.id, 2)
    assert cp.requeue_task(job.id, 2).task.state is Q
    assert cp.get_job(job.id).task_counts == {Q: 4}
    assert states(cp, job.id) == [(1, Q), (2, Q), (3, Q), (4, Q)]
    assert sorted(run_to_the_end(cp, n1)) == [1, 2, 3, 4]
    assert cp.get_job(job.id).task_counts == {F: 4}


def test_a_job_cancel_and_requeue_count_the_tasks_canceled_alone_once(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(5))
    cp.cancel_task(job.id, 2)
    canceled = cp.cancel_job(job.id)
    assert (canceled.state, canceled.task_counts) == (JobState.CANCELED, {C: 5})
    assert [s for _, s in states(cp, job.id)] == [C] * 5
    again = cp.requeue_job(job.id)
    assert (again.state, again.task_counts) == (JobState.QUEUED, {Q: 5})
    assert sorted(run_to_the_end(cp, n1)) == [1, 2, 3, 4, 5]
    assert cp.get_job(job.id).task_counts == {F: 5}


def test_its_dependents_are_canceled_with_the_reason(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(
        {
            "name": "j",
            "tasks": [
                {"name": "prep", "command": "p *", "sweep": "1-3"},
                {"name": "work", "command": "w", "dependsOn": ["prep"]},
            ],
        }
    )
    cp.cancel_task(job.id, 2)
    work = cp.get_task(job.id, 4)
    assert work.state is C and "prep" in (work.error or "")


def test_canceling_more_than_a_range_keeps_is_refused_saying_to_cancel_the_job(cp, monkeypatch):
    monkeypatch.setattr(sweeps, "MAX_CREATED_AHEAD", 2)
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(10))
    cp.cancel_task(job.id, 5)
    cp.cancel_task(job.id, 7)
    before = cp.get_job(job.id).task_counts
    with pytest.raises(Conflict, match=rf"2 such tasks canceled.*hpc job cancel {job.id}"):
        cp.cancel_task(job.id, 9)
    assert cp.get_job(job.id).task_counts == before == {Q: 8, C: 2}
    assert cp.get_task(job.id, 9).state is Q
    assert cp.cancel_task(job.id, 1).state is C  # at the cursor: it only moves the cursor
    (r,) = cp.store.get_ranges(job.id)
    assert (r.cursor, r.created_ahead) == (1, [5, 7])


def test_the_route_for_many_cuts_a_full_range_instead_of_refusing(cp, monkeypatch):
    """What README says of the limit (a probe: 20,100 scattered cancels were accepted): it
    is per range document; the route for many cuts the range at the id, and each piece
    keeps its own."""
    monkeypatch.setattr(sweeps, "MAX_CREATED_AHEAD", 2)
    monkeypatch.setattr(rangecut, "MAX_CREATED_AHEAD", 2)
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(20))
    done = cp.cancel_tasks(job.id, [(3, 3), (5, 5), (9, 9), (12, 12), (14, 14)])
    assert all(o.state is C for o in done)
    assert cp.get_job(job.id).task_counts == {Q: 15, C: 5}
    ranges = cp.store.get_ranges(job.id)
    assert len(ranges) == 3 and all(len(r.created_ahead) <= 2 for r in ranges)
    with pytest.raises(Conflict, match=rf"cancel it with hpc task cancel {job.id} 7"):
        cp.cancel_task(job.id, 7)  # (its range holds 2 already: the one-task route refuses)


def test_unknown_and_job_canceled_tasks_answer_as_before(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(3))
    with pytest.raises(Exception, match="has tasks 1 to 3"):
        cp.cancel_task(job.id, 4)
    cp.cancel_job(job.id)
    with pytest.raises(Conflict, match="already Canceled; nothing to cancel"):
        cp.cancel_task(job.id, 2)


# --- HTTP and CLI on the real function app -------------------------------------------------


def test_the_route_and_the_cli_cancel_a_sweep_task_not_created_yet(tmp_path, monkeypatch):
    with served_app(tmp_path) as app, app.client() as client:
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        assert AgentDouble(app.cp, "onprem-1", cores=1).register().accepted
        job = client.post("/api/jobs", json=sweep(1000)).json()["id"]
        answer = client.post(f"/api/jobs/{job}/tasks/90/cancel")
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "Canceled"
        out = hpc("task", "cancel", str(job), "91")
        assert out.exit_code == 0 and f"task {job}.91 (sweep index 91): Canceled" in out.stdout
        out = hpc("task", "cancel", f"{job}.92")
        assert out.exit_code == 0 and f"task {job}.92 (sweep index 92): Canceled" in out.stdout
        out = hpc("task", "cancel", f"{job}.92")
        assert_one_error_line(out, "already Canceled; nothing to cancel")
        listed = client.get(f"/api/jobs/{job}/tasks", params={"after": 89, "limit": 4}).json()
        assert [(t["id"], t["state"]) for t in listed["tasks"]] == [
            (90, "Canceled"),
            (91, "Canceled"),
            (92, "Canceled"),
            (93, "Queued"),
        ]
        out = hpc("task", "list", str(job), "--state", "Canceled")
        assert out.exit_code == 0 and all(str(i) in out.stdout for i in (90, 91, 92))
        counts = client.get(f"/api/jobs/{job}").json()["taskCounts"]  # (task 1 dispatched)
        assert counts["Canceled"] == 3 and sum(counts.values()) == 1000
        out = hpc("task", "requeue", f"{job}.91")
        assert out.exit_code == 0 and f"task {job}.91 (sweep index 91): Queued" in out.stdout
        counts = client.get(f"/api/jobs/{job}").json()["taskCounts"]
        assert counts["Canceled"] == 2 and sum(counts.values()) == 1000
        # several at once, as scancel 39_[100-102] 39_104: a refusal is said, the rest go on
        out = hpc("task", "cancel", str(job), "100-102", "92", "104")
        assert out.exit_code == 1, out.output
        said = [line.split(":")[0] for line in out.stdout.splitlines()]
        assert said == [
            f"tasks {job}.100-102 (sweep index 100-102)",
            f"task {job}.104 (sweep index 104)",
        ]
        assert f"task {job}.92: not canceled: " in out.stderr
        assert "1 of 5 tasks not canceled" in out.stderr
        out = hpc("task", "requeue", f"{job}.100-101", f"{job}.104")
        assert out.exit_code == 0 and out.stdout.count(": Queued") == 2, out.output
        for bad, says in (
            ([f"{job}.100", "101"], "give every task as JOB.TASK once the first is"),
            ([str(job), "9-3"], "a range goes from its first task to its last"),
            ([str(job), "1-200000"], "at most 100,000 tasks at once"),
        ):
            assert_one_error_line(hpc("task", "cancel", *bad), says)
        client.post(f"/api/jobs/{job}/cancel")


def test_a_task_created_between_the_listings_reads_is_listed_once(cp, monkeypatch):
    """A review: a cancel (or a pass) that commits between the reads of the ranges and of
    the tasks left the task in both, listed Canceled and Queued."""
    register(cp, "n1", cores=1)
    job = cp.submit(sweep(5))
    cp.schedule_pass()
    real = cp.store.get_ranges

    def then_cancel(job_id):  # the ranges as read before the cancel committed
        ranges = real(job_id)
        monkeypatch.setattr(cp.store, "get_ranges", real)
        cp.cancel_task(job.id, 4)
        return ranges

    monkeypatch.setattr(cp.store, "get_ranges", then_cancel)
    assert states(cp, job.id) == [(1, D), (2, Q), (3, Q), (4, C), (5, Q)]
