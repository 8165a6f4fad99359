"""What several test modules need: waiting on a condition, and reading /proc."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (where function_app.py and host.json are)."""


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy (returned), or fail the test."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def child_env(home: Path) -> dict[str, str]:
    """Environment for a project process started by a test: its own HPC_HOME, this checkout."""
    return {**os.environ, "HPC_HOME": str(home), "PYTHONPATH": str(ROOT)}


def stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after "(comm)": state, ppid, pgrp, ...; None if gone.
    comm may hold spaces and parentheses, so the split is at the last ")"."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def process_alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its reaper)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in "ZX"


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group."""
    out = []
    for pid in pids():
        fields = stat_fields(pid)
        if fields is not None and int(fields[2]) == pgid and fields[0] not in "ZX":
            out.append(pid)
    return out


# --- the API's answers, for the bad-input tests ----------------------------------------


def error(response: Any) -> str:
    """The ``error`` an API answer carries (an httpx.Response)."""
    return str(response.json()["error"])


def submit(client: Any, **spec: Any) -> Any:
    """POST a one-task job for OnPremNodes (``spec`` adds or replaces fields)."""
    return client.post("/api/jobs", json={"command": "true", "nodeGroup": "OnPremNodes", **spec})


def new_job(client: Any, **spec: Any) -> int:
    """:func:`submit`, which must be accepted: the new job's id."""
    r = submit(client, **spec)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])
