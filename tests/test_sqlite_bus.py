"""The embedded bus beyond the contract: what a long-lived process needs of it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.ports.bus import OutgoingMessage


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.db")
    SqliteBusAdmin(bus).declare_queue("q")
    bus.send("q", OutgoingMessage(body=b"warm-up"))
    before = _open_fds()

    def short_job(i: int) -> None:
        bus.send("q", OutgoingMessage(body=str(i).encode()))
        bus.get_receiver("q").receive(max_wait_ms=0)

    for i in range(200):
        thread = threading.Thread(target=short_job, args=(i,))
        thread.start()
        thread.join()
    # Each ended thread's connection (a file, its WAL and its shared memory) is closed by
    # the next thread that opens one: at most the last thread's are left.
    assert _open_fds() - before <= 4
    assert bus.open_connections() <= 2
    bus.close()


def test_admin_on_a_path_opens_and_closes_its_own_file(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.db")
    admin = SqliteBusAdmin(tmp_path / "bus.db")
    admin.declare_queue("q", requires_session=True)
    bus.send("q", OutgoingMessage(body=b"x", session_id="s"))
    assert admin.count("q") == 1
    admin.close()
    assert SqliteBusAdmin(bus).count("q") == 1  # the bus's own file is still open
    bus.close()
