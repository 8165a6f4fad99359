"""The local host loads a v2 app as Azure does and serves its HTTP functions (tests/devhost_app.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import httpx
import pytest

from devhost import AppIndexingError, LocalHost
from devhost.routes import compile_template
from shared.adapters.sqlite_bus import SqliteBus
from tests.devhost_app import (
    WAIT_S,
    app,
    open_bus,
    serve,
)

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
    with host, httpx.Client(base_url=host.url, timeout=WAIT_S) as client:
        status = client.get("/admin/host/status").json()  # Azure's host admin API
    assert status["state"] == "Error" and len(status["errors"]) == 3
    assert any("DEVHOST_TEST_UNSET_SETTING" in e for e in status["errors"])


def test_the_host_status_of_a_host_that_loaded_everything(client: httpx.Client) -> None:
    assert client.get("/admin/host/status").json() == {"state": "Running", "errors": []}


def test_an_app_azures_worker_would_refuse_does_not_start(bus: SqliteBus) -> None:
    """In Azure one function the worker refuses stops every function, HTTP included."""
    refused = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @refused.service_bus_queue_trigger(
        arg_name="batch", queue_name="batch", connection="ServiceBusConnection", cardinality="many"
    )
    def builtin_list(batch: list[func.ServiceBusMessage]) -> None: ...

    @refused.route(route="ok")
    def ok(req: func.HttpRequest) -> func.HttpResponse: ...

    with pytest.raises(AppIndexingError) as error:
        LocalHost(refused, bus=bus, port=0)
    assert set(error.value.refusals) == {"builtin_list"}
    assert "typing.List" in str(error.value) and "HTTP routes included" in str(error.value)


def test_a_service_bus_trigger_without_auto_complete_is_not_loaded(
    bus: SqliteBus, tmp_path: Path
) -> None:
    """Such a function must settle its own messages, which the local host cannot offer."""
    manual = func.FunctionApp()

    @manual.service_bus_queue_trigger(
        arg_name="msg", queue_name="work", connection="Sb", auto_complete_messages=False
    )
    def settles_itself(msg: func.ServiceBusMessage) -> None: ...

    @manual.service_bus_queue_trigger(arg_name="msg", queue_name="batch", connection="Sb")
    def follows_host_json(msg: func.ServiceBusMessage) -> None: ...

    @manual.service_bus_queue_trigger(
        arg_name="msg", queue_name="slow", connection="Sb", auto_complete_messages=True
    )
    def completes(msg: func.ServiceBusMessage) -> None: ...

    host_json = tmp_path / "host.json"
    host_json.write_text(
        json.dumps(
            {"version": "2.0", "extensions": {"serviceBus": {"autoCompleteMessages": False}}}
        )
    )
    host = LocalHost(manual, bus=bus, port=0, host_json=host_json)
    assert set(host.errors) == {"settles_itself", "follows_host_json"}
    assert "autoCompleteMessages is false" in host.errors["settles_itself"]
    assert [f.name for f in host.functions] == ["completes"]
    assert set(LocalHost(manual, bus=bus, port=0).errors) == {"settles_itself"}


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
