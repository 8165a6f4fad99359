"""The ``hpc`` CLI against a STAND-IN control plane.

The HTTP server started here is NOT the real control plane: it is a tiny
Starlette app on a free port that serves canned JSON on the routes of the
HTTP API contract and records every request, so these tests pin what the
CLI sends and how it presents answers and errors. End-to-end tests against
the real control plane (``hpc up``, agents) live elsewhere.
"""

from __future__ import annotations

import json
import os
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
from hpc.localcluster import free_port
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
            return JSONResponse(
                {"tasks": [dict(task, jobId=5, id=i, name=f"big[{i}]") for i in ids]}
            )
        return JSONResponse({"tasks": [task]})

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


# --- submit -------------------------------------------------------------------


def test_submit_builds_the_spec_from_options_and_prints_only_the_id(api: StandIn) -> None:
    result = hpc(
        "job", "submit", "--name", "sweep", "--nodegroup", "OnPremNodes", "--cores", "2",
        "--priority", "abovenormal", "--sweep", "1-10:2", "--workdir", "/tmp",
        "--env", "A=1", "--env", "B=x=y", "--", "python", "-c", "print(1)",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "7\n"
    assert "hpc job watch 7" in result.stderr
    assert api.posted("/api/jobs") == [
        {
            "name": "sweep",
            "nodeGroups": ["OnPremNodes"],
            "priority": "AboveNormal",
            "tasks": [
                {
                    "command": "python -c 'print(1)'",
                    "cores": 2,
                    "sweep": "1-10:2",
                    "workDir": "/tmp",
                    "env": {"A": "1", "B": "x=y"},
                }
            ],
        }
    ]
    assert api.requests[-1]["auth"] == f"Bearer {TOKEN}"


def test_submit_takes_a_single_argument_command_as_is(api: StandIn) -> None:
    result = hpc("job", "submit", "--priority", "3500", "--", "echo $HPC_SWEEP_INDEX")
    assert result.exit_code == 0, result.output
    cwd = os.getcwd()  # Slurm's habit: the task runs where it was submitted from
    assert api.posted("/api/jobs") == [
        {
            "priority": 3500,
            "tasks": [{"command": "echo $HPC_SWEEP_INDEX", "cores": 1, "workDir": cwd}],
        }
    ]


def test_submit_file_and_stdin_send_the_spec_unchanged(api: StandIn, tmp_path: Path) -> None:
    spec = {"name": "f", "priority": "Highest", "tasks": [{"command": "true", "cores": 1}]}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    assert hpc("job", "submit", "--file", str(path)).exit_code == 0
    assert hpc("job", "submit", "--file", "-", input=json.dumps(spec)).exit_code == 0
    assert api.posted("/api/jobs") == [spec, spec]


def test_submit_json_prints_the_created_job(api: StandIn) -> None:
    result = hpc("job", "submit", "--json", "--", "true")
    assert json.loads(result.stdout)["id"] == 7


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--sweep", "1-"), "START-END[:STEP]"),
        (("--sweep", "9-1"), "below its start"),
        (("--env", "NOEQUALS"), "KEY=VALUE"),
        (("--env", "1X=2"), "not a valid variable name"),
        (("--priority", "urgent"), "AboveNormal"),
        (("--priority", "5000"), "0-4000"),
        (("--file", "job.json", "--cores", "2"), "--cores"),
        ((), "give the command after --"),
    ],
)
def test_bad_options_are_rejected_locally_in_one_line(
    api: StandIn, args: tuple[str, ...], fragment: str
) -> None:
    result = hpc("job", "submit", *args, *(["--", "echo"] if args and "--file" not in args else []))
    assert_one_error_line(result, fragment)
    assert result.exit_code == 2
    assert api.posted("/api/jobs") == []


# --- errors -------------------------------------------------------------------


def test_api_error_is_one_line_with_the_servers_message(api: StandIn) -> None:
    assert_one_error_line(hpc("job", "view", "404"), "job 404 not found")
    assert_one_error_line(
        hpc("job", "submit", "--name", "refuse-me", "--", "true"), "tasks.0.cores: too many"
    )


def test_wrong_token_reports_what_to_fix(api: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPC_TOKEN", "wrong")
    assert_one_error_line(hpc("job", "list"), "invalid token")


def test_token_is_read_from_the_file_hpc_up_writes(
    api: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HPC_TOKEN")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "admin.token").write_text(TOKEN + "\n")
    assert hpc("job", "list").exit_code == 0
    assert api.requests[-1]["auth"] == f"Bearer {TOKEN}"


def test_missing_token_says_to_run_hpc_up_or_set_hpc_token(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HPC_TOKEN")
    assert_one_error_line(hpc("job", "list"), "hpc up", "HPC_TOKEN")
    assert api.requests == []


def test_unreachable_control_plane_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("HPC_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HPC_TOKEN", TOKEN)
    result = hpc("node", "list")
    assert_one_error_line(
        result, f"cannot reach the control plane at http://127.0.0.1:{port}", "hpc up"
    )


def test_up_reports_a_port_in_use_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_HOME", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_error_line(
            hpc("up", "--port", str(port), "--nodes", "0"), f"port {port} is in use"
        )


# --- reading ------------------------------------------------------------------


def test_view_json_passes_the_api_json_through(api: StandIn) -> None:
    result = hpc("job", "view", "3", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == canned_job(
        3, taskCounts={"Queued": 2, "Running": 1, "Finished": 1}
    )


def test_tables_show_jobs_tasks_and_nodes(api: StandIn) -> None:
    jobs = hpc("job", "list", "--state", "running")
    assert jobs.exit_code == 0 and "job2" in jobs.stdout and "Running" in jobs.stdout
    assert api.requests[-1]["query"] == {"state": "Running", "limit": "100"}
    view = hpc("job", "view", "3")
    assert "Normal" in view.stdout and "Finished 1" in view.stdout
    tasks = hpc("task", "list", "1")
    assert tasks.exit_code == 0 and "onprem-1" in tasks.stdout and "Output" in tasks.stdout
    nodes = hpc("node", "list")
    assert nodes.exit_code == 0 and "OnPremNodes" in nodes.stdout and "Online" in nodes.stdout
    assert hpc("node", "list", "--json").stdout.count('"freeCores": 1') == 1


def test_task_list_shows_a_first_page_unless_asked_for_more(api: StandIn) -> None:
    first = hpc("task", "list", "5")
    assert first.exit_code == 0
    assert first.stdout.count("big[") == 100 and "big[101]" not in first.stdout
    assert "first 100 tasks shown; --limit N or --all for more" in first.stderr
    assert hpc("task", "list", "5", "--limit", "10").stdout.count("big[") == 10
    before = len(api.requests)
    everything = hpc("task", "list", "5", "--all")
    assert everything.stdout.count("big[") == 250 and "first" not in everything.stderr
    pages = [r["query"] for r in api.requests[before:] if r["path"] == "/api/jobs/5/tasks"]
    assert pages == [{"after": "0", "limit": "1000"}]


def test_job_hold_release_and_modify_call_their_routes(api: StandIn) -> None:
    held = hpc("job", "hold", "3", "--until", "2026-12-01T14:00")
    assert held.exit_code == 0 and "held (hpc job release 3)" in held.stdout
    assert api.requests[-1]["path"] == "/api/jobs/3/hold"
    assert api.requests[-1]["body"] == {"until": "2026-12-01T14:00"}
    assert hpc("job", "hold", "3", "--until", "soon").exit_code == 2
    assert hpc("job", "release", "3").exit_code == 0
    assert api.requests[-1]["path"] == "/api/jobs/3/release"
    modified = hpc("job", "modify", "3", "--priority", "highest")
    assert modified.exit_code == 0
    assert api.requests[-1]["method"] == "PATCH" and api.requests[-1]["body"] == {
        "priority": "Highest"
    }


def test_job_submit_array_and_depends_on(api: StandIn) -> None:
    result = hpc("job", "submit", "--array", "1-100%10", "--depends-on", "4", "--", "echo *")
    assert result.exit_code == 0, result.stderr
    [spec] = api.posted("/api/jobs")[-1:]
    assert spec["maxConcurrent"] == 10 and spec["dependsOn"] == [4]
    assert spec["tasks"] == [
        {"command": "echo *", "cores": 1, "sweep": "1-100", "workDir": os.getcwd()}
    ]


def test_task_view_says_why_a_queued_task_waits(api: StandIn) -> None:
    view = hpc("task", "view", "1", "2")
    assert view.exit_code == 0
    assert "Waiting" in view.stdout and "waiting for 8 free core(s)" in view.stdout
    assert "0:02:00" in view.stdout  # its runtime limit


def test_task_output_prints_the_requested_stream(api: StandIn) -> None:
    assert hpc("task", "output", "1", "1").stdout == "stdout of task\n"
    assert hpc("task", "output", "1", "1", "--stream", "stderr").stdout == "stderr of task\n"


def test_cancel_and_requeue_show_the_new_state(api: StandIn) -> None:
    assert "Canceling" in hpc("job", "cancel", "5").stdout
    assert "Queued" in hpc("job", "requeue", "5").stdout
    assert [r["path"] for r in api.requests] == ["/api/jobs/5/cancel", "/api/jobs/5/requeue"]


# --- watch --------------------------------------------------------------------


def test_watch_exits_0_when_the_job_finishes(api: StandIn) -> None:
    api.job_states[1] = ["Queued", "Running", "Finished"]
    result = hpc("job", "watch", "1")
    assert result.exit_code == 0, result.output
    assert "Finished" in result.stdout
    assert len([r for r in api.requests if r["path"] == "/api/jobs/1"]) == 3
    # Not a terminal: one plain progress line per change instead of a live bar.
    assert "job 1 Queued:" in result.output and "job 1 Running:" in result.output


def test_watch_exits_1_when_the_job_fails(api: StandIn) -> None:
    api.job_states[2] = ["Running", "Failed"]
    result = hpc("job", "watch", "2", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["state"] == "Failed"
    assert "Traceback" not in result.output


def test_watch_of_an_unknown_job_fails_in_one_line(api: StandIn) -> None:
    assert_one_error_line(hpc("job", "watch", "404"), "job 404 not found")


# --- agent --------------------------------------------------------------------


def test_agent_run_passes_its_options_to_run_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def run_agent(name: str, groups: list[str], cores: int) -> int:
        calls.append((name, groups, cores))
        return 3

    import agent

    monkeypatch.setattr(agent, "run_agent", run_agent)
    result = hpc("agent", "run", "--name", "n1", "--group", "A", "--group", "B", "--cores", "4")
    assert result.exit_code == 3
    assert calls == [("n1", ["A", "B"], 4)]
