"""A store that does not answer (a probe killed the Cosmos stand-in): every request got a
500 "internal error" and a traceback, which the CLI does not retry, and health said ok. Now
a 503 with Retry-After saying to retry, and health says the store does not answer.

The store's calls are made to raise what the Azure SDK raises with no connection
(azure.core's ServiceRequestError): a fake of the outage only, on the real served app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.core.exceptions import ServiceRequestError

from tests.app_fixtures import ServedApp, served_app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    with served_app(tmp_path_factory.mktemp("unreachable")) as served:
        yield served


def refused(*_args: object, **_kwargs: object) -> None:
    raise ServiceRequestError("<urllib3.connection.HTTPConnection>: Connection refused")


def test_a_request_while_the_store_does_not_answer_is_a_503_to_retry(app, monkeypatch):
    with app.client() as client:
        assert client.get("/api/jobs").status_code == 200
        monkeypatch.setattr(app.cp.store, "list_jobs", refused)
        down = client.get("/api/jobs")
        assert down.status_code == 503
        assert down.headers["Retry-After"] == "5"
        assert "does not answer; retry in a moment" in down.json()["error"]
        monkeypatch.undo()
        assert client.get("/api/jobs").status_code == 200  # back by itself


def test_health_says_the_store_does_not_answer(app, monkeypatch):
    with app.client() as client:
        assert client.get("/api/health").json() == {"status": "ok"}
        monkeypatch.setattr(app.cp.store, "get_meta", refused)
        down = client.get("/api/health")
        assert down.status_code == 503
        assert down.json()["status"] == "store unreachable"
