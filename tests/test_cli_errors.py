"""``hpc`` errors: bad options, API errors, tokens and an unreachable control plane, each in one line.

Against the stand-in control plane of tests/cli_fixtures.py (canned JSON, recorded requests).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from hpc.localcluster import free_port
from tests.cli_fixtures import TOKEN, StandIn, assert_one_error_line, hpc

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


def test_up_refuses_an_hpc_home_another_hpc_up_holds_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second control plane on the same store and bus would run timers beside the first
    and rewrite its logs (found by a probe: it even said it was up)."""
    from hpc.up import hold_home

    monkeypatch.setenv("HPC_HOME", str(tmp_path))
    first = hold_home(tmp_path, 7393)  # what the running `hpc up` holds until it ends
    try:
        port = free_port()
        result = hpc("up", "--port", str(port), "--nodes", "0")
        assert_one_error_line(result, f"a cluster is already up on HPC_HOME {tmp_path}")
        assert f"(pid {os.getpid()}, port 7393)" in " ".join(result.stderr.split())
        assert not (tmp_path / "logs").exists()  # nothing of the first was touched
    finally:
        first.close()
    assert hold_home(tmp_path, port).close() is None  # released: the next may start


@pytest.mark.parametrize("home", ["afile", "afile/sub"])
def test_up_says_an_hpc_home_that_is_not_a_directory_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: str
) -> None:
    (tmp_path / "afile").write_text("not a directory")
    monkeypatch.setenv("HPC_HOME", str(tmp_path / home))
    result = hpc("up", "--port", str(free_port()), "--nodes", "0")
    assert_one_error_line(result, f"HPC_HOME {tmp_path / home}: ")
    assert "give a directory this user can write" in result.stderr
