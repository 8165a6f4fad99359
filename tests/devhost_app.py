"""The function app the local host's tests serve, with what its functions saw.

Not a test module: tests/test_devhost_*.py import it and serve it with
:func:`serve` on a bus from :func:`open_bus` (the real embedded bus, SqliteBus).
"""

from __future__ import annotations

import json
import os
import threading
import time
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost import LocalHost
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin

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
def on_batch(batch: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
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


# --- serving it ------------------------------------------------------------------------


def open_bus(path: Path) -> SqliteBus:
    """A bus with the queues the app's triggers and tests use."""
    bus = SqliteBus(path)
    admin = SqliteBusAdmin(bus)
    admin.declare_queue("work", max_delivery_count=2)
    admin.declare_queue("batch")
    admin.declare_queue("sessions", requires_session=True)
    admin.declare_queue("forwarded")
    admin.declare_queue("slow")
    return bus


@contextmanager
def serve(bus: SqliteBus) -> Iterator[LocalHost]:
    with LocalHost(app, bus=bus, port=0, max_request_body_bytes=64 * 1024) as host:
        yield host
