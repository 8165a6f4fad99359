"""Keep every test away from the user's real ~/.hybridhpc and a real HPC_TOKEN."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HPC_HOME", str(tmp_path_factory.mktemp("hpc-home")))
    monkeypatch.delenv("HPC_TOKEN", raising=False)
    monkeypatch.delenv("HPC_API_URL", raising=False)
