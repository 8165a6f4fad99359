"""The HTTP API of the real function_app.py, served by the local host in this process.

No agents run here: the test registers a node and plays its agent through
the control plane, so status codes and messages are pinned fast and exactly.
"""

from __future__ import annotations

import httpx
import pytest

from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    env = {"HPC_MAX_BODY_BYTES": "4096"}
    with served_app(tmp_path_factory.mktemp("api"), env) as app:
        AgentDouble(app.cp, "n1", cores=4).register()
        with app.client() as client:
            yield client, app.cp


def error(response: httpx.Response) -> str:
    return str(response.json()["error"])


def test_submit_returns_201_with_the_job(api):
    client, _ = api
    r = client.post("/api/jobs", json={"name": "a", "command": "true", "sweep": "1-3"})
    assert r.status_code == 201
    job = r.json()
    assert job["state"] == "Queued" and job["taskCount"] == 3 and job["taskCounts"] == {"Queued": 3}
    assert "etag" not in job


def test_task_output_and_state_filter(api):
    client, cp = api
    job_id = client.post("/api/jobs", json={"command": "echo hi"}).json()["id"]

    def place() -> None:  # placed or not by the scheduler: a task never placed has no output
        task = cp.store.get_task(job_id, 1)
        if task.node is None:
            task.node = "n1"
            cp.store.commit(tasks=[task])

    cp.deps.retry(place)
    sink = cp.output.sink(job_id, 1, "stdout")
    sink.write_text("hello\nworld\n")
    r = client.get(f"/api/jobs/{job_id}/tasks/1/output")
    assert r.status_code == 200 and r.text == "hello\nworld\n"
    assert r.headers["content-type"].startswith("text/plain")
    r = client.get(f"/api/jobs/{job_id}/tasks/1/output", params={"stream": "both"})
    assert r.status_code == 400 and "stdout or stderr" in error(r)
    r = client.get(f"/api/jobs/{job_id}/tasks", params={"state": "Queued,Running"})
    assert r.status_code == 200
    r = client.get(f"/api/jobs/{job_id}/tasks", params={"state": "Done"})
    assert r.status_code == 400 and "'Done' is not one of" in error(r)


def test_unknown_task_is_404(api):
    client, _ = api
    job_id = client.post("/api/jobs", json={"command": "true"}).json()["id"]
    r = client.get(f"/api/jobs/{job_id}/tasks/5")
    assert r.status_code == 404


def test_requeue_of_a_queued_job_is_409_and_says_which_jobs_can(api):
    client, _ = api
    job_id = client.post("/api/jobs", json={"command": "true"}).json()["id"]
    r = client.post(f"/api/jobs/{job_id}/requeue")
    assert r.status_code == 409 and "only Failed or Canceled jobs" in error(r)


def test_cancel_then_cancel_again_is_409(api):
    client, _ = api
    # held, so that no scheduler pass dispatches it first (then the cancel waits on its agent)
    spec = {"command": "true", "holdUntil": "2099-01-01T00:00:00Z"}
    job_id = client.post("/api/jobs", json=spec).json()["id"]
    r = client.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "Canceled"
    r = client.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 409 and "already Canceled" in error(r)


def test_oversized_body_is_413_and_empty_body_is_400(api):
    client, _ = api
    r = client.post("/api/jobs", content=b" " * 5000)
    assert r.status_code == 413 and "HPC_MAX_BODY_BYTES" in error(r)
    r = client.post("/api/jobs", content=b"")
    assert r.status_code == 400 and "empty" in error(r)


def test_a_json_array_is_not_a_job_spec(api):
    client, _ = api
    r = client.post("/api/jobs", json=[1, 2])
    assert r.status_code == 422


def test_nodes_report_running_tasks_and_free_cores(api):
    client, cp = api
    big = AgentDouble(cp, "big", cores=8, groups=("Big",))
    big.register()
    job_id = client.post(
        "/api/jobs", json={"command": "sleep 1", "cores": 3, "nodeGroup": "Big"}
    ).json()["id"]
    # The local host runs the scheduler on its own when the submit kicks it.
    wait_until(
        lambda: cp.get_task(job_id, 1).state == "Dispatching",
        timeout=10,
        what="the scheduler to place the task",
    )
    big.send(big.started((job_id, 1, 0)))
    nodes = {n["name"]: n for n in client.get("/api/nodes").json()["nodes"]}
    active = cp.store.active_tasks(node="big")  # other tests' jobs (any node) may run here too
    assert any(t.job_id == job_id for t in active)
    assert nodes["big"]["runningTasks"] == len(active)
    assert nodes["big"]["freeCores"] == 8 - sum(t.cores for t in active)
    assert nodes["big"]["state"] == "Online"
    big.send(big.ended((job_id, 1, 0), exit_code=0))
    assert client.get(f"/api/jobs/{job_id}").json()["state"] == "Finished"
    groups = {g["name"] for g in client.get("/api/nodegroups").json()["groups"]}
    assert {"OnPremNodes", "AzureNodes", "Big"} <= groups


def test_wrong_method_is_refused(api):
    client, _ = api
    r = client.delete("/api/jobs")
    assert r.status_code in (404, 405)


def test_hold_release_and_modify_a_job(api):
    client, cp = api
    spec = {"command": "true", "nodeGroup": "OnPremNodes", "holdUntil": "2999-01-01T00:00:00Z"}
    job_id = client.post("/api/jobs", json=spec).json()["id"]  # queued: a hold shows
    held = client.post(f"/api/jobs/{job_id}/hold")
    assert held.status_code == 200 and held.json()["held"] is True
    assert held.json()["pendingReason"] == f"held (hpc job release {job_id})"
    bad = client.post(f"/api/jobs/{job_id}/hold", json={"until": "tomorrow"})
    assert bad.status_code == 422 and "ISO 8601" in error(bad)
    until = client.post(f"/api/jobs/{job_id}/hold", json={"until": "2999-01-01T00:00:00"})
    # a timed hold does not lift the hold until released (a probe's did)
    assert until.json()["pendingReason"] == f"held (hpc job release {job_id})"
    assert until.json()["held"] is True and until.json()["holdUntil"].startswith("2999-01-01")
    modified = client.patch(f"/api/jobs/{job_id}", json={"priority": "Highest"})
    assert modified.status_code == 200 and modified.json()["priority"] == 4000
    wrong = client.patch(f"/api/jobs/{job_id}", json={"maxRetries": 1})
    assert wrong.status_code == 422 and "priority" in error(wrong)
    released = client.post(f"/api/jobs/{job_id}/release")  # the hold; its time stays
    assert released.status_code == 200 and released.json()["held"] is False
    assert released.json()["holdUntil"].startswith("2999-01-01")
    assert released.json()["pendingReason"].startswith("held until 2999-01-01")
    now = client.post(f"/api/jobs/{job_id}/release")  # then its time
    assert now.status_code == 200 and now.json()["holdUntil"] is None
    again = client.post(f"/api/jobs/{job_id}/release")
    assert again.status_code == 409 and "not held" in error(again)


def test_a_sweep_steps_json_says_its_command_as_run(api):
    """A probe's script had to redo the * substitution the CLI shows."""
    client, cp = api
    job_id = client.post(
        "/api/jobs", json={"tasks": [{"command": "echo * **", "sweep": "5-7"}], "held": True}
    ).json()["id"]
    step = client.get(f"/api/jobs/{job_id}/tasks/2").json()  # not created yet
    assert (step["command"], step["commandAsRun"]) == ("echo * **", "echo 6 *")
    cp.cancel_job(job_id)


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/api/jobs?after=3", "GET /api/jobs takes state, owner, limit, before, not after"),
        ("/api/jobs/1/tasks?before=3", "takes state, offset, limit, after, not before"),
        # every GET route (a probe: ?x=1 was a 200 on these)
        ("/api/jobs/1?x=1", "GET /api/jobs/{id} takes no query parameters, not x"),
        ("/api/jobs/1/tasks/1?x=1", "takes no query parameters, not x"),
        ("/api/jobs/1/tasks/1/output?tail=5", "takes stream, attempt, offset, limit, not tail"),
        ("/api/nodes/n1?x=1", "GET /api/nodes/{name} takes no query parameters"),
        ("/api/nodegroups?x=1", "GET /api/nodegroups takes no query parameters"),
        ("/api/nodegroups/azurenodes?x=1", "GET /api/nodegroups/{name} takes no query"),
        ("/api/autoscale/log?grp=A", "takes group, limit, not grp"),
        ("/api/templates?x=1", "GET /api/templates takes no query parameters"),
        ("/api/templates/T?x=1", "GET /api/templates/{name} takes no query parameters"),
        ("/api/users?x=1", "GET /api/users takes no query parameters"),
        ("/api/me?x=1", "GET /api/me takes no query parameters, not x"),
    ],
)
def test_a_list_refuses_a_query_parameter_it_does_not_read(api, path, says):
    """A probe's ?after= on the jobs list (the tasks list's cursor) returned the first page."""
    client, _cp = api
    refused = client.get(path)
    assert refused.status_code == 400 and says in error(refused)
