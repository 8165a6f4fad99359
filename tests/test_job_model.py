"""The job model users bring from HPC Pack and Slurm: holds, job dependencies, maxConcurrent
(--array %N), priority changes, the sweep's * placeholder, and the pending reason of each."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hpc.spec import build_spec, parse_array
from shared.domain.jobspec import sweep_command
from shared.domain.states import JobState, TaskState
from shared.errors import Conflict, InvalidRequest
from tests.test_control import clock, cp, register, sweep  # noqa: F401 - fixtures


def reason(cp, job_id: int) -> str | None:
    return cp.job_pending_reasons([cp.get_job(job_id)]).get(job_id)


def test_max_concurrent_caps_running_tasks_and_says_so(cp):
    n1 = register(cp, "n1", cores=8)
    job = cp.submit({**sweep(10), "maxConcurrent": 3})
    assert cp.schedule_pass() == 3
    assert cp.schedule_pass() == 0
    assert reason(cp, job.id) == "maxConcurrent 3 reached"
    [first, *_] = n1.runs()
    n1.send(n1.ended(first))
    assert cp.schedule_pass() == 1  # one ended, one more may start


def test_a_job_with_nothing_left_to_start_does_not_wait(cp):
    """A probe read "maxConcurrent 2 reached", and "held", on jobs whose every task ran."""
    register(cp, "n1", cores=8)
    capped = cp.submit({**sweep(2), "maxConcurrent": 2})
    assert cp.schedule_pass() == 2
    assert reason(cp, capped.id) is None
    cp.hold_job(capped.id)  # held while all of it runs: nothing waits
    assert reason(cp, capped.id) is None


def test_a_timed_hold_does_not_lift_a_hold_until_released(cp):
    """A probe: hold --until on a job held until released dropped that hold."""
    register(cp, "n1", cores=2)
    job = cp.submit(sweep(2))
    cp.hold_job(job.id)
    later = cp.hold_job(job.id, until=cp.deps.clock() + timedelta(minutes=5))
    assert later.held and later.hold_until is not None
    assert reason(cp, job.id) == f"held (hpc job release {job.id})"


def test_a_release_lifts_the_hold_and_keeps_the_begin_time_until_released_again(cp, clock):
    """A probe: a ``--begin`` job held and released started at once, its begin time lost."""
    n1 = register(cp, "n1", cores=2)
    begin = clock() + timedelta(hours=1)
    job = cp.submit({**sweep(1), "holdUntil": begin.isoformat()})
    cp.hold_job(job.id)
    released = cp.release_job(job.id)
    assert (released.held, released.hold_until) == (False, begin)
    assert cp.schedule_pass() == 0
    assert reason(cp, job.id) == f"held until {begin:%Y-%m-%d %H:%M:%S} UTC"
    now = cp.release_job(job.id)  # again: its begin time lifted, it starts now
    assert (now.held, now.hold_until) == (False, None)
    assert cp.schedule_pass() == 1 and [r.job_id for r in n1.runs()] == [job.id]
    with pytest.raises(Conflict, match="not held"):
        cp.release_job(job.id)


def test_a_canceling_job_may_still_be_renamed(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(2))
    assert cp.schedule_pass() == 1
    [run] = n1.runs()
    n1.send(n1.started(run))
    cp.cancel_job(job.id)  # Canceling until its agent killed the running task
    assert cp.modify_job(job.id, {"name": "renamed"}).name == "renamed"
    with pytest.raises(Conflict, match="Canceling"):
        cp.set_priority(job.id, "Highest")  # nothing of it starts again: refused


def test_a_held_job_does_not_start_until_released(cp):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(sweep(2))
    cp.hold_job(job.id)
    assert cp.schedule_pass() == 0
    assert reason(cp, job.id) == f"held (hpc job release {job.id})"
    other = cp.submit(sweep(1))  # the queue goes on past a held job
    assert cp.schedule_pass() == 1 and n1.runs()[0].job_id == other.id
    cp.release_job(job.id)
    assert cp.schedule_pass() == 1
    with pytest.raises(Conflict, match="not held"):
        cp.release_job(job.id)


def test_a_job_submitted_held_starts_nothing_until_released(cp):
    """``"held": true`` (``hpc job submit --hold``) holds it from its submit on: a hold sent
    after the submit could come after a pass started its tasks on free cores."""
    register(cp, "n1", cores=4)
    job = cp.submit({**sweep(2), "held": True})
    assert cp.get_job(job.id).held
    assert cp.schedule_pass() == 0
    assert reason(cp, job.id) == f"held (hpc job release {job.id})"
    cp.release_job(job.id)
    assert cp.schedule_pass() == 2


def test_the_job_keeps_its_runtime_limit_for_its_view(cp):
    register(cp, "n1", cores=4)
    job = cp.submit({**sweep(2), "runtimeLimit": 90})
    assert cp.get_job(job.id).to_dict()["runtimeLimit"] == 90
    assert cp.get_job(cp.submit(sweep(1)).id).runtime_limit is None


def test_hold_until_a_time(cp, clock):
    register(cp, "n1", cores=2)
    later = clock.now + timedelta(minutes=10)
    job = cp.submit({**sweep(1), "holdUntil": later.isoformat()})
    assert cp.schedule_pass() == 0
    assert reason(cp, job.id).startswith("held until ")
    clock.advance(601)
    assert cp.schedule_pass() == 1


def test_a_dependent_job_waits_for_its_prerequisite_to_finish(cp):
    n1 = register(cp, "n1", cores=4)
    first = cp.submit(sweep(1))
    cp.schedule_pass()
    second = cp.submit({**sweep(1), "dependsOn": [first.id]})
    assert cp.schedule_pass() == 0
    assert reason(cp, second.id) == f"dependency job {first.id} not finished (Running)"
    n1.run_all()
    assert cp.get_job(first.id).state is JobState.FINISHED
    assert cp.schedule_pass() == 1


def test_dependents_of_a_failed_job_are_canceled_with_the_reason(cp):
    n1 = register(cp, "n1", cores=4)
    first = cp.submit(sweep(1))
    cp.schedule_pass()
    second = cp.submit({**sweep(2), "dependsOn": [first.id]})
    keen = cp.submit({**sweep(1), "dependsOn": [first.id], "runDependentsOnFailure": True})
    n1.run_all(exit_code=1)
    cp.reconcile()
    done = cp.get_job(second.id)
    assert done.state is JobState.CANCELED
    assert done.error == f"dependency job {first.id} ended Failed"
    assert done.task_counts == {TaskState.CANCELED: 2}
    assert cp.schedule_pass() == 1 and n1.runs()[0].job_id == keen.id


def test_a_dependency_on_a_job_that_does_not_exist_is_refused(cp):
    register(cp, "n1")
    with pytest.raises(InvalidRequest, match="dependsOn: job 999 does not exist"):
        cp.submit({**sweep(1), "dependsOn": [999]})


def test_priority_changes_while_queued_move_the_job_in_the_queue(cp):
    n1 = register(cp, "n1", cores=1)
    low = cp.submit(sweep(2))
    high = cp.submit(sweep(2))
    cp.set_priority(high.id, "Highest")
    assert {t.priority for t in cp.list_tasks(high.id)} == {4000}
    cp.schedule_pass()
    assert n1.runs()[0].job_id == high.id
    with pytest.raises(InvalidRequest, match="outside 0-4000"):
        cp.set_priority(low.id, 5000)


@pytest.mark.parametrize(
    ("command", "index", "expected"),
    [
        ("run --case *", 7, "run --case 7"),
        ("cp in*.dat out*.dat", 3, "cp in3.dat out3.dat"),
        ("ls **.txt; echo *", 2, "ls *.txt; echo 2"),
        ("echo *", None, "echo *"),
    ],
)
def test_the_sweep_index_replaces_star_and_a_double_star_is_a_literal_one(command, index, expected):
    assert sweep_command(command, index) == expected


def test_dispatched_sweep_commands_have_their_index(cp):
    n1 = register(cp, "n1", cores=4)
    cp.submit({"tasks": [{"command": "echo case*", "sweep": "5-6"}]})
    cp.schedule_pass()
    assert sorted(r.command for r in n1.runs()) == ["echo case5", "echo case6"]


def test_cli_array_is_a_sweep_with_a_cap():
    assert parse_array("1-100%10") == (["1-100"], 10)
    assert parse_array("0-8:2") == (["0-8:2"], None)
    spec = build_spec(command="x", sweep="1-100", max_concurrent=10, depends_on=[4])
    assert spec["maxConcurrent"] == 10 and spec["dependsOn"] == [4]
    with pytest.raises(ValueError, match="after %"):
        parse_array("1-10%0")


@pytest.mark.parametrize(
    ("array", "ranges"),
    [
        ("1,1,2", ["1-2"]),  # a probe's ran task 1 twice
        ("1-5,3-7", ["1-7"]),
        ("9,1-3,2", ["1-3", "9-9"]),
        ("1-9:2,3", ["1-1", "3-3", "5-5", "7-7", "9-9"]),
        ("1,3,5-9:2", ["1-1", "3-3", "5-9:2"]),  # no overlap: as given
        ("0-8:2,1-9:2", ["0-8:2", "1-9:2"]),
    ],
)
def test_cli_array_runs_each_index_once_as_slurm_does(array: str, ranges: list[str]) -> None:
    assert parse_array(array) == (ranges, None)
