"""Run ``hpc up`` as a child process for tests and benchmarks, and talk to it.

The cluster is the real thing (the local Functions host and agent
processes); this only starts it with its own HPC_HOME and port, waits until
its nodes are Online (or held Draining or Offline by an admin, their agents
heard from), and stops it with SIGTERM as a user's Ctrl-C would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from hpc.up_processes import node_started
from shared.domain.states import JOB_TERMINAL, NodeState
from shared.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hpc_command() -> list[str]:
    """The installed ``hpc`` script beside this interpreter (as a user runs it)."""
    script = Path(sys.executable).parent / "hpc"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from hpc.cli import main; main()"]


class LocalCluster:
    def __init__(
        self,
        home: Path,
        *,
        nodes: int = 2,
        cores: int = 2,
        port: int | None = None,
        env: dict[str, str] | None = None,
        azure_nodes: int = 0,
    ) -> None:
        self.azure_nodes = azure_nodes
        self.home, self.nodes, self.cores = Path(home), nodes, cores
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HPC_HOME": str(self.home),
            "HPC_API_URL": self.url,
            **(env or {}),
        }
        self.env.pop("HPC_TOKEN", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self._http: httpx.Client | None = None
        self._log: IO[bytes] | None = None
        self._started_at = datetime.now(UTC)

    # -- lifecycle ------------------------------------------------------------

    def start(self, timeout_s: float = 60) -> LocalCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.home / "up.log", "wb")  # noqa: SIM115 - lives as long as the child
        self._started_at = datetime.now(UTC)
        self.proc = subprocess.Popen(
            [
                *hpc_command(),
                "up",
                "--port",
                str(self.port),
                "--nodes",
                str(self.nodes),
                "--cores",
                str(self.cores),
                "--azure-nodes",
                str(self.azure_nodes),
            ],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait_for(self._ready, timeout_s=timeout_s, what=f"{self.nodes} nodes Online")
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ fails: leave nothing behind
            raise
        return self

    def _ready(self) -> bool:
        nodes = self.get("/api/nodes")["nodes"]
        online = sum(
            n["state"] == NodeState.ONLINE
            or ("AzureNodes" not in n["groups"] and node_started(n, self._started_at))
            for n in nodes
        )
        azure = sum("AzureNodes" in n["groups"] for n in nodes)
        return online >= self.nodes and azure >= self.azure_nodes

    def stop(self, timeout_s: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._http:
            self._http.close()
        if self._log:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        path = self.home / "up.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- API ----------------------------------------------------------------------

    @property
    def token(self) -> str:
        """The admin token ``hpc up`` wrote; FileNotFoundError until it has (never empty:
        a client built with an empty one kept failing, a flake under load)."""
        token = Settings(home=self.home).token_path.read_text().strip()
        if not token:
            raise FileNotFoundError("the token file is not written yet")
        return token

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
            )
        return self._http

    def get(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any = None) -> Any:
        r = self.http.post(path, json=body)
        r.raise_for_status()
        return r.json()

    def submit(self, spec: dict[str, Any]) -> int:
        return int(self.post("/api/jobs", spec)["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/jobs/{job_id}"))

    def tasks(self, job_id: int) -> list[dict[str, Any]]:
        """Every task of the job, read in pages by task id."""
        out: list[dict[str, Any]] = []
        page_size = 10_000  # the API's most tasks a page
        while True:
            after = out[-1]["id"] if out else 0
            page = self.get(f"/api/jobs/{job_id}/tasks", limit=page_size, after=after)["tasks"]
            out += page
            if len(page) < page_size:
                return out

    def wait_job(self, job_id: int, *, timeout_s: float = 60) -> dict[str, Any]:
        """Wait until the job ends; returns it."""
        self.wait_for(
            lambda: self.job(job_id)["state"] in JOB_TERMINAL,
            timeout_s=timeout_s,
            what=f"job {job_id} to end",
        )
        return self.job(job_id)

    def wait_for(
        self, predicate: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = 0.05
    ) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"hpc up exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            try:
                if predicate():
                    return
            except (httpx.HTTPError, OSError) as e:  # not up yet (no token file, no answer)
                last_error = e
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"timed out waiting for {what} (last error: {last_error!r}):\n"
                    f"{self.log()[-3000:]}"
                )
            time.sleep(poll_s)
