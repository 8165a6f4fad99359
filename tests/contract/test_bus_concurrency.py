"""The Bus contract, concurrency: competing receivers in threads and processes.

Part of the Bus contract (tests/contract/bus_fixtures.py says how time and waiting work).
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

from shared.ports.bus import (
    Bus,
)
from shared.ports.busadmin import BusAdmin
from tests.contract.bus_fixtures import bodies, msg, new_queue, receive_all
from tests.contract.conftest import BusSpec

# --- concurrency -------------------------------------------------------------------


def test_concurrent_threads_never_receive_the_same_message(bus: Bus, admin: BusAdmin) -> None:
    queue = new_queue(admin)
    bus.send(queue, [msg(str(i)) for i in range(300)])
    received: list[list[str]] = [[] for _ in range(4)]

    def drain(index: int) -> None:
        received[index] = bodies(receive_all(bus.get_receiver(queue)))

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [body for part in received for body in part]
    assert sorted(everything, key=int) == [str(i) for i in range(300)]


def _drain_in_process(
    spec: BusSpec, queue: str, ready: Any, results: Any
) -> None:  # runs in a child process
    bus = spec()
    receiver = bus.get_receiver(queue)
    ready.wait()
    ids: list[str] = []
    while batch := receiver.receive(max_messages=5, max_wait_ms=300):
        for message in batch:
            receiver.complete(message)
            ids.append(message.message_id)
    results.put(ids)
    bus.close()


def test_two_processes_never_receive_the_same_message(
    bus: Bus, admin: BusAdmin, bus_spec: BusSpec
) -> None:
    queue = new_queue(admin)
    expected = [f"m{i}" for i in range(500)]
    bus.send(queue, [msg("x", message_id=i) for i in expected])
    context = multiprocessing.get_context("spawn")  # separate interpreters, like agents
    ready, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_drain_in_process, args=(bus_spec, queue, ready, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    parts = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0
    delivered = parts[0] + parts[1]
    assert sorted(delivered) == sorted(expected)  # each one exactly once
    assert all(parts), "both processes should have taken part"
    assert admin.count(queue) == 0
