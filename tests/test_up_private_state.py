"""``hpc up`` keeps the cluster's own state its owner's alone: a probe found task output,
the store and the bus readable by every local user (0755/0644), which matters where tasks run
as their owners (``hpc task output`` is the job owner's and admins' through the API)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hpc.up import private_state
from shared.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_output_store_and_bus_are_the_owners_alone(tmp_path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HPC_HOME", str(home))
    settings = Settings()
    (settings.output_dir / "7").mkdir(parents=True)
    settings.output_dir.chmod(0o755)
    for name in ("store.db", "store.db-wal", "bus.db"):
        (home / name).write_text("x")
        (home / name).chmod(0o644)
    home.chmod(0o755)
    private_state(settings)
    assert mode(settings.output_dir) == 0o700
    assert {n: mode(home / n) for n in ("store.db", "store.db-wal", "bus.db")} == dict.fromkeys(
        ("store.db", "store.db-wal", "bus.db"), 0o600
    )
    assert mode(home) == 0o755  # HPC_HOME itself may be a folder the user shares: untouched
    (home / "store.db-wal").unlink()
    private_state(settings)  # again, and with files missing: no error
