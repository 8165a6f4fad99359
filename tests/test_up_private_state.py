"""``hpc up`` keeps the cluster's own state its owner's alone: a probe found task output,
the store and the bus readable by every local user (0755/0644), which matters where tasks run
as their owners (``hpc task output`` is the job owner's and admins' through the API)."""

from __future__ import annotations

import os
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
    (home / "logs").mkdir(mode=0o755)
    (home / "logs" / "host.log").write_text("POST /api/jobs alice ...")
    (home / "logs" / "host.log").chmod(0o644)
    home.chmod(0o755)
    private_state(settings)
    assert mode(settings.output_dir) == 0o700
    assert (mode(home / "logs"), mode(home / "logs" / "host.log")) == (0o700, 0o600)
    assert mode(home / "agents") == 0o700  # end records and locks: made before any agent
    assert {n: mode(home / n) for n in ("store.db", "store.db-wal", "bus.db")} == dict.fromkeys(
        ("store.db", "store.db-wal", "bus.db"), 0o600
    )
    assert mode(home) == 0o755  # HPC_HOME itself may be a folder the user shares: untouched
    (home / "store.db-wal").unlink()
    private_state(settings)  # again, and with files missing: no error


def test_store_and_bus_files_are_made_private_whenever_they_are_made(tmp_path):
    """The probe's leftover: a bus.db made after `hpc up` started (by the control plane's
    first send) kept the default mode until the next `hpc up`. Both adapters now make their
    file 0600 (SQLite gives its -wal and -shm the same), however the umask is set."""
    from shared.wiring import build_bus, build_store

    old = os.umask(0o022)
    try:
        store = build_store(Settings(home=str(tmp_path)))
        bus = build_bus(Settings(home=str(tmp_path)))
        store.list_nodes()
        bus.send("scheduler", [])  # a send opens the file as the control plane's first does
    finally:
        os.umask(old)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert "store.db" in made and "bus.db" in made
    assert {n: mode(tmp_path / n) for n in made} == dict.fromkeys(made, 0o600)
    from shared.adapters.sqlite_store import SqliteStore

    (tmp_path / "kept.db").write_text("")
    (tmp_path / "kept.db").chmod(0o640)
    SqliteStore(tmp_path / "kept.db")
    assert mode(tmp_path / "kept.db") == 0o640  # an existing file keeps the mode it was given
