"""The local host enforces host.json's ``functionTimeout`` as Azure does: an invocation that
runs past it fails, its output bindings deliver nothing and its messages are redelivered.
(Azure cancels the invocation and recycles the worker; Python cannot stop a thread, so the
local host lets it finish and then drops what it did as Azure would have.) Time is a fake
clock the functions move, so no test waits for a timeout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import pytest

from devhost.config import FLEX_DEFAULT_TIMEOUT_S, HostConfig
from devhost.functions import FunctionSpec, discover
from devhost.invoke import InvocationTimeout, Invoker
from devhost.servicebus import to_function_message
from shared.adapters.sqlite_bus import SqliteBus
from shared.adapters.sqlite_busadmin import SqliteBusAdmin
from shared.ports.bus import OutgoingMessage

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()
RUN_FOR = {"seconds": 0.0}

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.service_bus_queue_trigger(arg_name="msg", queue_name="in", connection="ServiceBusConnection")
@app.service_bus_queue_output(arg_name="out", queue_name="out", connection="ServiceBusConnection")
def relay(msg: func.ServiceBusMessage, out: func.Out[str]) -> None:
    CLOCK.now += RUN_FOR["seconds"]
    out.set(msg.get_body().decode())


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[SqliteBus]:
    bus = SqliteBus(tmp_path / "bus.db")
    admin = SqliteBusAdmin(bus)
    for queue in ("in", "out"):
        admin.declare_queue(queue)
    yield bus
    bus.close()


def _relay() -> FunctionSpec:
    functions, errors = discover(app)
    assert not errors
    return next(f for f in functions if f.name == "relay")


def _message(bus: SqliteBus) -> func.ServiceBusMessage:
    bus.send("in", OutgoingMessage(body=b"hello"))
    with bus.get_receiver("in") as receiver:
        (received,) = receiver.receive(max_messages=1, max_wait_ms=1000)
        receiver.complete(received)
    return to_function_message(received)


def test_host_json_timeouts_are_read_as_azure_reads_them() -> None:
    assert HostConfig.from_dict({}).function_timeout_s == FLEX_DEFAULT_TIMEOUT_S
    assert HostConfig.from_dict({"functionTimeout": "00:05:00"}).function_timeout_s == 300
    assert HostConfig.from_dict({"functionTimeout": "-1"}).function_timeout_s is None
    assert HostConfig.load(ROOT / "host.json").function_timeout_s == 300
    with pytest.raises(ValueError, match="TimeSpan"):
        HostConfig.from_dict({"functionTimeout": "5 minutes"})


@pytest.mark.parametrize(
    ("runs_s", "timed_out"), [(299.0, False), (300.0, False), (300.5, True), (3600.0, True)]
)
def test_an_invocation_past_the_timeout_fails_and_delivers_nothing(
    bus: SqliteBus, runs_s: float, timed_out: bool
) -> None:
    invoker = Invoker(bus=bus, timeout_s=300, clock=CLOCK)
    RUN_FOR["seconds"] = runs_s
    message = _message(bus)
    admin = SqliteBusAdmin(bus)
    if timed_out:
        with pytest.raises(InvocationTimeout, match="past functionTimeout"):
            invoker.call(_relay(), message)
        assert admin.count("out") == 0  # the output binding delivered nothing
    else:
        invoker.call(_relay(), message)
        assert admin.count("out") == 1


def test_an_unbounded_timeout_never_fails_an_invocation(bus: SqliteBus) -> None:
    invoker = Invoker(bus=bus, timeout_s=None, clock=CLOCK)
    RUN_FOR["seconds"] = 10 * 86400.0
    invoker.call(_relay(), _message(bus))
    assert SqliteBusAdmin(bus).count("out") == 1
