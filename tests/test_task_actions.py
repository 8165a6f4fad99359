"""Cancel and requeue one task (shared/usecases/task_actions.py, functions/tasks_api.py,
``hpc task cancel | requeue``): the use cases on the embedded store with a hand-driven
clock and an agent double, then the HTTP routes and the CLI on the real function app."""

from __future__ import annotations

import pytest

from shared.domain.messages import CancelTask
from shared.domain.states import JobState, NodeState, TaskState
from shared.errors import Conflict, NotFound
from shared.usecases.control_plane import ControlPlane
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc
from tests.helpers import wait_until
from tests.test_control import Clock, make_cp, register, sweep


@pytest.fixture
def cp(tmp_path) -> ControlPlane:
    return make_cp(tmp_path, Clock())


def three(**extra) -> dict:
    """Three stored tasks (a sweep's are created only as they are dispatched)."""
    return {"name": "j", "tasks": [{"command": f"echo {c}"} for c in "abc"], **extra}


def test_a_queued_task_is_canceled_now_and_the_job_goes_on(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(three())
    cp.schedule_pass()
    [run] = n1.runs()
    task = cp.cancel_task(job.id, 3)
    assert task.state is TaskState.CANCELED
    assert cp.get_job(job.id).task_counts == {
        TaskState.DISPATCHING: 1,
        TaskState.QUEUED: 1,
        TaskState.CANCELED: 1,
    }
    assert n1.assignments() == []  # nothing to kill
    n1.send(n1.started(run), n1.ended(run, exit_code=0))
    cp.schedule_pass()
    [second] = n1.run_all()
    assert second.task_id == 2  # the canceled task never runs
    assert cp.schedule_pass() == 0
    final = cp.get_job(job.id)
    assert final.state is JobState.FAILED  # a canceled task is not a success
    assert final.error == "1 of 3 tasks canceled"
    assert final.task_counts == {TaskState.FINISHED: 2, TaskState.CANCELED: 1}


def test_a_running_task_is_killed_through_its_agent_and_only_it(cp):
    n1 = register(cp, "n1", cores=2)
    job = cp.submit(three())
    cp.schedule_pass()
    runs = n1.runs()
    n1.send(*(n1.started(r) for r in runs))
    task = cp.cancel_task(job.id, 1)
    assert task.state is TaskState.RUNNING  # until its agent killed it
    with pytest.raises(Conflict, match=r"task \d+\.1 is being canceled .* once it is Canceled"):
        cp.requeue_task(job.id, 1)  # in its grace: a probe was told only "is Running"
    [cancel] = n1.assignments()
    assert isinstance(cancel, CancelTask)
    assert (cancel.task_id, cancel.attempt, cancel.incarnation) == (1, 0, n1.incarnation)
    n1.send(n1.ended(runs[0], exit_code=-15, canceled=True))
    assert cp.get_task(job.id, 1).state is TaskState.CANCELED
    assert cp.get_task(job.id, 2).state is TaskState.RUNNING
    assert cp.get_job(job.id).state is JobState.RUNNING


def test_a_task_that_ends_before_its_kill_keeps_its_result(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(three())
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    cp.cancel_task(job.id, 1)
    n1.send(n1.ended(run, exit_code=0))  # it finished before the cancel reached it
    assert cp.get_task(job.id, 1).state is TaskState.FINISHED


def test_canceling_an_ended_task_is_a_conflict_and_changes_nothing(cp):
    n1 = register(cp, "n1", cores=3)
    job = cp.submit(three())
    cp.schedule_pass()
    n1.run_all()
    before = cp.get_job(job.id)
    with pytest.raises(Conflict, match=r"task \d+\.1 is already Finished; nothing to cancel"):
        cp.cancel_task(job.id, 1)
    assert cp.get_job(job.id).task_counts == before.task_counts


def test_unknown_tasks_are_not_found(cp):
    register(cp, "n1")
    job = cp.submit(three())
    with pytest.raises(NotFound, match="has tasks 1 to 3"):
        cp.cancel_task(job.id, 4)
    with pytest.raises(NotFound):
        cp.requeue_task(job.id + 1, 1)


def test_a_sweep_task_not_created_yet_is_not_requeued_while_queued(cp):
    """(Canceling one: tests/test_sweep_task_cancel.py.)"""
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(sweep(5))
    cp.schedule_pass()
    assert len(n1.runs()) == 1  # task 1 exists; 2-5 are still the sweep's range
    with pytest.raises(Conflict, match=r"is Queued; only a Failed or Canceled task"):
        cp.requeue_task(job.id, 4)
    assert cp.get_task(job.id, 4).state is TaskState.QUEUED


def test_canceling_a_prerequisite_cancels_its_dependents_with_the_reason(cp):
    register(cp, "n1", cores=1)
    spec = {
        "name": "pipeline",
        "tasks": [
            {"name": "prep", "command": "prep"},
            {"name": "work", "command": "work", "dependsOn": ["prep"]},
        ],
    }
    job = cp.submit(spec)
    cp.cancel_task(job.id, 1)
    work = cp.get_task(job.id, 2)
    assert work.state is TaskState.CANCELED and "prep" in (work.error or "")
    ended = cp.get_job(job.id)  # every task canceled: the job is Canceled, not Failed
    assert (ended.state, ended.error) == (JobState.CANCELED, "all 2 tasks canceled")
    cp.requeue_job(job.id)  # and may be requeued as a Canceled job
    assert cp.get_task(job.id, 1).state is TaskState.QUEUED


def test_a_failed_task_is_requeued_alone_and_reopens_its_job(cp):
    n1 = register(cp, "n1", cores=3)
    job = cp.submit(three())
    cp.schedule_pass()
    runs = n1.runs()
    n1.send(*(n1.ended(r, exit_code=1 if r.task_id == 2 else 0) for r in runs))
    assert cp.get_job(job.id).state is JobState.FAILED
    task = cp.requeue_task(job.id, 2).task
    assert task.state is TaskState.QUEUED and task.attempt == 1
    reopened = cp.get_job(job.id)
    assert reopened.state is JobState.QUEUED and reopened.error is None
    assert reopened.task_counts == {TaskState.FINISHED: 2, TaskState.QUEUED: 1}
    cp.schedule_pass()
    [again] = n1.run_all()
    assert (again.task_id, again.attempt) == (2, 1)
    assert cp.get_job(job.id).state is JobState.FINISHED


def test_a_canceled_task_of_a_running_job_is_requeued(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(three())
    cp.schedule_pass()
    cp.cancel_task(job.id, 3)
    assert cp.requeue_task(job.id, 3).task.state is TaskState.QUEUED
    assert cp.get_job(job.id).task_counts.get(TaskState.CANCELED) is None
    ran = n1.run_all()  # task 1, dispatched before the cancel
    for _ in range(2):  # one core: one task per pass
        cp.schedule_pass()
        ran += n1.run_all()
    assert sorted(r.task_id for r in ran) == [1, 2, 3]
    assert cp.get_job(job.id).state is JobState.FINISHED


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("queued", r"is Queued; only a Failed or Canceled task can be requeued"),
        ("finished", r"is Finished; only a Failed or Canceled task"),
        ("canceling", r"is being canceled; requeue it once it is Canceled"),
    ],
)
def test_requeue_refuses_what_cannot_run_again(cp, setup, message):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(three())
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    target = 2
    if setup == "finished":
        n1.send(n1.ended(run, exit_code=0))
        target = 1
    elif setup == "canceling":
        cp.cancel_job(job.id)  # task 1 runs until its agent kills it
        target = 3
    before = cp.get_job(job.id)
    with pytest.raises(Conflict, match=message):
        cp.requeue_task(job.id, target)
    after = cp.get_job(job.id)
    assert (after.state, after.task_counts) == (before.state, before.task_counts)


# --- HTTP and CLI on the real function app -------------------------------------------------


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    with served_app(tmp_path_factory.mktemp("taskactions")) as app, app.client() as client:
        node = AgentDouble(app.cp, "onprem-1", cores=1)
        assert node.register().accepted
        yield client, app, node


def test_the_routes_cancel_and_requeue_one_task(host):
    client, app, node = host
    job = client.post("/api/jobs", json=three()).json()
    canceled = client.post(f"/api/jobs/{job['id']}/tasks/3/cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["state"] == "Canceled"
    again = client.post(f"/api/jobs/{job['id']}/tasks/3/cancel")
    assert again.status_code == 409
    assert "already Canceled; nothing to cancel" in again.json()["error"]
    requeued = client.post(f"/api/jobs/{job['id']}/tasks/3/requeue")
    assert requeued.status_code == 200 and requeued.json()["state"] == "Queued"
    assert client.post(f"/api/jobs/{job['id']}/tasks/9/cancel").status_code == 404
    bad = client.post(f"/api/jobs/{job['id']}/tasks/x/requeue")
    assert bad.status_code == 400 and "task id" in bad.json()["error"]
    app.cp.cancel_job(job["id"])


def test_only_the_owner_or_an_admin_changes_a_task(host):
    client, _app, _node = host
    tokens = {}
    for name in ("erin", "fred"):
        added = client.post("/api/users", json={"name": name})
        tokens[name] = {"Authorization": f"Bearer {added.json()['token']}"}
    # held: none of its tasks is placed on the shared node (a task placed there would end
    # Canceled only when its agent, a double here, reported its kill: flaky under load)
    job = client.post("/api/jobs", json=three(held=True), headers=tokens["erin"]).json()
    refused = client.post(f"/api/jobs/{job['id']}/tasks/2/cancel", headers=tokens["fred"])
    assert refused.status_code == 403
    assert "belongs to erin" in refused.json()["error"]
    assert client.get(f"/api/jobs/{job['id']}/tasks/2").json()["state"] == "Queued"
    mine = client.post(f"/api/jobs/{job['id']}/tasks/2/cancel", headers=tokens["erin"])
    assert mine.status_code == 200 and mine.json()["state"] == "Canceled"
    assert mine.json()["error"] == "canceled by erin"  # who, as Slurm's "CANCELLED by"
    client.post(f"/api/jobs/{job['id']}/cancel", headers=tokens["erin"])
    job_now = client.get(f"/api/jobs/{job['id']}").json()
    assert job_now["error"] == "canceled by erin"
    first = client.get(f"/api/jobs/{job['id']}/tasks/1").json()
    assert first["error"] == f"job {job['id']} canceled by erin"


def test_the_cli_cancels_and_requeues_a_task(host, monkeypatch):
    client, app, _node = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", app.token)
    job = client.post("/api/jobs", json=three()).json()
    out = hpc("task", "cancel", str(job["id"]), "2")
    assert out.exit_code == 0 and f"task {job['id']}.2: Canceled" in out.stdout
    out = hpc("task", "requeue", str(job["id"]), "2")
    assert out.exit_code == 0 and f"task {job['id']}.2: Queued" in out.stdout
    out = hpc("task", "requeue", str(job["id"]), "2")
    assert_one_error_line(out, "is Queued; only a Failed or Canceled task can be requeued")
    app.cp.cancel_job(job["id"])


def test_hpc_job_view_says_why_its_first_failed_task_failed(host, monkeypatch):
    """A probe: a failed job's view said only "1 of 1 tasks failed"; every reason needed
    hpc task list. Its first failed task is read too, past the first page's."""
    client, app, _node = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", app.token)
    # a node and group of its own: earlier tests' tasks may still hold the module's node
    node = AgentDouble(app.cp, "failview-1", cores=1, groups=("FailView",))
    assert node.register().accepted
    spec = {"command": "x", "sweep": "1-2", "nodeGroups": ["FailView"]}
    job = client.post("/api/jobs", json=spec).json()
    done: set[int] = set()

    def play() -> bool:  # the served app's own scheduler places them: a pass of the test's
        for run in node.runs():  # own beside it would be a second pass at once (a fresh
            node.send(node.started(run))  # clone's run saw two tasks on the 1-core node)
            if run.task_id == 2:
                node.send(node.ended(run, exit_code=None, error="working directory 'x' is gone"))
            else:
                node.send(node.ended(run, exit_code=0))
            done.add(run.task_id)
        return done == {1, 2}

    wait_until(play, timeout=30)
    wait_until(lambda: app.cp.get_job(job["id"]).state is JobState.FAILED, timeout=30)
    app.cp.node_action("offline", ["failview-1"])  # no later test's task goes there
    monkeypatch.setattr("hpc.commands.jobs.LIMIT_SAMPLE", 1)  # the failure is not on it
    out = hpc("job", "view", str(job["id"]))
    assert out.exit_code == 0, out.output
    assert f"First failure  task {job['id']}.2: working directory 'x' is gone" in out.stdout


def test_a_late_duplicate_end_of_the_old_attempt_does_not_touch_the_requeued_task(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(three())
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run), n1.ended(run, exit_code=1))
    cp.requeue_task(job.id, 1)
    counts = cp.get_job(job.id).task_counts
    n1.send(n1.ended(run, exit_code=1))  # attempt 0's end, delivered again
    task = cp.get_task(job.id, 1)
    assert (task.state, task.attempt) == (TaskState.QUEUED, 1)
    assert cp.get_job(job.id).task_counts == counts


@pytest.mark.parametrize("loss", ["agent restarted", "node taken offline", "node unreachable"])
def test_a_cancel_holds_when_the_attempt_is_given_up_before_its_kill_lands(tmp_path, loss):
    """Found live: the cancel returned 200, then the attempt was given up (its agent
    restarted, its node went offline or silent) before the kill reached it, and the task ran
    again elsewhere and ended Finished. A task a user canceled ends Canceled."""
    clock = Clock()
    cp = make_cp(tmp_path, clock)
    n1 = register(cp, "n1", cores=1)
    cp.reconcile()  # the control plane is listening from now on
    job = cp.submit(three())
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    n2 = register(cp, "n2", cores=1)
    running = cp.cancel_task(job.id, run.task_id)
    assert running.state is TaskState.RUNNING and running.cancel_requested
    if loss == "agent restarted":  # before it read the kill
        assert AgentDouble(cp, "n1", cores=1, host_id=n1.host_id).register().accepted
    elif loss == "node taken offline":
        cp.node_action("offline", ["n1"])
    else:
        for _ in range(5):
            clock.advance(4)
            n2.send(n2.heartbeat())
            cp.reconcile()
        assert cp.store.get_node("n1").state is NodeState.UNREACHABLE
    task = cp.get_task(job.id, run.task_id)
    assert task.state is TaskState.CANCELED
    assert "after a cancel was asked for" in (task.error or "")
    cp.schedule_pass()
    cp.schedule_pass()
    again = cp.get_task(job.id, run.task_id)
    assert (again.state, again.attempt) == (TaskState.CANCELED, 0)  # never ran again
    assert all(r.task_id != run.task_id for r in n2.runs())


def test_canceling_a_task_of_a_job_being_canceled_is_a_conflict(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit(three())
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run))
    cp.cancel_job(job.id)
    with pytest.raises(Conflict, match="is being canceled: its tasks end Canceled already"):
        cp.cancel_task(job.id, 1)


def test_requeue_refuses_a_task_whose_prerequisite_failed_naming_it(cp):
    n1 = register(cp, "n1", cores=1)
    spec = {
        "name": "pipeline",
        "tasks": [
            {"name": "prep", "command": "prep"},
            {"name": "work", "command": "work", "dependsOn": ["prep"]},
        ],
    }
    job = cp.submit(spec)
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run), n1.ended(run, exit_code=1))  # prep fails: work is canceled
    assert cp.get_task(job.id, 2).state is TaskState.CANCELED
    with pytest.raises(Conflict, match=r"canceled again at once: dependency 'prep' failed"):
        cp.requeue_task(job.id, 2)
    assert cp.requeue_task(job.id, 1).task.state is TaskState.QUEUED  # prep first: that works


def test_requeue_of_a_sweep_task_never_created_names_the_failed_prerequisite(cp):
    """A probe: a sweep step canceled with its failed prerequisite, before the scheduler
    created it, was told about the scheduler's workings, not what holds it back."""
    n1 = register(cp, "n1", cores=1)
    spec = {
        "tasks": [
            {"name": "prep", "command": "prep"},
            {"name": "work", "command": "work *", "sweep": "1-3", "dependsOn": ["prep"]},
        ],
    }
    job = cp.submit(spec)
    cp.schedule_pass()
    [run] = n1.runs()
    n1.send(n1.started(run), n1.ended(run, exit_code=1))
    assert cp.get_job(job.id).state is JobState.FAILED
    with pytest.raises(Conflict, match=r"3 would be canceled again at once: dependency 'prep'"):
        cp.requeue_task(job.id, 3)
    requeued = cp.requeue_task(job.id, 1)  # prep first: that works, and brings the sweep back
    assert (requeued.task.state, requeued.dependents) == (TaskState.QUEUED, 3)
    assert cp.get_task(job.id, 3).state is TaskState.QUEUED
    with pytest.raises(Conflict, match=r"task \d+\.3 is Queued; only a Failed or Canceled"):
        cp.requeue_task(job.id, 3)


def test_only_a_jobs_owner_or_an_admin_reads_what_its_tasks_wrote(host):
    """Found live: with --run-as-owner, any user could read another user's task output.
    Every user sees every job and task's state; the output is its owner's and admins'."""
    client, app, node = host
    tokens = {}
    for name in ("ann", "ben"):
        added = client.post("/api/users", json={"name": name})
        tokens[name] = {"Authorization": f"Bearer {added.json()['token']}"}
    job = client.post("/api/jobs", json={"command": "echo secret"}, headers=tokens["ann"]).json()
    for _ in range(10):  # the node may still hold earlier tests' tasks: run until it ends
        app.cp.schedule_pass()
        node.run_all()  # each run's output tail: "out <task id>"
        if app.cp.get_job(job["id"]).state is JobState.FINISHED:
            break
    assert app.cp.get_job(job["id"]).state is JobState.FINISHED
    path = f"/api/jobs/{job['id']}/tasks"
    refused = client.get(f"{path}/1/output", headers=tokens["ben"])
    assert refused.status_code == 403
    assert (
        "belongs to ann: only its owner or an admin may read the output of it"
        in (refused.json()["error"])
    )
    for headers in (tokens["ann"], {}):  # the owner, and the admin (the client's own token)
        assert client.get(f"{path}/1", headers=headers).json()["output"] == "out 1"
        assert client.get(path, headers=headers).json()["tasks"][0]["output"] == "out 1"
    theirs = client.get(f"{path}/1", headers=tokens["ben"]).json()
    assert (theirs["state"], theirs["output"]) == ("Finished", None)
    assert client.get(path, headers=tokens["ben"]).json()["tasks"][0]["output"] is None


def test_only_a_jobs_owner_or_an_admin_sees_its_tasks_environment(host):
    """Found by a probe: any user read another user's task env (a password, a key). The
    task's state stays everyone's; its variables are its owner's and admins', even before
    it ran (no output yet)."""
    client, _app, _node = host
    tokens = {}
    for name in ("cat", "dan"):
        added = client.post("/api/users", json={"name": name})
        tokens[name] = {"Authorization": f"Bearer {added.json()['token']}"}
    spec = {"tasks": [{"command": "true", "env": {"DB_PASSWORD": "hunter2"}}]}
    job = client.post("/api/jobs", json=spec, headers=tokens["cat"]).json()
    path = f"/api/jobs/{job['id']}/tasks"
    for headers in (tokens["cat"], {}):  # the owner, and the admin
        mine = client.get(f"{path}/1", headers=headers).json()
        assert mine["env"]["DB_PASSWORD"] == "hunter2"
        assert client.get(path, headers=headers).json()["tasks"][0]["env"] == mine["env"]
    theirs = client.get(f"{path}/1", headers=tokens["dan"]).json()
    assert theirs["state"] in ("Queued", "Dispatching") and theirs["env"] is None
    assert client.get(path, headers=tokens["dan"]).json()["tasks"][0]["env"] is None
