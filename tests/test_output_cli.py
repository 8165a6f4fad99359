"""``hpc task output`` against a STAND-IN control plane that serves byte ranges.

As in tests/cli_fixtures.py, the HTTP server here is NOT the real control plane: a
tiny Starlette app that serves canned outputs the way the API contract says
(``stream``, ``attempt``, ``offset``, ``limit``; ``X-Output-Size``, ``X-Attempt``,
``X-Output-Truncated``; 404 for an attempt the task never had) and records every
request, so these tests pin what the CLI asks for and what it prints.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from hpc import client_output
from hpc.cli import app
from hpc.commands import tasks as task_commands
from tests.helpers import wait_until

TOKEN = "test-token"
MiB = 1 << 20


@dataclass
class Outputs:
    """What the stand-in serves: task -> attempt -> stream -> bytes, and what it was asked."""

    url: str = ""
    streams: dict[int, dict[int, dict[str, bytes]]] = field(default_factory=dict)
    default_attempts: dict[int, list[int]] = field(default_factory=dict)
    """task -> the attempts successive requests without ``attempt`` get (the last repeats)."""
    truncated: set[tuple[int, int, str]] = field(default_factory=set)
    requests: list[dict[str, str]] = field(default_factory=list)

    def ranges(self) -> list[tuple[int, int]]:
        """(offset, limit) of every request, as sent (absent: the API's defaults)."""
        return [(int(q.get("offset", 0)), int(q.get("limit", MiB))) for q in self.requests]


def stand_in_app(state: Outputs) -> Starlette:
    async def output(request: Request) -> Response:
        query = dict(request.query_params)
        state.requests.append(query)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": "invalid token"}, 401)
        task = int(request.path_params["task"])
        attempts = state.streams[task]
        if "attempt" in query:
            attempt = int(query["attempt"])
        else:
            defaults = state.default_attempts.get(task, [max(attempts)])
            attempt = defaults.pop(0) if len(defaults) > 1 else defaults[0]
        if attempt not in attempts:
            return JSONResponse(
                {"error": f"task 1.{task} has no attempt {attempt}: it had attempts 0 to 2"}, 404
            )
        stream = query.get("stream", "stdout")
        data = attempts[attempt].get(stream, b"")
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", MiB))
        if limit > 16 * MiB:
            return JSONResponse({"error": "limit must be at most 16777216 (16 MiB)"}, 400)
        headers = {
            "X-Output-Size": str(len(data)),
            "X-Attempt": str(attempt),
            "X-Output-Truncated": str((task, attempt, stream) in state.truncated).lower(),
        }
        body = data[offset : offset + limit]
        return Response(body, media_type="text/plain; charset=utf-8", headers=headers)

    return Starlette(routes=[Route("/api/jobs/{id:int}/tasks/{task:int}/output", output)])


@pytest.fixture(scope="module")
def server() -> Iterator[Outputs]:
    state = Outputs()
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
def api(server: Outputs, monkeypatch: pytest.MonkeyPatch) -> Outputs:
    server.streams.clear()
    server.default_attempts.clear()
    server.truncated.clear()
    server.requests.clear()
    monkeypatch.setenv("HPC_API_URL", server.url)
    monkeypatch.setenv("HPC_TOKEN", TOKEN)
    return server


def hpc(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def assert_one_error_line(result: Any, *fragments: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def numbered(count: int, width: int = 12) -> bytes:
    return b"".join(b"%0*d\n" % (width - 1, i) for i in range(count))


# --- the whole output -------------------------------------------------------------


def test_an_output_over_1_mib_prints_whole_by_paging_through_it(api: Outputs) -> None:
    data = numbered(900_000)  # 10.8 MB
    api.streams[1] = {0: {"stdout": data}}
    result = hpc("task", "output", "1", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == data
    ranges = api.ranges()
    assert len(ranges) > 1 and all(limit <= 16 * MiB for _, limit in ranges)
    assert ranges[0][0] == 0
    assert all(b[0] == a[0] + a[1] for a, b in zip(ranges, ranges[1:], strict=False))


def test_piped_output_is_byte_for_byte_even_when_not_utf_8(api: Outputs) -> None:
    data = b"caf\xc3\xa9 \xff\xfe raw bytes\r\n\x1b[31mred\x1b[0m\n"
    api.streams[1] = {0: {"stdout": data}}
    assert hpc("task", "output", "1", "1").stdout_bytes == data


def test_a_retried_task_shows_its_last_attempt_and_any_attempt_on_request(api: Outputs) -> None:
    api.streams[2] = {
        0: {"stdout": b"first try\n", "stderr": b"lost\n"},
        1: {"stdout": b"second try\n"},
    }
    assert hpc("task", "output", "1", "2").stdout == "second try\n"
    assert "attempt" not in api.requests[0]  # the API picks the task's result attempt
    assert hpc("task", "output", "1", "2", "--attempt", "0").stdout == "first try\n"
    assert api.requests[-1]["attempt"] == "0"
    result = hpc("task", "output", "1", "2", "--attempt", "0", "--stream", "stderr")
    assert result.stdout == "lost\n"
    assert (api.requests[-1]["stream"], api.requests[-1]["attempt"]) == ("stderr", "0")


def test_pages_all_come_from_the_attempt_the_first_page_came_from(
    api: Outputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_output, "OUTPUT_PAGE_BYTES", 4)
    api.streams[3] = {0: {"stdout": b"zero zero zero\n"}, 1: {"stdout": b"one one one one\n"}}
    api.default_attempts[3] = [0, 1]  # the task is retried after the first page was read
    assert hpc("task", "output", "1", "3").stdout == "zero zero zero\n"
    assert [q.get("attempt") for q in api.requests] == [None, "0", "0", "0"]


def test_on_a_terminal_escapes_split_between_pages_are_still_removed(
    api: Outputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_output, "OUTPUT_PAGE_BYTES", 3)
    monkeypatch.setattr(task_commands, "_stdout_is_terminal", lambda: True)
    api.streams[1] = {0: {"stdout": "\x1b[31mred\x1b[0m é → 日本\n\x1b]0;title\x07end".encode()}}
    result = hpc("task", "output", "1", "1")
    assert result.exit_code == 0 and result.stdout == "red é → 日本\nend"


# --- --tail -----------------------------------------------------------------------


def test_tail_prints_the_last_lines_reading_only_the_end(api: Outputs) -> None:
    data = numbered(900_000)  # 10.8 MB
    api.streams[1] = {0: {"stdout": data}}
    result = hpc("task", "output", "1", "1", "--tail", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == b"00000899997\n00000899998\n00000899999\n"
    fetched = sum(limit for _, limit in api.ranges())
    assert fetched <= 128 * 1024  # a size probe and one range from the end, not 10 MB
    assert all(offset > 0 or limit == 0 for offset, limit in api.ranges())


def test_tail_reads_further_back_while_the_lines_are_long(api: Outputs) -> None:
    long_lines = [b"a" * 100_000, b"b" * 300_000, b"c" * 200_000, b"d" * 10]
    data = b"\n".join(long_lines)  # no final newline
    api.streams[1] = {2: {"stderr": data}}
    result = hpc("task", "output", "1", "1", "--tail", "2", "--stream", "stderr")
    assert result.stdout_bytes == b"c" * 200_000 + b"\n" + b"d" * 10
    assert {q["attempt"] for q in api.requests[1:]} == {"2"}
    assert sum(limit for _, limit in api.ranges()) < len(data)


def test_tail_of_more_lines_than_there_are_prints_all_and_tail_0_nothing(api: Outputs) -> None:
    api.streams[1] = {0: {"stdout": b"one\ntwo\n"}, 1: {"stdout": b"x\n"}}
    assert hpc("task", "output", "1", "1", "--tail", "10", "--attempt", "0").stdout == "one\ntwo\n"
    assert hpc("task", "output", "1", "1", "--tail", "1", "--attempt", "0").stdout == "two\n"
    assert hpc("task", "output", "1", "1", "--tail", "0").stdout == ""


def test_tail_of_a_truncated_output_ends_with_the_truncation_line(api: Outputs) -> None:
    marker = b"[hybridhpc: output truncated at 1000 bytes (HPC_MAX_OUTPUT_BYTES)]\n"
    api.streams[1] = {0: {"stdout": b"x" * 1000 + b"\n" + marker}}
    api.truncated.add((1, 0, "stdout"))
    assert hpc("task", "output", "1", "1", "--tail", "1").stdout_bytes == marker


# --- errors -------------------------------------------------------------------------


def test_an_attempt_the_task_never_had_is_one_error_line(api: Outputs) -> None:
    api.streams[1] = {0: {"stdout": b"x\n"}}
    assert_one_error_line(hpc("task", "output", "1", "1", "--attempt", "7"), "has no attempt 7")
    assert_one_error_line(
        hpc("task", "output", "1", "1", "--attempt", "7", "--tail", "5"), "has no attempt 7"
    )


@pytest.mark.parametrize("option", ["--attempt", "--tail"])
def test_a_negative_attempt_or_tail_is_refused_locally_in_one_line(
    api: Outputs, option: str
) -> None:
    result = hpc("task", "output", "1", "1", option, "-1")
    assert_one_error_line(result, f"Invalid value for '{option}'")
    assert result.exit_code == 2 and api.requests == []
