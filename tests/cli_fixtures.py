"""The ``hpc`` CLI's test stand-in: a STAND-IN control plane, and the ``server`` and ``api``
fixtures (registered for every test by tests/conftest.py).

The HTTP server started here is NOT the real control plane: it is a tiny
Starlette app on a free port that serves canned JSON on the routes of the
HTTP API contract and records every request, so the tests/test_cli_*.py tests pin
what the CLI sends and how it presents answers and errors. End-to-end tests against
the real control plane (``hpc up``, agents) live elsewhere.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from hpc import watch
from hpc.cli import app
from tests.helpers import wait_until

TOKEN = "test-token"


def canned_job(job_id: int, state: str = "Queued", **extra: Any) -> dict[str, Any]:
    job = {
        "id": job_id,
        "name": f"job{job_id}",
        "owner": "admin",
        "state": state,
        "priority": 2000,
        "nodeGroups": [],
        "taskCount": 4,
        "taskCounts": {"Queued": 4},
        "submitTime": "2025-01-01T10:00:00Z",
        "startTime": None,
        "endTime": None,
        "error": None,
    }
    job.update(extra)
    return job


@dataclass
class StandIn:
    """What the stand-in control plane received, and the job states it will answer with."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    job_states: dict[int, list[str]] = field(default_factory=dict)
    """job id -> states returned by successive GETs (the last one repeats)."""

    def posted(self, path: str) -> list[Any]:
        return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"] == path]


def stand_in_app(state: StandIn) -> Starlette:
    async def record(request: Request) -> Response | None:
        body = await request.body()
        state.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(request.query_params),
                "auth": request.headers.get("authorization"),
                "body": json.loads(body) if body else None,
            }
        )
        if (
            request.url.path != "/api/health"
            and request.headers.get("authorization") != f"Bearer {TOKEN}"
        ):
            return JSONResponse({"error": "invalid token: use the token `hpc up` wrote"}, 401)
        return None

    async def health(request: Request) -> Response:
        return await record(request) or JSONResponse({"status": "ok"})

    async def jobs(request: Request) -> Response:
        if denied := await record(request):
            return denied
        if request.method == "GET":
            return JSONResponse({"jobs": [canned_job(2, "Running"), canned_job(1, "Finished")]})
        spec = state.requests[-1]["body"]
        if spec.get("name") == "refuse-me":
            return JSONResponse({"error": "invalid job spec: tasks.0.cores: too many"}, 422)
        return JSONResponse(canned_job(7, name=spec.get("name", "job7")), 201)

    async def job(request: Request) -> Response:
        if denied := await record(request):
            return denied
        job_id = int(request.path_params["id"])
        if request.method == "PATCH":
            return JSONResponse(canned_job(job_id, "Queued", priority=4000))
        if job_id == 404:
            return JSONResponse({"error": "job 404 not found"}, 404)
        states = state.job_states.get(job_id, ["Queued"])
        current = states.pop(0) if len(states) > 1 else states[0]
        counts = {"Finished": 4} if current == "Finished" else {"Finished": 3, "Failed": 1}
        if current in ("Queued", "Running"):
            counts = {"Queued": 2, "Running": 1, "Finished": 1}
        return JSONResponse(canned_job(job_id, current, taskCounts=counts))

    async def job_action(request: Request) -> Response:
        if denied := await record(request):
            return denied
        action = request.path_params["action"]
        new_state = {"cancel": "Canceling", "requeue": "Queued"}.get(action, "Queued")
        extra = {"pendingReason": "held (hpc job release 3)"} if action == "hold" else {}
        return JSONResponse(canned_job(int(request.path_params["id"]), new_state, **extra))

    async def tasks(request: Request) -> Response:
        if denied := await record(request):
            return denied
        task = {
            "jobId": 1, "id": 1, "name": "job1[1]", "command": "echo 1", "cores": 1,
            "sweepIndex": 1, "state": "Finished", "node": "onprem-1", "attempt": 0,
            "exitCode": 0, "output": "1\n", "error": None,
            "startTime": "2025-01-01T10:00:01Z", "endTime": "2025-01-01T10:00:02Z",
        }  # fmt: skip
        if int(request.path_params["id"]) == 5:  # a 250-task job, paged as the API pages it
            start = int(request.query_params.get("offset", 0))
            start += int(request.query_params.get("after", 0))
            limit = int(request.query_params.get("limit", 1000))
            ids = range(start + 1, min(250, start + limit) + 1)
            more = start + limit < 250  # the API's next: the last id of a page with more
            return JSONResponse(
                {
                    "tasks": [dict(task, jobId=5, id=i, name=f"big[{i}]") for i in ids],
                    "next": ids[-1] if more and ids else None,
                }
            )
        return JSONResponse({"tasks": [task], "next": None})

    async def one_task(request: Request) -> Response:
        if denied := await record(request):
            return denied
        task = {
            "jobId": 1, "id": int(request.path_params["task"]), "name": "job1[2]",
            "command": "echo 2", "cores": 8, "state": "Queued", "attempt": 0,
            "runtimeLimitS": 120, "submitTime": "2025-01-01T10:00:00Z",
            "pendingReason": "waiting for 8 free core(s) on one node in OnPremNodes",
        }  # fmt: skip
        return JSONResponse(task)

    async def output(request: Request) -> Response:
        if denied := await record(request):
            return denied
        return PlainTextResponse(f"{request.query_params.get('stream')} of task\n")

    async def nodes(request: Request) -> Response:
        if denied := await record(request):
            return denied
        node = {
            "name": "onprem-1", "groups": ["OnPremNodes"], "cores": 2, "state": "Online",
            "provider": "onprem", "lastHeartbeat": "2025-01-01T10:00:00Z", "stateReason": None,
            "runningTasks": 1, "freeCores": 1,
        }  # fmt: skip
        return JSONResponse({"nodes": [node]})

    return Starlette(
        routes=[
            Route("/api/health", health),
            Route("/api/jobs", jobs, methods=["GET", "POST"]),
            Route("/api/jobs/{id:int}", job, methods=["GET", "PATCH"]),
            Route("/api/jobs/{id:int}/{action}", job_action, methods=["POST"]),
            Route("/api/jobs/{id:int}/tasks", tasks),
            Route("/api/jobs/{id:int}/tasks/{task:int}", one_task),
            Route("/api/jobs/{id:int}/tasks/{task:int}/output", output),
            Route("/api/nodes", nodes),
        ]
    )


@pytest.fixture(scope="module")
def server() -> Iterator[StandIn]:
    state = StandIn()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    state.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(stand_in_app(state), log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: uv.started, timeout=10, what="the stand-in control plane to start")
    yield state
    uv.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def api(server: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StandIn:
    """The stand-in, with a clean request log and the CLI pointed at it."""
    server.requests.clear()
    server.job_states.clear()
    monkeypatch.setenv("HPC_API_URL", server.url)
    monkeypatch.setenv("HPC_TOKEN", TOKEN)
    monkeypatch.setenv("HPC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(watch, "POLL_INTERVAL_S", 0.01)
    return server


def hpc(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input)


def assert_one_error_line(result: Any, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
