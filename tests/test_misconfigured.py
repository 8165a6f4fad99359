"""A control plane whose settings cannot make it (a probe's HPC_COMPUTE=azure with none of
its Azure settings) says what to set, 503, on health and on every route, instead of
"internal error; see the control plane log"; ``hpc up`` stops on it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import function_app
from devhost import LocalHost
from functions import context
from hpc.localcluster import LocalCluster
from shared.settings import Settings
from shared.wiring import build_bus
from tests.helpers import ROOT


def test_every_route_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPC_HOME", str(tmp_path))
    monkeypatch.setenv("HPC_COMPUTE", "azure")
    context.reset()
    host = LocalHost(
        function_app.app, bus=build_bus(Settings()), port=0, host_json=ROOT / "host.json"
    )
    with host, httpx.Client(base_url=host.url, timeout=30) as client:
        health = client.get("/api/health")
        jobs = client.get("/api/jobs", headers={"Authorization": "Bearer x"})
    context.reset()
    assert health.status_code == 503 and health.json()["status"] == "misconfigured"
    assert "HPC_COMPUTE=azure needs: HPC_AZURE_SUBSCRIPTION_ID" in health.json()["error"]
    assert jobs.status_code == 503 and jobs.json()["error"] == health.json()["error"]


def test_hpc_up_stops_saying_what_to_set(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "hpc", nodes=1, cores=1, env={"HPC_COMPUTE": "azure"})
    with pytest.raises(RuntimeError, match="hpc up exited"):
        cluster.start(timeout_s=60)
    cluster.stop()
    log = " ".join(cluster.log().split())
    assert "HPC_COMPUTE=azure needs: HPC_AZURE_SUBSCRIPTION_ID" in log
    assert "internal error" not in log and "Traceback" not in log
