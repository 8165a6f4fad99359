"""``POST /api/jobs/{id}/tasks/requeue`` and ``hpc task requeue J RANGES...`` on the real
function app: one request for a range (a probe's ``hpc task requeue 1 200-1199`` made 951
requests, 56 s), bad input a 4xx that writes nothing, only the owner or an admin, commands
of more than 10,000 tasks, or one range of them, sent as several requests (cancel and
requeue), and an older control plane (no such route) served one request per task."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_task_range_cancel_api.py

from __future__ import annotations

import pytest

from tests.cli_fixtures import assert_one_error_line, hpc
from tests.test_task_range_cancel_api import (  # noqa: F401 - fixtures
    count_requests,
    held_sweep,
    host,
    older,
)


def test_the_route_requeues_a_range_in_one_request_and_says_each_task(host):
    client, app = host
    job = held_sweep(client)
    client.post(f"/api/jobs/{job}/tasks/cancel", json={"tasks": ["100-1100"]})
    answer = client.post(f"/api/jobs/{job}/tasks/requeue", json={"tasks": ["200-1199", 5]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["jobId"] == job and body["requeuedDependents"] == 0
    assert body["dependentJobsCanceled"] == []
    assert len(body["tasks"]) == 901 and body["tasks"][0] == {
        "id": 200,
        "state": "Queued",
        "sweepIndex": 200,
    }
    assert len(body["refused"]) == 100  # 5 and 1101-1199: Queued
    assert body["refused"][0] == {
        "id": 5,
        "status": 409,
        "error": f"task {job}.5 is Queued; only a Failed or Canceled task can be requeued",
    }
    assert len(app.cp.store.get_ranges(job)) == 4 and len(app.cp.store.list_tasks(job)) == 0
    counts = client.get(f"/api/jobs/{job}").json()["taskCounts"]
    assert counts == {"Queued": 50_000 - 100, "Canceled": 100}
    client.post(f"/api/jobs/{job}/cancel")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"not json", 400, "not valid JSON"),
        (b"[]", 422, '{"tasks": [12, "20-30", ...]}'),
        (b'{"tasks": []}', 422, "give a list of task ids"),
        (b'{"tasks": ["9-3"]}', 422, "a range goes from its first task to its last"),
        (b'{"tasks": [0]}', 422, "task ids are whole numbers from 1"),
        (b'{"tasks": [' + b",".join(b"%d" % i for i in range(1, 2003, 2)) + b"]}", 422,
         "one request takes at most 1,000"),
        (b'{"tasks": ["1-20000"]}', 422, "one request names at most 10,000"),
        (b'{"tasks": ["49990-50010"]}', 404, "it has no task 50001-50010"),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_saying_what_to_fix_and_requeues_nothing(host, body, status, says):
    client, _app = host
    job = held_sweep(client)
    client.post(f"/api/jobs/{job}/tasks/cancel", json={"tasks": ["1-10000"]})
    answer = client.post(f"/api/jobs/{job}/tasks/requeue", content=body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    counts = client.get(f"/api/jobs/{job}").json()["taskCounts"]
    assert counts == {"Queued": 40_000, "Canceled": 10_000}
    client.post(f"/api/jobs/{job}/cancel")


def test_only_the_jobs_owner_or_an_admin_requeues_its_tasks(host):
    client, _app = host
    tokens = {}
    for name in ("rhea", "saul"):
        added = client.post("/api/users", json={"name": name}).json()
        tokens[name] = {"Authorization": f"Bearer {added['token']}"}
    spec = {"tasks": [{"command": "echo *", "sweep": "1-10"}], "held": True}
    job = client.post("/api/jobs", json=spec, headers=tokens["rhea"]).json()["id"]
    client.post(f"/api/jobs/{job}/tasks/cancel", json={"tasks": ["1-10"]})
    path = f"/api/jobs/{job}/tasks/requeue"
    refused = client.post(path, json={"tasks": ["1-3"]}, headers=tokens["saul"])
    assert refused.status_code == 403 and "belongs to rhea" in refused.json()["error"]
    assert client.get(f"/api/jobs/{job}/tasks/2").json()["state"] == "Canceled"
    mine = client.post(path, json={"tasks": ["1-3"]}, headers=tokens["rhea"])
    assert mine.status_code == 200 and len(mine.json()["tasks"]) == 3
    assert client.post(path, json={"tasks": [4]}).status_code == 200  # an admin
    assert client.get(f"/api/jobs/{job}").json()["taskCounts"] == {"Queued": 4, "Canceled": 6}


def test_the_cli_requeues_a_thousand_tasks_at_once_saying_them_as_one_run(host, monkeypatch):
    client, app = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", app.token)
    job = held_sweep(client)
    assert hpc("task", "cancel", str(job), "100-1199").exit_code == 0
    sent = count_requests(monkeypatch)
    out = hpc("task", "requeue", str(job), "200-1199")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        f"tasks {job}.200-1199 (sweep index 200-1199): Queued (1,000)"
    ]
    assert sent == [f"jobs/{job}/tasks/requeue"]  # one request (951 took 56 s before)
    out = hpc("task", "requeue", str(job), "199-200", "50001")  # a refusal each, the rest go on
    assert out.exit_code == 1
    assert out.stdout.splitlines() == [f"task {job}.199 (sweep index 199): Queued"]
    assert f"task {job}.200: not requeued: task {job}.200 is Queued; only a Failed" in out.stderr
    assert f"task {job}.50001: not requeued: task {job}.50001 does not exist" in out.stderr
    assert "2 of 3 tasks not requeued" in out.stderr
    assert_one_error_line(hpc("task", "requeue", f"{job}.200"), "is Queued; only a Failed")
    client.post(f"/api/jobs/{job}/cancel")


def test_a_command_of_more_than_ten_thousand_tasks_is_sent_as_several_requests(host, monkeypatch):
    """A probe: ``hpc task cancel 1 12000-17999 20000-25999`` said "12,000 tasks: at most
    10,000 at once" (exit 2), while the README said the CLI sends several."""
    client, app = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", app.token)
    job = held_sweep(client)
    out = hpc("task", "cancel", str(job), "12000-17999", "20000-25999")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        f"tasks {job}.12000-17999 (sweep index 12000-17999): Canceled (6,000)",
        f"tasks {job}.20000-25999 (sweep index 20000-25999): Canceled (6,000)",
    ]
    assert client.get(f"/api/jobs/{job}").json()["taskCounts"]["Canceled"] == 12_000
    out = hpc("task", "requeue", str(job), "12000-17999", "20000-25999")
    assert out.exit_code == 0, out.output
    assert out.stdout.count(": Queued (6,000)") == 2
    assert client.get(f"/api/jobs/{job}").json()["taskCounts"] == {"Queued": 50_000}
    client.post(f"/api/jobs/{job}/cancel")


def test_one_range_of_more_than_ten_thousand_tasks_is_sent_as_several_requests(host, monkeypatch):
    """A probe: ``hpc task cancel J 1-10001`` was refused, "one request names at most
    10,000", though ``1-5000 6000-12000`` (11,001 tasks) was sent as several."""
    client, app = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", app.token)
    job = held_sweep(client, 30_000)
    sent = count_requests(monkeypatch)
    out = hpc("task", "cancel", str(job), "100-20000")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        f"tasks {job}.100-20000 (sweep index 100-20000): Canceled (19,901)"
    ]
    assert sent == [f"jobs/{job}/tasks/cancel"] * 2  # 10,000 and 9,901
    assert client.get(f"/api/jobs/{job}").json()["taskCounts"]["Canceled"] == 19_901
    out = hpc("task", "requeue", str(job), "100-20000")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        f"tasks {job}.100-20000 (sweep index 100-20000): Queued (19,901)"
    ]
    out = hpc("task", "cancel", f"{job}.1-10001")
    assert out.exit_code == 0, out.output
    assert out.stdout == f"tasks {job}.1-10001 (sweep index 1-10001): Canceled (10,001)\n"
    counts = client.get(f"/api/jobs/{job}").json()["taskCounts"]
    assert counts == {"Queued": 19_999, "Canceled": 10_001}
    client.post(f"/api/jobs/{job}/cancel")


def test_an_older_control_plane_gets_one_requeue_per_task_as_before(older):
    out = hpc("task", "requeue", "9", "5-6")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        "task 9.5 (sweep index 5): Queued (2 dependent tasks requeued with it)",
        "task 9.6 (sweep index 6): Queued",
        "job 13, canceled because job 9 did not finish, stays Canceled: requeue it too: "
        "hpc job requeue 13",
    ]
    assert older == [
        "POST /api/jobs/9/tasks/requeue",
        *(f"POST /api/jobs/9/tasks/{i}/requeue" for i in (5, 6)),
    ]
