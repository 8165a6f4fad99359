"""The real function_app.py served by the local host in this process, over a fresh HPC_HOME,
for the test files that drive the HTTP API (tests/test_http_api.py, test_dashboard.py, ...).

Not fixtures themselves: each module wraps :func:`served_app` in a module-scoped fixture of
its own and adds what it needs (nodes, tokens, jobs) through :attr:`ServedApp.cp`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import function_app
from devhost import LocalHost
from functions import context
from shared.auth import ensure_admin_token
from shared.settings import Settings
from shared.usecases.control_plane import ControlPlane
from shared.wiring import build_bus
from tests.helpers import ROOT


@dataclass(frozen=True)
class ServedApp:
    url: str
    cp: ControlPlane
    """The control plane the served functions use (functions.context's)."""
    token: str
    """The admin token."""

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        """A client of the API with a token (the admin's by default)."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)  # type: ignore[arg-type]


@contextmanager
def served_app(home: Path, env: Mapping[str, str] | None = None) -> Iterator[ServedApp]:
    """Serve function_app.py with HPC_HOME = ``home`` (and ``env`` set) until the block ends."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HPC_HOME", str(home))
    for name, value in (env or {}).items():
        mp.setenv(name, value)
    context.reset()
    cp = context.control()
    token, _ = ensure_admin_token(cp.settings, cp.store)
    bus = build_bus(Settings())
    host = LocalHost(function_app.app, bus=bus, port=0, host_json=ROOT / "host.json")
    host.start()
    try:
        yield ServedApp(host.url, cp, token)
    finally:
        host.stop()
        bus.close()  # (its connections, as context.reset closes the app's)
        context.reset()
        mp.undo()
