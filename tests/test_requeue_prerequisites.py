"""A job canceled because a prerequisite job did not finish is not requeued alone: the next
pass would cancel it again (found live: ``hpc job requeue 13`` printed Queued, and job 13
was Canceled again two seconds later). Job and task requeues refuse it with a 409 naming
the prerequisite to requeue first, and the task requeue no longer points at the job's."""

from __future__ import annotations

import pytest

from shared.domain.states import JobState, TaskState
from shared.errors import Conflict
from shared.usecases.control_plane import ControlPlane
from tests.test_control import Clock, make_cp, register


@pytest.fixture
def cp(tmp_path) -> ControlPlane:
    return make_cp(tmp_path, Clock())


def failed_prerequisite(cp: ControlPlane) -> tuple[int, int]:
    """Job ``first`` failed; job ``second`` (dependsOn first) canceled for it."""
    n1 = register(cp, "n1", cores=1)
    first = cp.submit({"command": "false"}).id
    second = cp.submit({"command": "echo hi", "dependsOn": [first]}).id
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run), n1.ended(run, exit_code=1))
    cp.reconcile()  # cancels a job whose prerequisite ended other than Finished
    assert cp.get_job(first).state is JobState.FAILED
    assert cp.get_job(second).state is JobState.CANCELED
    return first, second


def test_a_job_whose_prerequisite_failed_is_not_requeued_alone(cp):
    first, second = failed_prerequisite(cp)
    with pytest.raises(Conflict) as refused:
        cp.requeue_job(second)
    assert str(refused.value) == (
        f"job {second} would be canceled again at once: dependency job {first} ended Failed; "
        f"requeue job {first} first (hpc job requeue {first}), then this one"
    )
    assert refused.value.status == 409
    assert cp.get_job(second).state is JobState.CANCELED  # nothing changed
    assert cp.get_task(second, 1).state is TaskState.CANCELED


def test_the_task_requeue_points_at_the_prerequisite_not_the_refused_job_requeue(cp):
    first, second = failed_prerequisite(cp)
    with pytest.raises(Conflict) as refused:
        cp.requeue_task(second, 1)
    message = str(refused.value)
    assert message.startswith(f"task {second}.1 would be canceled again at once: dependency job")
    assert f"requeue job {first} first (hpc job requeue {first})" in message
    assert f"hpc job requeue {second}" not in message


def test_once_the_prerequisite_is_requeued_the_job_is_too(cp):
    first, second = failed_prerequisite(cp)
    assert cp.requeue_job(first).state is JobState.QUEUED
    assert cp.requeue_job(second).state is JobState.QUEUED
    cp.schedule_pass()
    assert cp.get_job(second).state is JobState.QUEUED  # waits for its prerequisite


def test_another_users_prerequisite_is_theirs_or_an_admins_to_requeue(cp):
    """A multi-user probe: bob's job, canceled for alice's, told him to requeue hers, which
    was then refused him ("job 30 belongs to alice")."""
    from shared.domain.cluster import Principal

    alice, bob = Principal(name="alice", role="user"), Principal(name="bob", role="user")
    n1 = register(cp, "n1", cores=1)
    first = cp.submit({"command": "false"}, alice).id
    second = cp.submit({"command": "echo hi", "dependsOn": [first]}, bob).id
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run), n1.ended(run, exit_code=1))
    cp.reconcile()
    with pytest.raises(Conflict) as refused:
        cp.requeue_job(second)
    assert f"ask alice or an admin to requeue job {first} first" in str(refused.value)
    with pytest.raises(Conflict) as again:  # a new dependent of hers: the same words
        cp.submit({"command": "x", "dependsOn": [first]}, bob)
    assert f"ask alice or an admin to requeue job {first} first" in str(again.value)
    with pytest.raises(Conflict) as own:  # her own: hers to requeue
        cp.submit({"command": "x", "dependsOn": [first]}, alice)
    assert f"once: requeue job {first} first (hpc job requeue {first})" in str(own.value)
