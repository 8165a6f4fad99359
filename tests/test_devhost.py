"""The local Functions host drives a v2 app's HTTP, timer and Service Bus triggers as Azure does.

The function app under test is defined here; Service Bus triggers read the
real embedded bus (SqliteBus). Every wait is on a condition with a timeout.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.functions.timer import TimerRequest

from devhost import LocalHost
from devhost.config import HostConfig, parse_timespan
from devhost.ncrontab import parse_schedule
from devhost.routes import compile_template
from shared.adapters.sqlite_bus import SqliteBus
from shared.ports.bus import MAX_DELIVERY_COUNT_EXCEEDED, OutgoingMessage
from tests.helpers import ROOT, child_env, wait_until

WAIT_S = 5.0

os.environ["DEVHOST_TEST_TICK"] = "*/1 * * * * *"
os.environ["DEVHOST_TEST_BATCH_QUEUE"] = "batch"


class Recorder:
    """What functions saw, with a condition to wait on."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[list[Any]], bool], timeout: float = WAIT_S
    ) -> list[Any]:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.items), timeout), self.items
            return list(self.items)


# --- the function app under test ---------------------------------------------------

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
TICKS = Recorder()
WORK = Recorder()
BATCHES = Recorder()
SESSIONS = Recorder()
OVERLAPS: list[str] = []
ACTIVE_SESSIONS: set[str] = set()
ACTIVE_LOCK = threading.Lock()
RENDEZVOUS = threading.Barrier(2, timeout=WAIT_S)


@app.route(route="items/{id:int}", methods=["GET"])
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    doc = {"id": req.route_params["id"], "q": req.params.get("q"), "url": req.url}
    return func.HttpResponse(json.dumps(doc), mimetype="application/json")


@app.route(route="items", methods=["POST"])
def create_item(req: func.HttpRequest) -> func.HttpResponse:
    doc = {
        "size": len(req.get_body()),
        "text": req.get_body().decode(),
        "tag": req.headers.get("X-Tag"),
    }
    return func.HttpResponse(
        json.dumps(doc), status_code=201, mimetype="application/json", headers={"X-Item": "new"}
    )


@app.route(route="users/{name}", methods=["GET"])
def get_user(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"user {req.route_params['name']}")


@app.route(route="users/me", methods=["GET"])
def get_me(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("me")


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom")


@app.route(route="files/{*path}", methods=["GET"])
async def get_file(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(f"{req.route_params.get('path', '')}|{context.function_name}")


@app.service_bus_queue_output(
    arg_name="out", queue_name="forwarded", connection="ServiceBusConnection"
)
@app.route(route="forward", methods=["POST"])
def forward(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode())
    return func.HttpResponse(status_code=202)


@app.timer_trigger(schedule="%DEVHOST_TEST_TICK%", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    TICKS.add(timer)


@app.service_bus_queue_trigger(arg_name="msg", queue_name="work", connection="ServiceBusConnection")
def on_work(msg: func.ServiceBusMessage) -> None:
    WORK.add((time.perf_counter(), msg))
    if msg.get_body().startswith(b"fail"):
        raise ValueError(f"cannot handle {msg.message_id}")


@app.service_bus_queue_trigger(
    arg_name="batch",
    queue_name="%DEVHOST_TEST_BATCH_QUEUE%",
    connection="ServiceBusConnection",
    cardinality="many",
)
def on_batch(batch: list[func.ServiceBusMessage]) -> None:
    BATCHES.add(batch)


@app.service_bus_queue_trigger(
    arg_name="msg",
    queue_name="sessions",
    connection="ServiceBusConnection",
    is_sessions_enabled=True,
)
def on_session(msg: func.ServiceBusMessage) -> None:
    session = str(msg.session_id)
    with ACTIVE_LOCK:
        if session in ACTIVE_SESSIONS:
            OVERLAPS.append(session)
        ACTIVE_SESSIONS.add(session)
    try:
        if msg.get_body() == b"rendezvous":
            RENDEZVOUS.wait()  # passes only while another session is processed at the same time
        else:
            time.sleep(0.002)  # a little work, so overlapping calls would be caught
    finally:
        with ACTIVE_LOCK:
            ACTIVE_SESSIONS.discard(session)
    SESSIONS.add((session, msg.get_body().decode()))


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteBus]:
    bus = SqliteBus(tmp_path_factory.mktemp("devhost") / "bus.db")
    bus.declare_queue("work", max_delivery_count=2)
    bus.declare_queue("batch")
    bus.declare_queue("sessions", requires_session=True)
    bus.declare_queue("forwarded")
    bus.declare_queue("slow")
    yield bus
    bus.close()


@pytest.fixture(scope="module")
def host(bus: SqliteBus) -> Iterator[LocalHost]:
    with LocalHost(app, bus=bus, port=0, max_request_body_bytes=64 * 1024) as host:
        yield host


@pytest.fixture(scope="module")
def client(host: LocalHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.url, timeout=WAIT_S) as client:
        yield client


# --- discovery ---------------------------------------------------------------------


def test_every_function_is_loaded_and_described(host: LocalHost) -> None:
    assert host.errors == {}
    lines = host.describe()
    assert "http GET api/items/{id:int} -> get_item" in lines
    assert "timer */1 * * * * * -> tick" in lines
    assert "servicebus batch (many) -> on_batch" in lines
    assert "servicebus sessions (one, sessions) -> on_session" in lines


def test_functions_the_host_cannot_load_are_reported_and_the_others_run(bus: SqliteBus) -> None:
    broken = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @broken.timer_trigger(schedule="%DEVHOST_TEST_UNSET_SETTING%", arg_name="timer")
    def unset_schedule(timer: func.TimerRequest) -> None: ...

    @broken.timer_trigger(schedule="*/5 * * * *", arg_name="timer")
    def five_fields(timer: func.TimerRequest) -> None: ...

    @broken.route(route="x/{id:nosuch}")
    def bad_constraint(req: func.HttpRequest) -> func.HttpResponse: ...

    @broken.route(route="ok")
    def ok(req: func.HttpRequest) -> func.HttpResponse: ...

    host = LocalHost(broken, bus=bus, port=0)
    assert set(host.errors) == {"unset_schedule", "five_fields", "bad_constraint"}
    assert "DEVHOST_TEST_UNSET_SETTING" in host.errors["unset_schedule"]
    assert [f.name for f in host.functions] == ["ok"]


def test_the_same_app_can_be_hosted_twice_in_one_process(bus: SqliteBus, host: LocalHost) -> None:
    # FunctionApp.get_functions() refuses a second indexing by itself.
    assert {f.name for f in LocalHost(app, bus=bus, port=0).functions} == {
        f.name for f in host.functions
    }


# --- HTTP ------------------------------------------------------------------------------


def test_route_and_query_parameters_reach_the_function(client: httpx.Client) -> None:
    response = client.get("/api/items/42", params={"q": "hello world"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["id"] == "42" and doc["q"] == "hello world"
    assert doc["url"].startswith(str(client.base_url).rstrip("/") + "/api/items/42?")


def test_route_constraint_mismatch_is_not_found(client: httpx.Client) -> None:
    response = client.get("/api/items/abc")
    assert response.status_code == 404
    assert "error" in response.json()


def test_post_body_and_headers_reach_the_function(client: httpx.Client) -> None:
    response = client.post("/api/items", content=b"a new item", headers={"X-Tag": "blue"})
    assert response.status_code == 201
    assert response.json() == {"size": 10, "text": "a new item", "tag": "blue"}
    assert response.headers["x-item"] == "new"


def test_text_responses_carry_the_charset(client: httpx.Client) -> None:
    response = client.get("/api/users/ada")
    assert response.text == "user ada"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_a_literal_segment_beats_a_parameter_whatever_the_order(client: httpx.Client) -> None:
    assert client.get("/api/users/me").text == "me"
    assert client.get("/api/users/bob").text == "user bob"


def test_async_function_with_catch_all_and_context(client: httpx.Client) -> None:
    assert client.get("/api/files/a/b/c.txt").text == "a/b/c.txt|get_file"
    assert client.get("/api/files").text == "|get_file"


def test_unknown_route_is_404_json(client: httpx.Client) -> None:
    response = client.get("/api/nothing/here")
    assert response.status_code == 404
    assert response.json()["error"].startswith("no function serves GET /api/nothing/here")
    assert client.get("/items/42").status_code == 404  # the route prefix is required


def test_wrong_method_is_405_with_the_allowed_ones(client: httpx.Client) -> None:
    response = client.delete("/api/items/42")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert "error" in response.json()


def test_body_over_the_limit_is_413_declared_or_streamed(client: httpx.Client) -> None:
    too_big = b"x" * (64 * 1024 + 1)
    response = client.post("/api/items", content=too_big)
    assert response.status_code == 413
    assert "limit" in response.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is met while reading
        for _ in range(100):
            yield b"y" * 4096

    assert client.post("/api/items", content=chunks()).status_code == 413
    assert client.post("/api/items", content=b"x" * 64 * 1024).status_code == 201


def test_an_exception_is_500_json_and_its_traceback_is_logged(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get("/api/boom")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    failures = [r for r in caplog.records if r.exc_info and "kaboom" in str(r.exc_info[1])]
    assert failures and "boom" in failures[0].getMessage()


def test_service_bus_output_binding_sends_after_the_function_returns(
    client: httpx.Client, bus: SqliteBus
) -> None:
    assert client.post("/api/forward", content=b"pass it on").status_code == 202
    with bus.get_receiver("forwarded") as receiver:
        [message] = receiver.receive(max_wait_ms=int(WAIT_S * 1000))
        receiver.complete(message)
    assert message.body == b"pass it on"


def test_route_prefix_comes_from_host_json(tmp_path: Path, bus: SqliteBus) -> None:
    plain = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @plain.route(route="ping", methods=["GET"])
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    host_json = tmp_path / "host.json"
    host_json.write_text(
        json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": ""}}})
    )
    with LocalHost(plain, bus=bus, port=0, host_json=host_json) as host:
        assert httpx.get(f"{host.url}/ping").text == "pong"
        assert httpx.get(f"{host.url}/api/ping").status_code == 404


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("jobs/{id}", "/api/jobs/7", {"id": "7"}),
        ("jobs/{id}", "/API/Jobs/7/", {"id": "7"}),
        ("jobs/{id:int}", "/api/jobs/x", None),
        ("jobs/{id:int:min(1)}", "/api/jobs/0", None),
        ("jobs/{id?}", "/api/jobs", {}),
        ("jobs/{id=5}", "/api/jobs", {"id": "5"}),
        ("jobs/{id}/tasks/{taskId}", "/api/jobs/1/tasks/2", {"id": "1", "taskId": "2"}),
        ("x/{*rest}", "/api/x/a/b", {"rest": "a/b"}),
        ("/{*route}", "/api", {}),
        ("f/{name}.{ext}", "/api/f/a.b.c", {"name": "a.b", "ext": "c"}),
        (
            "g/{id:guid}",
            "/api/g/6f1c1a48-3c8e-4a53-9f3b-0a7c3e9d2b11",
            {"id": "6f1c1a48-3c8e-4a53-9f3b-0a7c3e9d2b11"},
        ),
    ],
)
def test_route_templates(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert compile_template(template, "api").match(path) == expected


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
    wait_until(lambda: bus.count("work") == 0, timeout=WAIT_S)


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
    wait_until(lambda: bus.count("batch") == 0, timeout=WAIT_S)


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
    assert bus.count("slow") == 0


def test_locks_are_renewed_while_a_function_outlasts_them(tmp_path: Path) -> None:
    bus = SqliteBus(tmp_path / "bus.db")
    bus.declare_queue("short", lock_duration_ms=200)
    bus.declare_queue("short-sessions", requires_session=True, lock_duration_ms=200)
    calls = Recorder()
    slow = func.FunctionApp()

    @slow.service_bus_queue_trigger(arg_name="msg", queue_name="short", connection="Sb")
    def plain(msg: func.ServiceBusMessage) -> None:
        time.sleep(0.6)  # three lock durations of work
        calls.add(("plain", msg.delivery_count))

    @slow.service_bus_queue_trigger(
        arg_name="msg", queue_name="short-sessions", connection="Sb", is_sessions_enabled=True
    )
    def in_session(msg: func.ServiceBusMessage) -> None:
        time.sleep(0.6)
        calls.add(("session", msg.delivery_count))

    with LocalHost(slow, bus=bus, port=0):
        bus.send("short", OutgoingMessage(body=b"long job"))
        bus.send("short-sessions", OutgoingMessage(body=b"long job", session_id="n1"))
        calls.wait_for(lambda items: len(items) == 2)
        wait_until(
            lambda: bus.count("short") == 0 and bus.count("short-sessions") == 0, timeout=WAIT_S
        )
    assert sorted(calls.items) == [("plain", 1), ("session", 1)]  # never redelivered
    bus.close()


# --- host.json and the command line ----------------------------------------------------


def test_host_json_service_bus_settings_in_both_shapes(tmp_path: Path) -> None:
    flat = HostConfig.from_dict(
        {
            "extensions": {
                "serviceBus": {
                    "maxConcurrentSessions": 3,
                    "sessionIdleTimeout": "00:00:00.250",
                    "maxMessageBatchSize": 50,
                    "maxAutoLockRenewalDuration": "00:01:00",
                }
            }
        }
    )
    assert (flat.max_concurrent_sessions, flat.session_idle_timeout_s) == (3, 0.25)
    assert (flat.max_message_batch_size, flat.max_auto_lock_renewal_s) == (50, 60.0)
    nested = HostConfig.from_dict(
        {
            "extensions": {
                "serviceBus": {
                    "sessionHandlerOptions": {"maxConcurrentSessions": 2},
                    "messageHandlerOptions": {"maxConcurrentCalls": 4},
                }
            }
        }
    )
    assert (nested.max_concurrent_sessions, nested.max_concurrent_calls) == (2, 4)
    assert nested.route_prefix == "api"
    project = HostConfig.load(ROOT / "host.json")
    assert project.route_prefix == "api" and project.max_concurrent_sessions == 8
    assert parse_timespan("1.02:03:04.5") == 93784.5


def test_python_m_devhost_serves_until_sigterm(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        "import os\n"
        "import azure.functions as func\n"
        "app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n"
        "@app.route(route='greeting', methods=['GET'])\n"
        "def greeting(req: func.HttpRequest) -> func.HttpResponse:\n"
        "    return func.HttpResponse(os.environ.get('DEVHOST_CLI_GREETING', 'unset'))\n"
    )
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"DEVHOST_CLI_GREETING": "hello from local.settings.json"}})
    )
    env = child_env(tmp_path / "home")
    env.pop("DEVHOST_CLI_GREETING", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stderr or []], daemon=True
    ).start()
    try:
        log = []
        while "listening on" not in (log[-1] if log else ""):
            log.append(lines.get(timeout=15))
        url = log[-1].rsplit(" ", 1)[-1].strip()
        assert any("http GET api/greeting -> greeting" in line for line in log)
        assert httpx.get(f"{url}/api/greeting").text == "hello from local.settings.json"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
