"""Free memory in the views (consumable memory: shared.domain.memoryfit): ``GET /api/nodes``
gives each node's ``freeMemoryMb`` beside ``freeCores`` (its memory less what its active
tasks hold; null when its memory is unknown), ``hpc node list`` a Free mem column and ``hpc
node view`` a Free memory row, on the served function app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app_fixtures import served_app
from tests.cli_fixtures import hpc
from tests.helpers import wait_until
from tests.test_memory_edges import MemoryAgent

G = 1024


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with served_app(tmp_path / "home") as app, app.client() as client:
        big = MemoryAgent(app.cp, "big", cores=8, groups=("Big",), memory_mb=16 * G)
        assert big.register().accepted
        old = MemoryAgent(app.cp, "old", cores=2, groups=("Old",), memory_mb=None)
        assert old.register().accepted
        monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
        monkeypatch.setenv("HPC_TOKEN", app.token)
        yield client, app.cp


def nodes(client) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in client.get("/api/nodes").json()["nodes"]}


def test_nodes_report_the_memory_their_active_tasks_leave_free(cluster) -> None:
    client, cp = cluster
    assert nodes(client)["big"]["freeMemoryMb"] == 16 * G
    assert nodes(client)["old"]["freeMemoryMb"] is None  # its agent reports no memory
    spec = {"command": "sleep 1", "nodeGroup": "Big", "minMemoryMb": "6G"}
    job_id = client.post("/api/jobs", json=spec).json()["id"]
    plain = client.post("/api/jobs", json={"command": "x", "nodeGroup": "Big"}).json()["id"]
    wait_until(
        lambda: {cp.get_task(j, 1).state for j in (job_id, plain)} == {"Dispatching"},
        timeout=10,
        what="the scheduler to place both tasks",
    )
    big = nodes(client)["big"]
    assert (big["freeMemoryMb"], big["freeCores"]) == (10 * G, 6)  # the plain one holds none
    spec = {"command": "x", "nodeGroup": "Big", "minMemoryMb": "12G"}
    waiting = client.post("/api/jobs", json=spec).json()["id"]
    assert (
        client.get(f"/api/jobs/{waiting}")
        .json()["pendingReason"]
        .startswith("waiting for 12 GB free memory on one node in Big (big has 10 GB free")
    )

    listed = hpc("node", "list")
    assert listed.exit_code == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert "Free mem" in header
    [row] = [r for r in rows if r.startswith("big")]
    assert "16 GB" in row and "10 GB" in row
    [row] = [r for r in rows if r.startswith("old")]
    assert "GB" not in row
    view = hpc("node", "view", "big")
    assert view.exit_code == 0, view.stderr
    assert any(line.split()[:2] == ["Free", "memory"] and "10 GB" in line
               for line in view.stdout.splitlines())  # fmt: skip
    view = hpc("node", "view", "old")
    assert any(
        line.split()[:3] == ["Free", "memory", "unknown"] for line in view.stdout.splitlines()
    )
