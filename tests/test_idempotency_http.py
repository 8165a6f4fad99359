"""``Idempotency-Key`` on ``POST /api/jobs`` and ``POST /api/nodes``, over HTTP on the real
function_app.py served by the local host: a retried request gets the first answer and makes
nothing new; another body under the key is a 422, another user's key is another key, a bad
key is a 400, concurrent duplicates make one job, a key past its 24 h is forgotten, and a
refused request (4xx) leaves the key free for the fixed retry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.domain.idempotency import fingerprint, reservation
from shared.usecases.idempotency import JOBS_ROUTE
from tests.agent_double import AgentDouble
from tests.app_fixtures import ServedApp, served_app
from tests.helpers import error

SPEC = {"name": "sweep", "command": "echo *", "sweep": "1-10", "nodeGroup": "OnPremNodes"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    with served_app(tmp_path_factory.mktemp("idem")) as served:
        AgentDouble(served.cp, "n1", cores=4).register()
        yield served


@pytest.fixture(scope="module")
def client(app: ServedApp) -> Iterator[httpx.Client]:
    with app.client() as c:
        yield c


def job_count(app: ServedApp) -> int:
    return len(app.cp.store.list_jobs(limit=10_000))


def post(client: httpx.Client, key: str | bytes, body: Any = SPEC) -> httpx.Response:
    return client.post("/api/jobs", json=body, headers={"Idempotency-Key": key})


def test_the_same_key_twice_makes_one_job_and_answers_it_again(app, client) -> None:
    before = job_count(app)
    first = post(client, "same-twice")
    again = post(client, "same-twice")
    assert first.status_code == again.status_code == 201
    assert again.content == first.content  # the same body, byte for byte
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert job_count(app) == before + 1
    plain = [client.post("/api/jobs", json=SPEC) for _ in range(2)]  # no key: as before
    assert [r.status_code for r in plain] == [201, 201] and plain[0].json() != plain[1].json()
    assert job_count(app) == before + 3


def test_the_same_body_with_its_keys_in_another_order_is_the_same_request(app, client) -> None:
    first = post(client, "reordered")
    again = post(client, "reordered", dict(reversed(list(SPEC.items()))))
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]


def test_the_key_with_another_body_is_422_and_makes_nothing(app, client) -> None:
    first = post(client, "other-body")
    before = job_count(app)
    other = post(client, "other-body", {**SPEC, "sweep": "1-11"})
    assert other.status_code == 422
    assert "was used for a different request" in error(other) and "new key" in error(other)
    assert job_count(app) == before
    again = post(client, "other-body")  # the first request still gets its answer
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]


def test_another_users_same_key_is_another_key(app, client) -> None:
    made = client.post("/api/users", json={"name": "bob"})
    assert made.status_code == 201, made.text
    mine = post(client, "shared-name")
    with app.client(made.json()["token"]) as bob:
        theirs = post(bob, "shared-name")
        assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
        assert theirs.json()["id"] != mine.json()["id"] and theirs.json()["owner"] == "bob"
        assert post(bob, "shared-name").json()["id"] == theirs.json()["id"]


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("", "empty"),
        ("k" * 256, "at most 255"),
        ("caf\u00e9".encode("latin-1"), "printable ASCII"),
    ],
)
def test_a_bad_key_is_400_saying_what_to_send_and_makes_nothing(app, client, key, said) -> None:
    before = job_count(app)
    r = post(client, key)
    assert r.status_code == 400 and said in error(r) and "Idempotency-Key" in error(r)
    assert job_count(app) == before


def test_concurrent_duplicates_make_exactly_one_job(app, client) -> None:
    before = job_count(app)
    start = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def send() -> None:
        with app.client() as own:
            start.wait()
            answers.append(post(own, "concurrent"))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    made = [r for r in answers if r.status_code == 201]
    assert made and {r.status_code for r in answers} <= {201, 409}
    assert len({r.json()["id"] for r in made}) == 1
    for busy in (r for r in answers if r.status_code == 409):
        assert "is in progress; retry" in error(busy) and int(busy.headers["Retry-After"]) >= 1
    assert job_count(app) == before + 1
    assert post(client, "concurrent").json()["id"] == made[0].json()["id"]


def test_a_key_whose_request_has_not_answered_is_409_saying_when_to_retry(app, client) -> None:
    now = datetime.now(UTC)
    held = reservation("admin", "held", JOBS_ROUTE, fingerprint(JOBS_ROUTE, SPEC), now)
    app.cp.store.put_idempotency_key(held)  # as a first request still working leaves it
    before = job_count(app)
    r = post(client, "held")
    assert r.status_code == 409 and "in progress; retry" in error(r)
    assert 1 <= int(r.headers["Retry-After"]) <= 60 and r.json()["retryAfterS"] >= 1
    assert job_count(app) == before


def test_a_key_past_its_24_h_is_forgotten_the_same_request_makes_a_new_job(
    app, client, monkeypatch
) -> None:
    first = post(client, "old-key")
    later = datetime.now(UTC) + timedelta(hours=24, minutes=1)
    monkeypatch.setattr(app.cp.deps, "clock", lambda: later)
    again = post(client, "old-key")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert post(client, "old-key").json()["id"] == again.json()["id"]  # the new one is kept


def test_a_refused_request_is_not_stored_so_the_fixed_one_may_use_the_key(app, client) -> None:
    before = job_count(app)
    refused = post(client, "fix-and-retry", {**SPEC, "nodeGroup": "NoSuchGroup"})
    assert refused.status_code == 404
    fixed = post(client, "fix-and-retry")
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed.headers
    again = post(client, "fix-and-retry")  # and it is the fixed request's answer that is kept
    assert again.headers["Idempotent-Replayed"] == "true" and again.content == fixed.content
    assert job_count(app) == before + 1


# --- POST /api/nodes ----------------------------------------------------------------------


def test_a_key_used_on_another_route_says_so(app, client) -> None:
    """A probe: a key of a job submit, sent with a node add, was said to have been used for
    "POST /api/jobs with another body"."""
    made = post(client, "one-route")
    assert made.status_code == 201
    other = client.post(
        "/api/nodes",
        json={"group": "AzureNodes", "count": 1},
        headers={"Idempotency-Key": "one-route"},
    )
    assert other.status_code == 422
    assert "(POST /api/jobs, not POST /api/nodes)" in error(other)


def test_a_key_sent_twice_is_400_not_one_key_of_both(app, client) -> None:
    """A probe: two Idempotency-Key headers were joined into the key "x1,x2" and taken."""
    sent = client.post(
        "/api/jobs", json=SPEC, headers=[("Idempotency-Key", "x1"), ("Idempotency-Key", "x2")]
    )
    assert sent.status_code == 400 and "comma" in error(sent)


@pytest.fixture
def managed(tmp_path: Path) -> Iterator[httpx.Client]:
    with served_app(tmp_path / "home") as served, served.client() as c:
        r = c.patch(
            "/api/nodegroups/AzureNodes", json={"provider": "local", "maxNodes": 4, "nodeCores": 2}
        )
        assert r.status_code == 200, r.text
        yield c


def test_a_node_add_retried_with_its_key_adds_no_more_nodes(managed) -> None:
    body = {"group": "AzureNodes", "count": 2}
    first = managed.post("/api/nodes", json=body, headers={"Idempotency-Key": "add-2"})
    again = managed.post("/api/nodes", json=body, headers={"Idempotency-Key": "add-2"})
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    nodes = managed.get("/api/nodes").json()["nodes"]
    assert sorted(n["name"] for n in nodes if "AzureNodes" in n["groups"]) == [
        "azure-1",
        "azure-2",
    ]
    other = managed.post(
        "/api/nodes", json={**body, "count": 1}, headers={"Idempotency-Key": "add-2"}
    )
    assert other.status_code == 422
