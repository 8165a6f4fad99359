"""Who this agent is on this machine: its state folder, the lock that keeps a second agent of
the same name off it, and the host id the control plane uses to tell a restart from a rival.

The lock is an ``flock`` on ``<state folder>/agent.lock``: the kernel releases it when the
process dies, even by ``kill -9``. So an agent that holds it knows no earlier process of its
name runs from this folder, and the control plane may let it take the node over at once
(same host id), while an agent from another machine or folder must wait until the holder
has been silent for the heartbeat timeout.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


class NameInUse(Exception):
    """Another agent of this node name runs from the same state folder."""


@dataclass
class Identity:
    node: str
    host_id: str
    state_dir: Path | None
    _lock_fd: int | None = None

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None


def claim(node: str, state_dir: Path | None, *, wait_s: float = 0.0) -> Identity:
    """Take the node's lock in ``state_dir`` (raises NameInUse) and read or create its host id.
    Without a state folder (tests, throw-away agents) the host id is random and nothing is locked.
    ``wait_s``: how long an earlier agent of the name may take to exit first (a local VM booted
    again while its last agent still stops: shared/adapters/local_vms.py)."""
    if state_dir is None:
        return Identity(node, uuid.uuid4().hex, None)
    state_dir.mkdir(parents=True, exist_ok=True)
    lock_path = state_dir / "agent.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise NameInUse(
            f"node {node!r} already has an agent running from {state_dir} (pid {holder}); "
            f"stop it first (kill {holder}), or start this one with another --name"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    id_path = state_dir / "host-id"
    try:
        host_id = id_path.read_text().strip()
    except FileNotFoundError:
        host_id = ""
    if len(host_id) < 8:
        host_id = uuid.uuid4().hex
        tmp = id_path.with_suffix(".tmp")
        tmp.write_text(host_id + "\n")
        tmp.replace(id_path)
    return Identity(node, host_id, state_dir, fd)
