"""A task's requeue brings back the tasks canceled only because it failed (a user probe: after
``hpc task requeue J 1`` of a failed ``prep``, ``work[*]`` and ``sum`` stayed Canceled with
"dependency 'prep' failed" and the job ended "Failed: 3 of 4 tasks canceled"). The rule as
tables (shared/domain/lifecycle/dependents.py, and eligibility.left_canceled for jobs), then
the use cases on the embedded store; the CLI on a real cluster is in
tests/test_requeue_dependents_e2e.py."""

from __future__ import annotations

import pytest

from shared.domain import eligibility, lifecycle
from shared.domain.lifecycle import Doomed
from shared.domain.models import Job, Step
from shared.domain.states import JobState, TaskState
from shared.usecases.control_plane import ControlPlane
from tests.test_control import Clock, make_cp, register

Q, F, X, C = TaskState.QUEUED, TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELED
WORK = Doomed("work", ("prep",))
SUM = Doomed("sum", ("work",))
OTHER = Doomed("other", ("setup",))
BOTH = Doomed("both", ("prep", "setup"))


# --- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "doomed", "back"),
    [
        # the probe: prep failed, work (2) doomed by it, sum doomed by work
        ({"prep": (0, 1), "work": (0, 2)}, {WORK: 2, SUM: 1}, {WORK, SUM}),
        # a user canceled one work task (no mark): work comes back, sum would be doomed again
        ({"prep": (0, 1), "work": (0, 2)}, {WORK: 1, SUM: 1}, {WORK}),
        # prep has two tasks and both failed: requeueing one undoes nothing
        ({"prep": (0, 2), "work": (0, 2)}, {WORK: 2, SUM: 1}, set()),
        # a task doomed by another failed name is not downstream of prep
        ({"prep": (0, 1), "setup": (0, 1)}, {WORK: 1, OTHER: 1}, {WORK}),
        # one needing prep and a still failed setup stays
        ({"prep": (0, 1), "setup": (0, 1)}, {BOTH: 1}, set()),
        # one needing prep and a finished setup comes back
        ({"prep": (0, 1), "setup": (0, 0)}, {BOTH: 1}, {BOTH}),
        # a doomed task whose cause was undone before, unrelated to prep: left alone
        ({"prep": (0, 1), "setup": (1, 0)}, {OTHER: 1}, set()),
        # nothing doomed
        ({"prep": (0, 1)}, {}, set()),
    ],
)
def test_which_doomed_dependents_a_requeue_brings_back(steps, doomed, back):
    counts = {name: Step(left=left, failed=failed) for name, (left, failed) in steps.items()}
    assert lifecycle.revived(counts, "prep", doomed) == back
    assert counts["prep"].failed == steps["prep"][1]  # the job's steps are not changed


def test_a_job_that_runs_dependents_anyway_has_none_to_bring_back():
    steps = {"prep": Step(failed=1)}
    assert lifecycle.revived(steps, "prep", {WORK: 1}, run_dependents_on_failure=True) == set()


def _canceled(
    job_id: int,
    depends_on: list[int],
    error: str | None,
    canceled_for: int | None = None,
    state: JobState = JobState.CANCELED,
) -> Job:
    return Job(
        id=job_id, state=state, depends_on=depends_on, error=error, canceled_for=canceled_for
    )


@pytest.mark.parametrize(
    ("jobs", "left"),
    [
        ([_canceled(2, [1], "dependency job 1 ended Failed")], [2]),
        # a chain: 3 was canceled for 2, which was canceled for 1
        (
            [
                _canceled(3, [2], "dependency job 2 ended Canceled"),
                _canceled(2, [1], "dependency job 1 ended Failed"),
            ],
            [2, 3],
        ),
        ([_canceled(2, [1], "canceled by ann")], []),  # a user's cancel: not ours to name
        ([_canceled(2, [5], "dependency job 5 ended Failed")], []),  # another prerequisite
        ([_canceled(2, [1], "dependency job 1 does not exist")], []),
        ([_canceled(2, [3], "dependency job 1 ended Failed")], []),  # not its prerequisite
        # the field, not the words: a job the reconciler canceled keeps its prerequisite
        ([_canceled(2, [1], "an error a later version words otherwise", canceled_for=1)], [2]),
        ([_canceled(2, [1, 3], "dependency job 1 ended Failed", canceled_for=3)], []),
        ([_canceled(2, [1], "x", canceled_for=1, state=JobState.QUEUED)], []),  # queued again
    ],
)
def test_which_dependent_jobs_a_requeue_leaves_canceled(jobs, left):
    assert eligibility.left_canceled(1, jobs) == left


# --- the use cases -----------------------------------------------------------------------


@pytest.fixture
def cp(tmp_path) -> ControlPlane:
    return make_cp(tmp_path, Clock())


PROBE = {
    "name": "dag",
    "tasks": [
        {"name": "prep", "command": "test -f flag"},
        {"name": "work", "command": "work *", "sweep": "1-2", "dependsOn": ["prep"]},
        {"name": "sum", "command": "sum", "dependsOn": ["work"]},
    ],
}


def run_queued(agent, exit_codes: dict[str, int] | None = None) -> list[str]:
    """Start and end every assignment waiting; the names of the tasks run."""
    names = []
    for run in agent.runs():
        name = agent.cp.get_task(run.job_id, run.task_id).name
        names.append(name)
        agent.send(agent.started(run), agent.ended(run, (exit_codes or {}).get(name, 0)))
    return names


def failed_prep(cp: ControlPlane, spec: dict) -> tuple[object, int]:
    n1 = register(cp, "n1", cores=4)
    job = cp.submit(spec).id
    cp.schedule_pass()
    assert run_queued(n1, {"prep": 1}) == ["prep"]
    return n1, job


def test_requeueing_a_failed_task_brings_back_what_was_canceled_for_it(cp):
    n1, job = failed_prep(cp, PROBE)
    failed = cp.get_job(job)
    assert (failed.state, failed.error) == (JobState.FAILED, "1 of 4 tasks failed")
    assert cp.get_task(job, 4).error == "dependency 'work' did not finish (2 tasks canceled)"
    requeued = cp.requeue_task(job, 1)
    assert (requeued.task.state, requeued.dependents) == (Q, 3)
    assert [t.state for t in cp.list_tasks(job)] == [Q, Q, Q, Q]
    assert all(t.error is None for t in cp.list_tasks(job))
    reopened = cp.get_job(job)
    assert reopened.state is JobState.QUEUED
    assert reopened.task_counts == {Q: 4}
    cp.schedule_pass()
    assert run_queued(n1) == ["prep"]  # its dependents still wait for it
    cp.schedule_pass()
    assert sorted(run_queued(n1)) == ["work", "work"]
    cp.schedule_pass()
    assert run_queued(n1) == ["sum"]
    done = cp.get_job(job)
    assert (done.state, done.task_counts) == (JobState.FINISHED, {F: 4})


def test_what_a_user_canceled_stays_and_so_does_what_it_still_dooms(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(PROBE).id
    cp.cancel_task(job, 3, by="ann")  # work[2], before the scheduler made it
    cp.schedule_pass()
    assert run_queued(n1, {"prep": 1}) == ["prep"]
    requeued = cp.requeue_task(job, 1)
    assert requeued.dependents == 1  # work[1]; sum needs work[2] too
    states = {t.id: (t.state, t.error) for t in cp.list_tasks(job)}
    assert states[2] == (Q, None)
    assert states[3] == (C, "canceled by ann")
    assert states[4][0] is C
    cp.schedule_pass()
    run_queued(n1)
    cp.schedule_pass()
    assert run_queued(n1) == ["work"]
    final = cp.get_job(job)
    assert final.state is JobState.FAILED  # sum can never run: work[2] stays canceled
    assert final.task_counts == {F: 2, C: 2}


def test_a_task_that_failed_on_its_own_stays_failed(cp):
    spec = {
        "tasks": [
            {"name": "prep", "command": "prep"},
            {"name": "solo", "command": "solo"},
            {"name": "sum", "command": "sum", "dependsOn": ["prep"]},
        ]
    }
    n1 = register(cp, "n1", cores=4)
    job = cp.submit(spec).id
    cp.schedule_pass()
    assert sorted(run_queued(n1, {"prep": 1, "solo": 1})) == ["prep", "solo"]
    assert cp.requeue_task(job, 1).dependents == 1
    assert [t.state for t in cp.list_tasks(job)] == [Q, X, Q]


def test_many_stored_dependents_come_back_across_commits(cp):
    """More dependents than one transactional batch holds (100 documents with the job)."""
    spec = {
        "tasks": [{"name": "prep", "command": "prep"}]
        + [{"name": "d", "command": "d", "dependsOn": ["prep"]} for _ in range(150)]
        + [{"name": "last", "command": "x", "dependsOn": ["d"]}]
    }
    _, job = failed_prep(cp, spec)
    assert cp.get_job(job).task_counts == {X: 1, C: 151}
    assert cp.requeue_task(job, 1).dependents == 151
    assert cp.get_job(job).task_counts == {Q: 152}


def test_a_requeue_names_the_dependent_jobs_it_leaves_canceled(cp):
    n1 = register(cp, "n1", cores=1)
    first = cp.submit({"command": "false"}).id
    second = cp.submit({"command": "b", "dependsOn": [first]}).id
    third = cp.submit({"command": "c", "dependsOn": [second]}).id
    mine = cp.submit({"command": "d", "dependsOn": [first]}).id
    cp.cancel_job(mine, by="ann")
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run), n1.ended(run, 1))
    cp.reconcile()
    cp.reconcile()  # the chain: second's cancel dooms third at the next run
    assert [cp.get_job(j).state for j in (first, second, third)] == [JobState.FAILED] + [
        JobState.CANCELED
    ] * 2
    assert cp.left_canceled(first) == [second, third]
    canceled = [cp.get_job(j) for j in (second, third, mine)]
    assert [j.canceled_for for j in canceled] == [first, second, None]  # kept as a field
    cp.requeue_task(first, 1)
    assert cp.get_job(second).state is JobState.CANCELED  # left as Slurm leaves it
    for job in (second, third):  # what the answer says to do works at once
        assert cp.requeue_job(job).state is JobState.QUEUED
        assert cp.get_job(job).canceled_for is None  # queued again: no longer canceled for it
    assert cp.left_canceled(first) == []
