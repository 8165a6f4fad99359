"""User- and task-written text in the CLI's output: shown literally, never as markup or escapes.

A job named ``x[/]`` once broke ``hpc job list`` (Rich markup), and a task
printing ``\\x1b]0;title\\x07`` retitled the user's terminal. The stand-in
control plane here (NOT the real one: a tiny Starlette app with canned
answers, as in cli_fixtures.py) answers with such hostile names, commands and
output; every table must print them literally and without ESC or BEL.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from rich.text import Text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from hpc import cli, text, watch
from hpc.commands import tasks as task_commands
from tests.cli_fixtures import TOKEN, canned_job, hpc
from tests.helpers import wait_until

ANSI = "\x1b[31mred\x1b[0m"
TITLE = "\x1b]0;title\x07"
OUTPUT = f"{ANSI} line\n{TITLE}done [/] [red]x\n"
ERROR = f"boom [/] {ANSI}\n{TITLE}second [bold]line"

JOBS = [
    canned_job(1, name="run[1]", owner="[red]mallory"),
    canned_job(2, "Failed", name="[bold]x[/]", error=ERROR),
    canned_job(3, name=f"x[/]{TITLE}", nodeGroups=["[g1]", f"grp{ANSI}"]),
    canned_job(4, f"Weird{ANSI}[/]", name="tab\there", submitTime="[/]not-a-time"),
]
TASKS = [
    {
        "jobId": 1, "id": 1, "name": "run[1][2]", "command": "echo [red]hi", "cores": 1,
        "state": "Finished", "node": "node[1]", "attempt": 0, "exitCode": 0,
        "output": OUTPUT, "error": None,
    },
    {
        "jobId": 1, "id": 2, "name": "[bold]t[/]", "command": "false", "cores": 1,
        "state": "Failed", "node": None, "attempt": 1, "exitCode": 1,
        "output": "", "error": f"[bold]failed[/] {ANSI}\x07",
    },
]  # fmt: skip
NODES = [
    {
        "name": "node[1]", "groups": ["[bold]G[/]", f"g{ANSI}"], "cores": 2, "state": "Draining",
        "provider": "[x]", "lastHeartbeat": "2025-01-01T10:00:00Z",
        "stateReason": f"[/] {ANSI} {TITLE}why", "runningTasks": 1, "freeCores": 1,
    },
]  # fmt: skip


def hostile_app() -> Starlette:
    async def jobs(request: Request) -> Response:
        return JSONResponse({"jobs": JOBS})

    async def job(request: Request) -> Response:
        job_id = int(request.path_params["id"])
        if job_id == 404:
            return JSONResponse({"error": f"job [/] [bold]404[/] {ANSI}{TITLE} not found"}, 404)
        return JSONResponse(JOBS[job_id - 1])

    async def tasks(request: Request) -> Response:
        return JSONResponse({"tasks": TASKS})

    async def output(request: Request) -> Response:
        return PlainTextResponse(OUTPUT)

    async def nodes(request: Request) -> Response:
        return JSONResponse({"nodes": NODES})

    return Starlette(
        routes=[
            Route("/api/jobs", jobs),
            Route("/api/jobs/{id:int}", job),
            Route("/api/jobs/{id:int}/tasks", tasks),
            Route("/api/jobs/{id:int}/tasks/{task:int}/output", output),
            Route("/api/nodes", nodes),
        ]
    )


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    uv = uvicorn.Server(uvicorn.Config(hostile_app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: uv.started, timeout=10, what="the stand-in control plane to start")
    yield url
    uv.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def hostile(hostile_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HPC_API_URL", hostile_server)
    monkeypatch.setenv("HPC_TOKEN", TOKEN)
    monkeypatch.setattr(watch, "POLL_INTERVAL_S", 0.01)
    return hostile_server


def assert_clean(result: Any, exit_code: int = 0) -> str:
    """The command exited as expected and printed no escape, BEL or other control character."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    for stream in (result.stdout, result.stderr):
        assert not any(ord(c) < 32 and c != "\n" or 0x7F <= ord(c) < 0xA0 for c in stream), stream
    return str(result.stdout)


# --- the tables -------------------------------------------------------------------


def test_job_list_prints_names_with_brackets_literally(hostile: str) -> None:
    out = assert_clean(hpc("job", "list"))
    for literal in ("run[1]", "[bold]x[/]", "x[/]", "[red]mallory", "Weird", "[/]not-a-time"):
        assert literal in out, out
    assert "tab here" in out  # a tab in a one-line cell becomes a space


def test_job_view_prints_name_groups_and_error_literally(hostile: str) -> None:
    out = assert_clean(hpc("job", "view", "2"))
    assert "[bold]x[/]" in out and "boom [/] red" in out and "second [bold]line" in out
    out = assert_clean(hpc("job", "view", "3"))
    assert "x[/]" in out and "[g1], grp" in out


def test_task_list_prints_names_and_output_literally(hostile: str) -> None:
    out = assert_clean(hpc("task", "list", "1"))
    for literal in ("run[1][2]", "node[1]", "done [/] [red]x", "[bold]t[/]", "[bold]failed[/]"):
        assert literal in out, out


def test_node_list_prints_names_groups_and_reason_literally(hostile: str) -> None:
    out = assert_clean(hpc("node", "list"))
    for literal in ("node[1]", "[bold]G[/], g", "[x]", "[/] red why"):
        assert literal in out, out


def test_watch_prints_state_and_error_literally(hostile: str) -> None:
    out = assert_clean(hpc("job", "watch", "2"), exit_code=1)
    assert "boom [/] red" in out


def test_api_error_with_markup_and_escapes_is_one_clean_line(hostile: str) -> None:
    result = hpc("job", "view", "404")
    assert_clean(result, exit_code=1)
    assert result.stderr.strip().splitlines() == ["error: job [/] [bold]404[/] red not found"]


def test_fail_line_is_one_literal_line_without_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    cli.fail_line(f"bad [bold]x[/]\n{ANSI}\t{TITLE}end")
    assert capsys.readouterr().err == "error: bad [bold]x[/] red end\n"


# --- hpc task output --------------------------------------------------------------


def test_task_output_piped_is_byte_faithful(hostile: str) -> None:
    assert hpc("task", "output", "1", "1").stdout == OUTPUT


def test_task_output_on_a_terminal_drops_escapes_but_keeps_lines(
    hostile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_commands, "_stdout_is_terminal", lambda: True)
    assert hpc("task", "output", "1", "1").stdout == "red line\ndone [/] [red]x\n"


# --- the helper -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "stripped", "line"),
    [
        ("run[1]", "run[1]", "run[1]"),
        ("[bold]x[/]", "[bold]x[/]", "[bold]x[/]"),
        (ANSI, "red", "red"),
        (f"{TITLE}x", "x", "x"),
        ("\x1b]8;;http://e\x1b\\link\x1b]8;;\x1b\\", "link", "link"),  # OSC 8 ended by ST
        ("\x1bP1$r\x1b\\ok", "ok", "ok"),  # DCS
        ("a\x1bcb\x1b(B", "ab", "ab"),  # reset, charset
        ("\x9b31mx\x9d0;t\x9c", "x", "x"),  # 8-bit CSI and OSC
        ("cut\x1b[3", "cut3", "cut3"),  # a truncated CSI leaves no ESC
        ("a\tb\nc\r\nd", "a\tb\nc\r\nd", "a b c d"),
        ("bar 10%\rbar 20%", "bar 10%bar 20%", "bar 10%bar 20%"),  # a lone CR cannot overwrite
        ("bell\x07 bs\x08 del\x7f nul\x00 c1\x85", "bell bs del nul c1", "bell bs del nul c1"),
        ("é ü → 日本", "é ü → 日本", "é ü → 日本"),
    ],
)
def test_helper_strips_controls_and_makes_one_line(raw: str, stripped: str, line: str) -> None:
    assert text.strip_controls(raw) == stripped
    assert text.for_terminal(raw) == stripped
    assert text.one_line(raw) == line
    assert text.cell(raw).plain == line
    assert Text.from_markup(text.safe(raw)).plain == line


def test_cell_is_never_parsed_as_markup() -> None:
    cell = text.cell("x[/]", style="red")
    assert isinstance(cell, Text) and cell.plain == "x[/]" and cell.style == "red"
    assert text.cell(None).plain == "None" and text.cell(3).plain == "3"
