"""``hpc job submit`` and ``hpc node add`` send an ``Idempotency-Key`` and retry the same request
when no answer came (a dropped connection, a proxy's 502): against the real function app, with
an httpx transport that loses answers, a retried submit makes exactly one job and prints it as
the first answer would have; ``--idempotency-key`` makes a whole command safe to run again."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hpc.client import ApiClient
from shared.domain.idempotency import KeyRecord, fingerprint, reservation
from shared.usecases.idempotency import JOBS_ROUTE
from tests.agent_double import AgentDouble
from tests.app_fixtures import ServedApp, served_app
from tests.cli_fixtures import assert_one_error_line, hpc


class Flaky(httpx.BaseTransport):
    """The real transport, but the first ``fail`` POSTs fail as ``how`` says: ``lost`` (sent,
    done by the server, answer dropped), ``502`` (a proxy refused it, never sent on) or
    ``refused`` (no connection at all)."""

    def __init__(self, how: str, fail: int = 1) -> None:
        self.how, self.fail = how, fail
        self.keys: list[str | None] = []
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return self.inner.handle_request(request)
        self.keys.append(request.headers.get("Idempotency-Key"))
        if len(self.keys) > self.fail:
            return self.inner.handle_request(request)
        if self.how == "lost":
            self.inner.handle_request(request).read()
            raise httpx.ReadError("connection reset by peer", request=request)
        if self.how == "502":
            return httpx.Response(502, text="<html>Bad Gateway</html>", request=request)
        raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[ServedApp]:
    with served_app(tmp_path / "home") as served:
        AgentDouble(served.cp, "n1", cores=4).register()
        yield served


@pytest.fixture
def through(app: ServedApp, monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[float]]:
    """Make the CLI's client talk to ``app`` through a transport; the pauses it took."""

    def use(
        transport: Flaky | None, on_pause: Callable[[float], None] | None = None
    ) -> list[float]:
        pauses: list[float] = []

        def pause(seconds: float) -> None:
            pauses.append(seconds)
            if on_pause is not None:
                on_pause(seconds)

        def client() -> ApiClient:
            made = ApiClient(app.url, token=app.token, transport=transport)
            made.sleep = pause  # type: ignore[method-assign]
            return made

        monkeypatch.setattr("hpc.commands.submit.api_client", client)
        monkeypatch.setattr("hpc.commands.nodes.api_client", client)
        return pauses

    return use


def job_ids(app: ServedApp) -> list[int]:
    return [j.id for j in app.cp.store.list_jobs()]


@pytest.mark.parametrize("how", ["lost", "502", "refused"])
def test_a_submit_whose_answer_is_lost_is_retried_and_makes_one_job(app, through, how) -> None:
    flaky = Flaky(how)
    pauses = through(flaky)
    result = hpc("job", "submit", "--sweep", "1-100", "--", "echo *")
    assert result.exit_code == 0, result.output
    assert job_ids(app) == [int(result.stdout.strip())]
    assert "submitted job" in result.stderr and "(100 tasks)" in result.stderr
    assert len(flaky.keys) == 2 and flaky.keys[0] == flaky.keys[1] and flaky.keys[0]
    assert len(pauses) == 1


def test_each_command_sends_a_new_key(app, through) -> None:
    flaky = Flaky("lost", fail=0)
    through(flaky)
    first = hpc("job", "submit", "--", "true")
    second = hpc("job", "submit", "--", "true")
    assert first.exit_code == second.exit_code == 0
    assert first.stdout != second.stdout and len(job_ids(app)) == 2
    assert len(set(flaky.keys)) == 2


def test_the_same_idempotency_key_run_twice_makes_one_job_and_prints_it_twice(app, through) -> None:
    through(Flaky("lost", fail=0))
    args = ("job", "submit", "--idempotency-key", "nightly-2026-12-01", "--", "true")
    first, again = hpc(*args), hpc(*args)
    assert first.exit_code == again.exit_code == 0
    assert first.stdout == again.stdout
    assert job_ids(app) == [int(first.stdout)]
    # the second says it made nothing (a probe's read "submitted job 93" again)
    assert first.stderr.startswith(f"submitted job {first.stdout.strip()} ")
    assert again.stderr.startswith(
        f"job {first.stdout.strip()} (1 task) was submitted already with this --idempotency-key"
    )


class FirstStillWorking(Flaky):
    """Before the command's request reaches the app, a first request with its key reserves
    it, as a first run of the command still working would (the app answers 409 in progress)."""

    def __init__(self, app: ServedApp) -> None:
        super().__init__("lost", fail=0)
        self.app = app
        self.held: KeyRecord | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and self.held is None:
            body = json.loads(request.read())
            key = request.headers["Idempotency-Key"]
            fp = fingerprint(JOBS_ROUTE, body)
            self.held = reservation("admin", key, JOBS_ROUTE, fp, datetime.now(UTC))
            self.app.cp.store.put_idempotency_key(self.held)
        return super().handle_request(request)

    def first_answers(self, _seconds: float) -> None:
        """The first request is done: its job stored, its answer kept."""
        assert self.held is not None
        job = self.app.cp.submit({"command": "true"})
        self.held.job_id, self.held.status = job.id, 201
        self.held.body = json.dumps({k: v for k, v in job.to_dict().items() if k != "etag"})
        self.app.cp.store.put_idempotency_key(self.held)


def test_a_command_whose_key_is_in_progress_waits_for_that_answer(app, through) -> None:
    first = FirstStillWorking(app)
    pauses = through(first, first.first_answers)
    result = hpc("job", "submit", "--idempotency-key", "K", "--", "true")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(first.held.job_id) and len(pauses) == 1
    assert job_ids(app) == [first.held.job_id]
    assert len(first.keys) == 2  # the 409, then the replay


def test_when_every_try_fails_the_error_names_the_key_to_retry_with(app, through) -> None:
    flaky = Flaky("lost", fail=100)
    pauses = through(flaky)
    result = hpc("job", "submit", "--", "true")
    assert_one_error_line(result, "tried 5 times", "it may have been done")
    assert f"--idempotency-key {flaky.keys[0]}" in result.stderr
    assert len(set(flaky.keys)) == 1 and len(pauses) == 4


def test_when_every_try_is_refused_the_error_says_nothing_was_sent(app, through) -> None:
    """A probe: with nothing listening, the CLI said the submit "may have been done"."""
    flaky = Flaky("refused", fail=100)
    pauses = through(flaky)
    result = hpc("job", "submit", "--", "true")
    assert_one_error_line(result, "cannot reach the control plane", "tried 5 times")
    assert "nothing was sent" in result.stderr and "may have been done" not in result.stderr
    assert len(set(flaky.keys)) == 1 and len(pauses) == 4 and job_ids(app) == []


def test_a_bad_idempotency_key_is_refused_before_anything_is_sent(app, through) -> None:
    flaky = Flaky("lost", fail=0)
    through(flaky)
    result = hpc("job", "submit", "--idempotency-key", "x" * 256, "--", "true")
    assert result.exit_code == 2 and "at most 255" in result.output
    assert flaky.keys == [] and job_ids(app) == []


def test_a_node_add_whose_answer_is_lost_adds_its_nodes_once(app, through) -> None:
    with app.client() as admin:
        r = admin.patch(
            "/api/nodegroups/AzureNodes", json={"provider": "local", "maxNodes": 4, "nodeCores": 2}
        )
        assert r.status_code == 200, r.text
    through(Flaky("lost"))
    result = hpc("node", "add", "--group", "AzureNodes", "--count", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [
        "azure-1:",
        "added,",
        "Offline",
        "azure-2:",
        "added,",
        "Offline",
    ]
    managed = [n.name for n in app.cp.store.list_nodes() if "AzureNodes" in n.groups]
    assert managed == ["azure-1", "azure-2"]
