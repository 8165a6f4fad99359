"""``POST /api/jobs/{id}/tasks/cancel`` and ``hpc task cancel J RANGES...`` on the real function
app: one request for a range (a probe's ``hpc task cancel 108 100-1100`` made 1,001, 49 s),
the CLI's exit codes as before and a line per run of tasks, bad input a 4xx that writes
nothing, and an older control plane (no such route) served one request per task."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpc.client import ApiClient
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import TOKEN, assert_one_error_line, hpc
from tests.helpers import wait_until


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    with served_app(tmp_path_factory.mktemp("rangecancel")) as app, app.client() as client:
        assert AgentDouble(app.cp, "onprem-1", cores=1).register().accepted
        yield client, app


def count_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the CLI's POSTs go to, as the test reads them after the command: "one
    request" asserted by count, not by time."""
    sent: list[str] = []
    real = ApiClient._send

    def counted(self, method, path, **kwargs):  # type: ignore[no-untyped-def]
        if method == "POST":
            sent.append(path)
        return real(self, method, path, **kwargs)

    monkeypatch.setattr(ApiClient, "_send", counted)
    return sent


def held_sweep(client, n: int = 50_000) -> int:
    spec = {"tasks": [{"command": "echo *", "sweep": f"1-{n}"}], "held": True}
    return client.post("/api/jobs", json=spec).json()["id"]


def test_the_route_cancels_a_range_in_one_request_and_says_each_task(host):
    client, app = host
    job = held_sweep(client)
    answer = client.post(f"/api/jobs/{job}/tasks/cancel", json={"tasks": ["100-1100", 5, "5"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["jobId"] == job and body["refused"] == []
    assert len(body["tasks"]) == 1002
    assert body["tasks"][:2] == [
        {"id": 5, "state": "Canceled", "sweepIndex": 5},
        {"id": 100, "state": "Canceled", "sweepIndex": 100},
    ]
    # the run cut off as a range, task 5 alone created Canceled: 4 documents, not 1,002
    assert len(app.cp.store.get_ranges(job)) == 3 and len(app.cp.store.list_tasks(job)) == 1
    again = client.post(f"/api/jobs/{job}/tasks/cancel", json={"tasks": ["1100-1101"]}).json()
    assert again["tasks"] == [{"id": 1101, "state": "Canceled", "sweepIndex": 1101}]
    assert again["refused"] == [
        {
            "id": 1100,
            "status": 409,
            "error": f"task {job}.1100 is already Canceled; nothing to cancel",
        }
    ]
    counts = client.get(f"/api/jobs/{job}").json()["taskCounts"]
    assert counts == {"Queued": 50_000 - 1003, "Canceled": 1003}
    client.post(f"/api/jobs/{job}/cancel")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"not json", 400, "not valid JSON"),
        (b"[]", 422, '{"tasks": [12, "20-30", ...]}'),
        (b'{"tasks": []}', 422, "give a list of task ids"),
        (b'{"tasks": ["9-3"]}', 422, "a range goes from its first task to its last"),
        (b'{"tasks": ["x"]}', 422, "is neither a task id (12) nor a range"),
        (b'{"tasks": [true]}', 422, "tasks: true is neither"),  # JSON's word (was Python's True)
        (b'{"tasks": [0]}', 422, "task ids are whole numbers from 1"),
        (b'{"tasks": [' + b",".join(b"%d" % i for i in range(1, 2003, 2)) + b"]}", 422,
         "one request takes at most 1,000"),
        (b'{"tasks": ["1-20000"]}', 422, "one request names at most 10,000"),
        (b'{"tasks": ["49990-50010"]}', 404, "has tasks 1 to 50,000; it has no task 50001-50010"),
    ],
)  # fmt: skip
def test_bad_input_is_a_4xx_saying_what_to_fix_and_cancels_nothing(host, body, status, says):
    client, _app = host
    job = held_sweep(client)
    answer = client.post(f"/api/jobs/{job}/tasks/cancel", content=body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    assert client.get(f"/api/jobs/{job}").json()["taskCounts"] == {"Queued": 50_000}
    client.post(f"/api/jobs/{job}/cancel")


def test_only_the_jobs_owner_or_an_admin_cancels_its_tasks(host):
    client, _app = host
    tokens = {}
    for name in ("rita", "sam"):
        added = client.post("/api/users", json={"name": name}).json()
        tokens[name] = {"Authorization": f"Bearer {added['token']}"}
    spec = {"tasks": [{"command": "echo *", "sweep": "1-10"}], "held": True}
    job = client.post("/api/jobs", json=spec, headers=tokens["rita"]).json()["id"]
    path = f"/api/jobs/{job}/tasks/cancel"
    refused = client.post(path, json={"tasks": ["1-3"]}, headers=tokens["sam"])
    assert refused.status_code == 403 and "belongs to rita" in refused.json()["error"]
    mine = client.post(path, json={"tasks": ["1-3"]}, headers=tokens["rita"])
    assert mine.status_code == 200 and len(mine.json()["tasks"]) == 3
    assert client.get(f"/api/jobs/{job}/tasks/2").json()["error"] == "canceled by rita"
    assert client.post(path, json={"tasks": [4]}).status_code == 200  # an admin


def test_the_cli_cancels_a_thousand_tasks_at_once_saying_them_as_one_run(host, monkeypatch):
    client, _app = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", _app.token)
    job = held_sweep(client)
    sent = count_requests(monkeypatch)
    out = hpc("task", "cancel", str(job), "100-1100")
    assert out.exit_code == 0, out.output
    assert out.stdout.splitlines() == [
        f"tasks {job}.100-1100 (sweep index 100-1100): Canceled (1,001)"
    ]  # one line (1,001 before; scancel says none)
    assert sent == [f"jobs/{job}/tasks/cancel"]  # one request (1,001 took 49 s before)
    out = hpc("task", "cancel", str(job), "99-100", "50001")  # a refusal each, the rest go on
    assert out.exit_code == 1
    assert out.stdout.splitlines() == [f"task {job}.99 (sweep index 99): Canceled"]
    assert f"task {job}.100: not canceled: task {job}.100 is already Canceled" in out.stderr
    assert (
        f"task {job}.50001: not canceled: task {job}.50001 does not exist; job {job} has "
        "tasks 1 to 50000" in out.stderr
    )
    assert "2 of 3 tasks not canceled" in out.stderr
    assert_one_error_line(hpc("task", "cancel", f"{job}.100"), "is already Canceled")
    out = hpc("task", "requeue", f"{job}.500")  # canceled with a range, requeued alone
    assert out.exit_code == 0 and f"task {job}.500 (sweep index 500): Queued" in out.stdout
    client.post(f"/api/jobs/{job}/cancel")


# --- a control plane older than the route ----------------------------------------------------


@pytest.fixture
def older(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A control plane without ``POST /api/jobs/{id}/tasks/cancel`` or ``.../requeue`` (the local host answers
    405: the path is ``jobs/{id}/tasks/{taskId}``'s, a GET route); the paths it was sent."""
    seen: list[str] = []

    async def one_task(request: Request) -> Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.path_params["task"] in ("cancel", "requeue"):
            return Response(status_code=405, headers={"Allow": "GET, HEAD, OPTIONS"})
        return JSONResponse({"error": "no such route"}, 404)

    async def cancel_one(request: Request) -> Response:
        seen.append(f"{request.method} {request.url.path}")
        task = int(request.path_params["task"])
        if task == 3:
            return JSONResponse({"error": "task 9.3 is already Finished; nothing to cancel"}, 409)
        return JSONResponse({"id": task, "state": "Canceled", "sweepIndex": task})

    async def requeue_one(request: Request) -> Response:
        seen.append(f"{request.method} {request.url.path}")
        task = int(request.path_params["task"])
        back = 2 if task == 5 else 0
        return JSONResponse(
            {"id": task, "state": "Queued", "sweepIndex": task, "requeuedDependents": back,
             "dependentJobsCanceled": [13]}
        )  # fmt: skip

    app = Starlette(
        routes=[
            Route("/api/jobs/{id:int}/tasks/{task}", one_task, methods=["GET", "POST"]),
            Route("/api/jobs/{id:int}/tasks/{task:int}/cancel", cancel_one, methods=["POST"]),
            Route("/api/jobs/{id:int}/tasks/{task:int}/requeue", requeue_one, methods=["POST"]),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, what="the older control plane to start")
    monkeypatch.setenv("HPC_API_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("HPC_TOKEN", TOKEN)
    yield seen
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


def test_an_older_control_plane_gets_one_request_per_task_as_before(older):
    out = hpc("task", "cancel", "9", "2-4")
    assert out.exit_code == 1
    assert out.stdout.splitlines() == [
        "task 9.2 (sweep index 2): Canceled",
        "task 9.4 (sweep index 4): Canceled",
    ]
    assert "task 9.3: not canceled: task 9.3 is already Finished" in out.stderr
    assert older == [
        "POST /api/jobs/9/tasks/cancel",
        *(f"POST /api/jobs/9/tasks/{i}/cancel" for i in (2, 3, 4)),
    ]
