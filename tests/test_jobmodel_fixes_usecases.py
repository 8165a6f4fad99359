"""Job-model probe findings, at the use cases: a task failed by its exit code says why under
the default validExitCodes; a dependent of a canceled prerequisite task says it did not
finish, not that it failed; a job that depends on a job that ended other than Finished is
refused at submit (as its requeue is), and waits saying it will be canceled; a hold or a
priority change of a Canceling job is refused."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py

from __future__ import annotations

import pytest

from shared.domain import eligibility, taskgraph
from shared.domain.models import Job, Step
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, InvalidRequest
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures


def reason(cp, job_id: int) -> str | None:
    return cp.job_pending_reasons([cp.get_job(job_id)]).get(job_id)


def run_one(agent, exit_code: int = 0) -> None:
    [run] = agent.runs()
    agent.send(agent.started(run), agent.ended(run, exit_code=exit_code))


# --- 1. a task failed by its exit code always says why ------------------------------------


def test_a_task_failed_under_the_default_valid_exit_codes_says_why(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit({"command": "exit 4"})
    cp.schedule_pass()
    run_one(n1, exit_code=4)
    task = cp.get_task(job.id, 1)
    assert (task.state, task.exit_code) == (TaskState.FAILED, 4)
    assert task.error == "exit code 4 is not 0 (validExitCodes)"


def test_an_explicit_valid_exit_codes_list_keeps_its_wording(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit({"command": "exit 4", "validExitCodes": [0, 3]})
    cp.schedule_pass()
    run_one(n1, exit_code=4)
    assert cp.get_task(job.id, 1).error == "exit code 4 is not one of validExitCodes [0, 3]"


def test_a_finished_task_has_no_error(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit({"command": "true"})
    cp.schedule_pass()
    run_one(n1)
    task = cp.get_task(job.id, 1)
    assert (task.state, task.error) == (TaskState.FINISHED, None)


# --- 2. a canceled prerequisite task is not called failed ---------------------------------

CHAIN = {
    "name": "chain",
    "tasks": [
        {"name": "a", "command": "a"},
        {"name": "b", "command": "b", "dependsOn": ["a"]},
        {"name": "c", "command": "c", "dependsOn": ["b"]},
    ],
}


def test_dependents_of_a_canceled_task_say_it_was_canceled_down_the_chain(cp):
    register(cp, "n1", cores=1)
    job = cp.submit(CHAIN)
    cp.cancel_task(job.id, 1)  # a, still queued
    b, c = cp.get_task(job.id, 2), cp.get_task(job.id, 3)
    assert (b.state, b.error) == (
        TaskState.CANCELED,
        "dependency 'a' did not finish (1 task canceled)",
    )
    assert (c.state, c.error) == (
        TaskState.CANCELED,
        "dependency 'b' did not finish (1 task canceled)",
    )
    assert "failed" not in (b.error or "") + (c.error or "")


def test_a_failed_task_is_still_called_failed_and_its_canceled_dependents_canceled(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(CHAIN)
    cp.schedule_pass()
    run_one(n1, exit_code=1)
    assert cp.get_task(job.id, 2).error == "dependency 'a' failed (1 task did not finish)"
    assert cp.get_task(job.id, 3).error == "dependency 'b' did not finish (1 task canceled)"


def test_a_step_partly_failed_partly_canceled_says_how_many_of_each(cp):
    n1 = register(cp, "n1", cores=2)
    spec = {
        "name": "mixed",
        "tasks": [
            {"name": "prep", "command": "p1"},
            {"name": "prep", "command": "p2"},
            {"name": "sum", "command": "s", "dependsOn": ["prep"]},
        ],
    }
    job = cp.submit(spec)
    cp.schedule_pass()
    first, second = sorted(n1.runs(), key=lambda r: r.task_id)
    n1.send(n1.started(first), n1.started(second))
    cp.cancel_task(job.id, 2)  # running: ends Canceled when its agent reports the kill
    n1.send(n1.ended(first, exit_code=2), n1.ended(second, exit_code=None, canceled=True))
    total = cp.get_task(job.id, 3)
    assert (total.state, total.error) == (
        TaskState.CANCELED,
        "dependency 'prep' did not finish (1 failed, 1 canceled)",
    )


def test_without_counts_the_words_fit_failed_and_canceled_alike():
    job = Job(id=1, steps={"b": Step(left=0, failed=2)})
    assert taskgraph.doomed(["b"], job.steps, job) == (
        "dependency 'b' did not finish (2 tasks failed or were canceled)"
    )
    assert taskgraph.doomed(["b"], job.steps, job, {"b": 0}) == (
        "dependency 'b' did not finish (2 tasks canceled)"
    )
    assert taskgraph.doomed(["b"], job.steps, job, {"b": 2}) == (
        "dependency 'b' failed (2 tasks did not finish)"
    )


# --- 3. a prerequisite job that ended other than Finished ---------------------------------


@pytest.mark.parametrize("ending", ["cancel", "fail"])
def test_submit_refuses_a_prerequisite_that_ended_other_than_finished(cp, ending):
    n1 = register(cp, "n1", cores=1)
    first = cp.submit({"command": "x"}).id
    if ending == "cancel":
        cp.cancel_job(first)
    else:
        cp.schedule_pass()
        run_one(n1, exit_code=1)
    state = "Canceled" if ending == "cancel" else "Failed"
    assert cp.get_job(first).state.value == state
    with pytest.raises(Conflict) as refused:
        cp.submit({"command": "y", "dependsOn": [first]})
    assert refused.value.status == 409
    assert str(refused.value) == (
        f"dependsOn: dependency job {first} ended {state}, so this job would be canceled at "
        f"once: requeue job {first} first (hpc job requeue {first}), then submit this one "
        "(or, to run it anyway, hpc job submit --run-dependents-on-failure: "
        '"runDependentsOnFailure": true)'
    )
    later = cp.submit({"command": "z"})  # the refused submit took no id
    assert later.id == first + 1


def test_submit_takes_a_failed_prerequisite_when_dependents_run_anyway(cp):
    register(cp, "n1", cores=1)
    first = cp.submit({"command": "x"}).id
    cp.cancel_job(first)
    keen = cp.submit({"command": "y", "dependsOn": [first], "runDependentsOnFailure": True})
    assert keen.state is JobState.QUEUED


def test_submit_still_refuses_an_unknown_prerequisite_with_a_422(cp):
    register(cp, "n1", cores=1)
    with pytest.raises(InvalidRequest, match="dependsOn: job 999 does not exist"):
        cp.submit({"command": "y", "dependsOn": [999]})


def test_a_dependent_of_a_failed_job_says_it_will_be_canceled_until_it_is(cp):
    n1 = register(cp, "n1", cores=1)
    first = cp.submit({"command": "x"}).id
    second = cp.submit({"command": "y", "dependsOn": [first]}).id
    cp.schedule_pass()
    run_one(n1, exit_code=1)
    assert cp.get_job(second).state is JobState.QUEUED  # the reconciler cancels it
    assert reason(cp, second) == (f"dependency job {first} ended Failed; this job will be canceled")
    cp.reconcile()
    assert cp.get_job(second).state is JobState.CANCELED


def test_the_pending_rule_for_prerequisite_jobs():
    job = Job(id=2, depends_on=[1])
    now = job.submit_time
    held_back = eligibility.held_back
    assert held_back(job, now=now, prerequisites={1: JobState.RUNNING}) == (
        "dependency job 1 not finished (Running)"
    )
    assert held_back(job, now=now, prerequisites={1: JobState.CANCELED}) == (
        "dependency job 1 ended Canceled; this job will be canceled"
    )
    assert held_back(job, now=now, prerequisites={1: JobState.FINISHED}) is None
    keen = Job(id=3, depends_on=[1], run_dependents_on_failure=True)
    assert held_back(keen, now=now, prerequisites={1: JobState.FAILED}) is None


# --- 4. a Canceling job takes no hold or priority; a requeue keeps a hold -----------------


def canceling_job(cp) -> int:
    n1 = register(cp, "n1", cores=1)
    job = cp.submit({"command": "sleep 100"}).id
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    assert cp.cancel_job(job).state is JobState.CANCELING  # until its agent reports the kill
    return job


def test_a_canceling_job_refuses_a_hold_and_a_priority_saying_why(cp):
    job = canceling_job(cp)
    for change in (lambda: cp.hold_job(job), lambda: cp.set_priority(job, "Highest")):
        with pytest.raises(Conflict) as refused:
            change()
        assert refused.value.status == 409
        assert f"job {job} is Canceling: none of its tasks will start again" in str(refused.value)
    after = cp.get_job(job)
    assert (after.held, after.priority) == (False, 2000)


def test_an_ended_job_refuses_a_priority_before_its_template_is_read(cp):
    register(cp, "n1", cores=1)
    job = cp.submit({"command": "x"}).id
    cp.cancel_job(job)
    with pytest.raises(Conflict, match="only a job that has not ended can be modified"):
        cp.set_priority(job, "Highest")
    with pytest.raises(Conflict, match="only a job that has not ended can be held"):
        cp.hold_job(job)


def test_a_requeued_job_keeps_its_hold_and_says_so(cp):
    register(cp, "n1", cores=1)
    job = cp.submit({"command": "x"}).id
    cp.hold_job(job)
    cp.cancel_job(job)
    requeued = cp.requeue_job(job)
    assert requeued.state is JobState.QUEUED and requeued.held  # as HPC Pack keeps it
    assert reason(cp, job) == f"held (hpc job release {job})"
    assert cp.schedule_pass() == 0


def test_a_sweep_after_a_canceled_task_and_its_own_dependents_say_canceled(cp):
    """The sweep's tasks not created yet are canceled as a range, in the same round as the
    task after it: each says how its prerequisite ended."""
    register(cp, "n1", cores=1)
    spec = {
        "name": "pipeline",
        "tasks": [
            {"name": "prep", "command": "prep"},
            {"name": "work", "command": "w *", "sweep": "1-3", "dependsOn": ["prep"]},
            {"name": "sum", "command": "sum", "dependsOn": ["work"]},
        ],
    }
    job = cp.submit(spec)
    cp.cancel_task(job.id, 1)
    work, total = cp.get_task(job.id, 2), cp.get_task(job.id, 5)
    assert (work.state, work.error) == (
        TaskState.CANCELED,
        "dependency 'prep' did not finish (1 task canceled)",
    )
    assert (total.state, total.error) == (
        TaskState.CANCELED,
        "dependency 'work' did not finish (3 tasks canceled)",
    )
    assert cp.get_job(job.id).state is JobState.CANCELED
