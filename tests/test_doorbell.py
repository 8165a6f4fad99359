"""The bus doorbell: one process's change wakes another's waiting receivers."""

from __future__ import annotations

import threading

import pytest

from shared.adapters import doorbell
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin

pytestmark = pytest.mark.skipif(
    not doorbell.SUPPORTED, reason="abstract Unix sockets are Linux-only"
)


def test_a_send_on_one_bus_object_rings_another_objects_doorbell(tmp_path):
    # Two objects on one file stand for two processes (each has its own doorbell).
    waiter, sender = SqliteBus(tmp_path / "bus.db"), SqliteBus(tmp_path / "bus.db")
    rung = threading.Event()
    waiter._doorbell._on_ring = rung.set
    waiter._doorbell.listen()
    SqliteBusAdmin(sender).declare_queue("q")
    sender._doorbell._others_read = float("-inf")  # read the doorbell list afresh
    sender._notify()
    assert rung.wait(5), "the waiting side's doorbell was not rung"
    waiter.close()
    sender.close()


def test_a_doorbell_nobody_listens_on_is_forgotten_by_those_who_ring_it(tmp_path):
    sender = SqliteBus(tmp_path / "bus.db")
    # A row left behind by a process that died without cleaning up.
    sender._write_one("INSERT INTO doorbells VALUES (?, ?)", ("hpcbus-dead-000000000000", 1))
    sender._notify()
    rows = sender._conn().execute("SELECT address FROM doorbells").fetchall()
    assert ("hpcbus-dead-000000000000",) not in rows
    sender.close()
