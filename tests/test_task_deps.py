"""Dependencies between the tasks of a job: the pure graph rules as tables, then the use cases
on the embedded store (a dependent waits, runs after, or is Canceled with the reason)."""

from __future__ import annotations

import pytest

from shared.domain import taskgraph
from shared.domain.jobbuild import build
from shared.domain.jobspec import JobSpec
from shared.domain.models import Job, Step, Task
from shared.domain.states import JobState, TaskState
from shared.errors import InvalidRequest
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures


def spec(*tasks: dict) -> dict:
    return {"name": "dag", "tasks": list(tasks)}


PREP = {"name": "prep", "command": "prep"}
WORK = {"name": "work", "command": "work *", "sweep": "1-3", "dependsOn": ["prep"]}
SUM = {"name": "sum", "command": "sum", "dependsOn": ["work"]}


# --- the graph at submit -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (
            [{"name": "a", "command": "a", "dependsOn": ["b"]}, {"name": "b", "command": "b"}]
            + [{"name": "c", "command": "c", "dependsOn": ["zz"]}],
            "tasks.2.dependsOn: no task of the job is named 'zz'; names: a, b, c",
        ),
        (
            [{"name": "a", "command": "a", "dependsOn": ["a"]}],
            "tasks.0.dependsOn: task 'a' depends on itself",
        ),
        (
            [
                {"name": "a", "command": "a", "dependsOn": ["c"]},
                {"name": "b", "command": "b", "dependsOn": ["a"]},
                {"name": "c", "command": "c", "dependsOn": ["b"]},
            ],
            "tasks.dependsOn has a cycle: 'a' -> 'c' -> 'b' -> 'a'",
        ),
        (
            [{"command": "a", "dependsOn": ["x"]}],
            "no task of the job is named 'x'; names: none (give tasks a name)",
        ),
    ],
)
def test_an_unknown_name_or_a_cycle_is_refused_naming_it(tasks, message):
    with pytest.raises(InvalidRequest) as refused:
        JobSpec.parse(spec(*tasks))
    assert refused.value.status == 422
    assert message in str(refused.value)


def test_prerequisites_get_lower_ids_and_the_spec_order_is_kept_otherwise():
    job, tasks, ranges = build(
        JobSpec.parse(spec(SUM, {"command": "free"}, WORK, PREP)), 1, now=Job(id=1).submit_time
    )
    named = sorted(
        [(t.id, t.name) for t in tasks] + [(r.first_id, r.template.name) for r in ranges]
    )
    assert named == [(1, "dag"), (2, "prep"), (3, "work"), (6, "sum")]
    assert job.steps == {"prep": Step(left=1), "work": Step(left=3)}


def test_a_spec_in_dependency_order_keeps_its_ids():
    _, tasks, ranges = build(JobSpec.parse(spec(PREP, WORK, SUM)), 1, now=Job(id=1).submit_time)
    assert [(t.id, t.name) for t in tasks] == [(1, "prep"), (5, "sum")]
    assert [(r.first_id, r.count) for r in ranges] == [(2, 3)]


def job(steps: dict[str, Step], *, anyway: bool = False) -> Job:
    return Job(id=1, steps=steps, run_dependents_on_failure=anyway)


def task(*names: str) -> Task:
    return Task(job_id=1, id=9, command="x", depends_on=list(names))


@pytest.mark.parametrize(
    ("steps", "anyway", "waiting", "doomed"),
    [
        ({"prep": Step(left=1)}, False, "dependency 'prep' not finished (1 task left)", None),
        ({"prep": Step(left=0)}, False, None, None),
        (
            {"prep": Step(left=0, failed=1)},
            False,
            "dependency 'prep' did not finish (1 task failed or was canceled); "
            "this task will be canceled",
            "dependency 'prep' did not finish (1 task failed or was canceled)",
        ),
        ({"prep": Step(left=0, failed=2)}, True, None, None),
        (
            {"prep": Step(left=2, failed=1)},
            True,
            "dependency 'prep' not finished (2 tasks left)",
            None,
        ),
    ],
)
def test_waiting_and_doomed_rules(steps, anyway, waiting, doomed):
    j = job(steps, anyway=anyway)
    assert taskgraph.waiting_for(task("prep"), j) == waiting
    assert taskgraph.doomed(["prep"], j.steps, j) == doomed


@pytest.mark.parametrize(
    ("old", "new", "left", "failed"),
    [
        (TaskState.QUEUED, TaskState.DISPATCHING, 3, 0),
        (TaskState.RUNNING, TaskState.FINISHED, 2, 0),
        (TaskState.RUNNING, TaskState.FAILED, 2, 1),
        (TaskState.QUEUED, TaskState.CANCELED, 2, 1),
    ],
)
def test_job_counts_move_a_steps_counts(old, new, left, failed):
    j = job({"work": Step(left=3)})
    j.task_counts = {old: 3}
    j.count(old, new, name="work")
    assert (j.steps["work"].left, j.steps["work"].failed) == (left, failed)
    j.count(old, new, name="other")  # a name nothing depends on: no step
    assert set(j.steps) == {"work"}


def test_a_rerun_of_a_failed_task_reopens_its_step():
    j = job({"work": Step(left=0, failed=1)})
    j.task_counts = {TaskState.FAILED: 1}
    j.count(TaskState.FAILED, TaskState.QUEUED, name="work")
    assert j.steps["work"] == Step(left=1, failed=0)


# --- the use cases ------------------------------------------------------------------------


def run_queued(agent, exit_codes: dict[str, int] | None = None) -> list[str]:
    """Start and end every assignment waiting; returns the names of the tasks run."""
    names = []
    for run in agent.runs():
        t = agent.cp.get_task(run.job_id, run.task_id)
        names.append(t.name)
        code = (exit_codes or {}).get(t.name, 0)
        agent.send(agent.started(run), agent.ended(run, code))
    return names


def test_dependents_wait_for_every_task_of_the_name_then_run(cp):
    n1 = register(cp, "n1", cores=8)
    submitted = cp.submit(spec(SUM, WORK, PREP))
    cp.schedule_pass()
    assert run_queued(n1) == ["prep"]
    reasons = cp.pending_reasons(cp.list_tasks(submitted.id))
    assert reasons[(submitted.id, 5)] == "dependency 'work' not finished (3 tasks left)"
    cp.schedule_pass()
    assert sorted(run_queued(n1)) == ["work", "work", "work"]
    cp.schedule_pass()
    assert run_queued(n1) == ["sum"]
    assert cp.get_job(submitted.id).state is JobState.FINISHED


def test_a_task_waiting_for_its_prerequisite_says_so_in_a_job_at_its_cap(cp):
    """maxConcurrent reached is the job's reason, but a task whose prerequisite task has not
    finished would wait below the cap too: it names the prerequisite (a probe saw the cap)."""
    register(cp, "n1", cores=8)
    submitted = cp.submit({**spec(PREP, {**WORK, "sweep": "1-2"}), "maxConcurrent": 1})
    assert cp.schedule_pass() == 1  # prep runs: the job is at its cap
    reasons = cp.pending_reasons(cp.list_tasks(submitted.id))
    assert reasons[(submitted.id, 2)] == "dependency 'prep' not finished (1 task left)"
    job_reason = cp.job_pending_reasons([cp.get_job(submitted.id)])[submitted.id]
    assert job_reason == "maxConcurrent 1 reached"


def test_a_failed_prerequisite_cancels_its_dependents_with_the_reason(cp):
    n1 = register(cp, "n1", cores=8)
    submitted = cp.submit(spec(PREP, WORK, SUM, {"name": "free", "command": "free"}))
    cp.schedule_pass()
    assert sorted(run_queued(n1, {"prep": 1})) == ["free", "prep"]
    done = cp.get_job(submitted.id)
    assert done.state is JobState.FAILED
    assert done.task_counts == {TaskState.FINISHED: 1, TaskState.FAILED: 1, TaskState.CANCELED: 4}
    work = cp.get_task(submitted.id, 2)
    assert (work.state, work.error) == (
        TaskState.CANCELED,
        "dependency 'prep' failed (1 task did not finish)",
    )
    total = cp.get_task(submitted.id, 5)
    assert total.state is TaskState.CANCELED  # 'work' was canceled, not failed (a probe)
    assert total.error == "dependency 'work' did not finish (3 tasks canceled)"


def test_run_dependents_on_failure_runs_them_after_a_failed_prerequisite(cp):
    n1 = register(cp, "n1", cores=8)
    submitted = cp.submit(
        {**spec(PREP, SUM | {"dependsOn": ["prep"]}), "runDependentsOnFailure": True}
    )
    cp.schedule_pass()
    assert run_queued(n1, {"prep": 2}) == ["prep"]
    cp.schedule_pass()
    assert run_queued(n1) == ["sum"]
    assert cp.get_job(submitted.id).task_counts == {TaskState.FAILED: 1, TaskState.FINISHED: 1}


def test_the_reconciler_cancels_dependents_an_interrupted_event_left(cp):
    n1 = register(cp, "n1", cores=8)
    submitted = cp.submit(spec(PREP, SUM | {"dependsOn": ["prep"]}))
    cp.schedule_pass()
    [run] = n1.runs()
    # The prerequisite failed, but the cancel of its dependents never ran (a crash).
    stored = cp.store.get_task(submitted.id, 1)
    job_doc = cp.get_job(submitted.id)
    stored.move_to(TaskState.FAILED)
    job_doc.count(TaskState.DISPATCHING, TaskState.FAILED, name="prep")
    cp.store.commit(job=job_doc, tasks=[stored])
    assert cp.get_task(submitted.id, 2).state is TaskState.QUEUED
    cp.reconcile()
    assert cp.get_task(submitted.id, 2).state is TaskState.CANCELED
    assert cp.get_job(submitted.id).state is JobState.FAILED
    assert run.task_id == 1


def test_blocked_dependents_do_not_crowd_other_jobs_out_of_the_window(cp):
    n1 = register(cp, "n1", cores=4)
    cp.settings.scheduler_window = 20
    dag = cp.submit(
        {
            "name": "dag",
            "priority": "Highest",
            "tasks": [PREP]
            + [{"name": f"d{i}", "command": "d", "dependsOn": ["prep"]} for i in range(60)],
        }
    )
    other = cp.submit({"name": "o", "tasks": [{"command": "o", "sweep": "1-10"}]})
    cp.schedule_pass()
    running = sorted(t.job_id for t in cp.store.active_tasks())
    assert running == [dag.id, other.id, other.id, other.id]
    assert n1.name == "n1"
