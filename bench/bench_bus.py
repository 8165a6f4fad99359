"""Throughput of the embedded bus (SqliteBus) on a temporary file.

Plain script: ``python bench/bench_bus.py [--messages N]``. Prints sends/s one
message per transaction, sends/s in batches of 100, and receive+complete/s
(one message at a time, and 10 per receive), then the same for a session queue.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.adapters.sqlite_bus import SqliteBus  # noqa: E402
from shared.adapters.sqlite_busadmin import SqliteBusAdmin  # noqa: E402
from shared.ports.bus import OutgoingMessage, Receiver  # noqa: E402

BODY = b'{"kind":"run","jobId":1,"taskId":1,"attempt":1,"command":"echo hi"}'


def rate(label: str, count: int, action: Callable[[], None]) -> None:
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    print(f"{label:<44} {count / elapsed:>10,.0f} /s   ({count} in {elapsed:.2f} s)")


def drain(receiver: Receiver, batch: int) -> Callable[[], None]:
    def run() -> None:
        while messages := receiver.receive(max_messages=batch):
            for message in messages:
                receiver.complete(message)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    n = parser.parse_args().messages
    with tempfile.TemporaryDirectory() as tmp:
        bus = SqliteBus(Path(tmp) / "bus.db")
        SqliteBusAdmin(bus).declare_queue("q")
        SqliteBusAdmin(bus).declare_queue("s", requires_session=True)

        def send_single() -> None:
            for _ in range(n):
                bus.send("q", OutgoingMessage(BODY))

        def send_batches() -> None:
            for _ in range(n // 100):
                bus.send("q", [OutgoingMessage(BODY) for _ in range(100)])

        rate("send, 1 message per send", n, send_single)
        rate("receive + complete, 1 per receive", n, drain(bus.get_receiver("q"), 1))
        rate("send, batches of 100", n // 100 * 100, send_batches)
        rate("receive + complete, 10 per receive", n // 100 * 100, drain(bus.get_receiver("q"), 10))

        # Receive stays O(log n) with a deep backlog.
        bus.send("q", [OutgoingMessage(BODY) for _ in range(50_000)])
        rate("receive + complete, backlog of 50,000", 1_000, lambda: _take(bus, 1_000))

        def send_sessions() -> None:
            for i in range(n // 100):
                bus.send(
                    "s", [OutgoingMessage(BODY, session_id=f"node-{i % 10}") for _ in range(100)]
                )

        rate("send to 10 sessions, batches of 100", n // 100 * 100, send_sessions)

        def drain_sessions() -> None:
            for _ in range(10):
                with bus.get_session_receiver("s") as receiver:
                    drain(receiver, 10)()

        rate("session receive + complete, 10 per receive", n // 100 * 100, drain_sessions)
        bus.close()


def _take(bus: SqliteBus, count: int) -> None:
    receiver = bus.get_receiver("q")
    for _ in range(count):
        [message] = receiver.receive()
        receiver.complete(message)


if __name__ == "__main__":
    main()
