"""The local host drives timers on their NCRONTAB schedules and Service Bus triggers from the
embedded bus, settled and locked as Azure settles and locks them. Every wait is on a
condition with a timeout."""

from __future__ import annotations

import statistics
import threading
import time
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from devhost import LocalHost
from devhost.ncrontab import parse_schedule
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.ports.bus import MAX_DELIVERY_COUNT_EXCEEDED, OutgoingMessage
from tests.devhost_app import (
    BATCHES,
    OVERLAPS,
    RENDEZVOUS,
    SESSIONS,
    TICKS,
    WAIT_S,
    WORK,
    Recorder,
    open_bus,
    serve,
)
from tests.helpers import wait_until

# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteBus]:
    bus = open_bus(tmp_path_factory.mktemp("devhost") / "bus.db")
    yield bus
    bus.close()


@pytest.fixture(scope="module")
def host(bus: SqliteBus) -> Iterator[LocalHost]:
    with serve(bus) as host:
        yield host


# --- timers -----------------------------------------------------------------------------


def test_timer_fires_on_its_ncrontab_schedule(host: LocalHost) -> None:
    seen = len(TICKS.items)
    timers = TICKS.wait_for(lambda items: len(items) > seen, timeout=3.0)
    timer = timers[-1]
    assert isinstance(timer, TimerRequest)
    assert timer.past_due is False
    assert "Next" in timer.schedule_status


def test_run_on_startup_timer_runs_when_the_host_starts(bus: SqliteBus) -> None:
    ran = threading.Event()
    yearly = func.FunctionApp()

    @yearly.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
    def new_year(timer: func.TimerRequest) -> None:
        ran.set()

    with LocalHost(yearly, bus=bus, port=0):
        assert ran.wait(WAIT_S)


def test_ncrontab_has_seconds_first_and_six_fields() -> None:
    start = datetime(2024, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC)
    assert parse_schedule("*/5 * * * * *").next_after(start) == datetime(
        2024, 1, 1, 0, 0, 5, tzinfo=UTC
    )
    assert parse_schedule("0 30 9 * * Mon-Fri").next_after(start) == datetime(
        2024, 1, 1, 9, 30, tzinfo=UTC
    )
    assert parse_schedule("00:00:10").next_after(start) == datetime(
        2024, 1, 1, 0, 0, 11, 500_000, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="six fields"):
        parse_schedule("*/5 * * * *")


# --- Service Bus --------------------------------------------------------------------------


def _deliveries(message_id: str) -> Callable[[list[Any]], list[Any]]:
    return lambda items: [m for _, m in items if m.message_id == message_id]


def test_message_is_delivered_as_a_service_bus_message_and_completed(
    host: LocalHost, bus: SqliteBus
) -> None:
    bus.send(
        "work",
        OutgoingMessage(
            body=b"hello",
            message_id="m-hello",
            subject="greeting",
            content_type="text/plain",
            application_properties={"k": "v"},
        ),
    )
    got = _deliveries("m-hello")
    [message] = got(WORK.wait_for(lambda items: len(got(items)) == 1))
    assert type(message).__module__ == "azure.functions.servicebus"
    assert message.get_body() == b"hello"
    assert message.delivery_count == 1
    assert message.subject == message.label == "greeting"
    assert message.content_type == "text/plain"
    assert message.application_properties == message.user_properties == {"k": "v"}
    assert message.sequence_number and message.lock_token and message.enqueued_time_utc
    assert message.metadata["DeliveryCount"] == 1
    wait_until(lambda: SqliteBusAdmin(bus).count("work") == 0, timeout=WAIT_S)


def test_failing_function_gets_redelivery_then_dead_letter(host: LocalHost, bus: SqliteBus) -> None:
    bus.send("work", OutgoingMessage(body=b"fail please", message_id="m-fail"))
    with bus.get_receiver("work", sub_queue="deadletter") as dead_letters:
        [dead] = dead_letters.receive(max_wait_ms=int(WAIT_S * 1000))
        dead_letters.complete(dead)
    assert dead.message_id == "m-fail"
    assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED
    deliveries = _deliveries("m-fail")(WORK.items)
    assert [m.delivery_count for m in deliveries] == [1, 2]


def test_cardinality_many_gets_a_batch_as_a_list(host: LocalHost, bus: SqliteBus) -> None:
    bodies = [f"event {i}".encode() for i in range(5)]
    bus.send("batch", [OutgoingMessage(body=b) for b in bodies])
    batches = BATCHES.wait_for(lambda items: sum(len(b) for b in items) >= 5)
    assert [m.get_body() for m in batches[0]] == bodies  # one receive took the whole send
    assert all(isinstance(m, func.ServiceBusMessage) for m in batches[0])
    wait_until(lambda: SqliteBusAdmin(bus).count("batch") == 0, timeout=WAIT_S)


def test_session_messages_are_processed_in_order_one_at_a_time(
    host: LocalHost, bus: SqliteBus
) -> None:
    sent = {s: [f"{s}-{i}" for i in range(15)] for s in ("s1", "s2")}
    bus.send(
        "sessions",
        [
            OutgoingMessage(body=body.encode(), session_id=s)
            for pair in zip(sent["s1"], sent["s2"], strict=True)
            for s, body in zip(("s1", "s2"), pair, strict=True)
        ],
    )
    seen = SESSIONS.wait_for(lambda items: sum(1 for s, _ in items if s in sent) == 30)
    for session, bodies in sent.items():
        assert [b for s, b in seen if s == session] == bodies
    assert OVERLAPS == []


def test_different_sessions_are_processed_at_the_same_time(host: LocalHost, bus: SqliteBus) -> None:
    bus.send(
        "sessions",
        [
            OutgoingMessage(body=b"rendezvous", session_id="r1"),
            OutgoingMessage(body=b"rendezvous", session_id="r2"),
        ],
    )
    seen = SESSIONS.wait_for(lambda items: {"r1", "r2"} <= {s for s, _ in items})
    assert not RENDEZVOUS.broken
    assert [s for s, _ in seen if s in ("r1", "r2")].count("r1") == 1


def test_message_reaches_the_function_within_milliseconds(host: LocalHost, bus: SqliteBus) -> None:
    latencies = []
    for i in range(30):
        message_id = f"m-latency-{i}"
        got = _deliveries(message_id)
        sent_at = time.perf_counter()
        bus.send("work", OutgoingMessage(body=b"ping", message_id=message_id))
        items = WORK.wait_for(lambda items, got=got: bool(got(items)))
        called_at = next(t for t, m in items if m.message_id == message_id)
        latencies.append((called_at - sent_at) * 1000)
    median = statistics.median(latencies)
    print(f"bus send -> function call: median {median:.2f} ms, max {max(latencies):.2f} ms")
    assert median < 20


def test_stop_waits_for_the_running_invocation_and_settles_its_message(bus: SqliteBus) -> None:
    entered, release = threading.Event(), threading.Event()
    slow = func.FunctionApp()

    @slow.service_bus_queue_trigger(
        arg_name="msg", queue_name="slow", connection="ServiceBusConnection"
    )
    def on_slow(msg: func.ServiceBusMessage) -> None:
        entered.set()
        assert release.wait(WAIT_S)

    host = LocalHost(slow, bus=bus, port=0)
    host.start()
    bus.send("slow", OutgoingMessage(body=b"take your time"))
    assert entered.wait(WAIT_S)
    stopper = threading.Thread(target=host.stop)
    stopper.start()
    stopper.join(0.2)
    assert stopper.is_alive(), "stop() returned while an invocation was running"
    release.set()
    stopper.join(WAIT_S)
    assert not stopper.is_alive()
    assert SqliteBusAdmin(bus).count("slow") == 0


def test_locks_are_renewed_while_a_function_outlasts_them(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.db")
    admin = SqliteBusAdmin(bus)
    # 1 s locks, renewed long before they run out: a loaded machine (make test runs two
    # processes) may stall the renewer a few hundred ms, which 200 ms locks did not allow
    admin.declare_queue("short", lock_duration_ms=1000)
    admin.declare_queue("short-sessions", requires_session=True, lock_duration_ms=1000)
    calls = Recorder()
    slow = func.FunctionApp()

    @slow.service_bus_queue_trigger(arg_name="msg", queue_name="short", connection="Sb")
    def plain(msg: func.ServiceBusMessage) -> None:
        time.sleep(3.0)  # three lock durations of work
        calls.add(("plain", msg.delivery_count))

    @slow.service_bus_queue_trigger(
        arg_name="msg", queue_name="short-sessions", connection="Sb", is_sessions_enabled=True
    )
    def in_session(msg: func.ServiceBusMessage) -> None:
        time.sleep(3.0)
        calls.add(("session", msg.delivery_count))

    with LocalHost(slow, bus=bus, port=0):
        bus.send("short", OutgoingMessage(body=b"long job"))
        bus.send("short-sessions", OutgoingMessage(body=b"long job", session_id="n1"))
        calls.wait_for(lambda items: len(items) == 2, timeout=20)  # 3 s of work each
        wait_until(
            lambda: admin.count("short") == 0 and admin.count("short-sessions") == 0, timeout=20
        )
    assert sorted(calls.items) == [("plain", 1), ("session", 1)]  # never redelivered
    bus.close()


def test_batch_locks_are_not_renewed_as_in_azure(tmp_path: Path) -> None:
    """Azure renews no lock for a cardinality-many trigger: a batch that outlives its lock
    is delivered again. The local host does the same, so a scheduler pass or an events batch
    that would outlive its lock in Azure shows it here."""
    bus = SqliteBus(tmp_path / "bus.db")
    admin = SqliteBusAdmin(bus)
    admin.declare_queue("short-batch", lock_duration_ms=200)
    calls = Recorder()
    slow = func.FunctionApp()

    @slow.service_bus_queue_trigger(
        arg_name="batch", queue_name="short-batch", connection="Sb", cardinality="many"
    )
    def outlives_its_lock(batch: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
        counts = [m.delivery_count for m in batch]
        calls.add(counts)
        if counts == [1]:
            time.sleep(0.6)  # three lock durations

    with LocalHost(slow, bus=bus, port=0):
        bus.send("short-batch", OutgoingMessage(body=b"kick"))
        calls.wait_for(lambda items: [2] in items)
        wait_until(lambda: admin.count("short-batch") == 0, timeout=WAIT_S)
    assert calls.items[:2] == [[1], [2]]
    bus.close()


def test_a_batch_session_trigger_holds_one_session_at_a_time(tmp_path: Path) -> None:
    """maxConcurrentSessions applies to single-message triggers only, as in Azure."""
    bus = SqliteBus(tmp_path / "bus.db")
    SqliteBusAdmin(bus).declare_queue("kicks", requires_session=True)
    seen = Recorder()
    active: set[str] = set()
    overlaps: list[str] = []
    guard = threading.Lock()
    batched = func.FunctionApp()

    @batched.service_bus_queue_trigger(
        arg_name="kicks",
        queue_name="kicks",
        connection="Sb",
        is_sessions_enabled=True,
        cardinality="many",
    )
    def on_kicks(kicks: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
        session = str(kicks[0].session_id)
        with guard:
            overlaps.extend(active)
            active.add(session)
        time.sleep(0.05)  # long enough for another session's batch to overlap
        with guard:
            active.discard(session)
        seen.add(session)

    with LocalHost(batched, bus=bus, port=0):
        bus.send("kicks", [OutgoingMessage(body=b"kick", session_id=f"s{i}") for i in range(4)])
        seen.wait_for(lambda items: len(set(items)) == 4)
    assert overlaps == []
    bus.close()
