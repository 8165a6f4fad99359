"""``hpc job submit`` and ``hpc node add`` send an ``Idempotency-Key`` and retry the same request
when no answer came (a dropped connection, a proxy's 502): against the real function app, with
an httpx transport that loses answers, a retried submit makes exactly one job and prints it as
the first answer would have; ``--idempotency-key`` makes a whole command safe to run again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hpc.client import ApiClient
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
def through(
    app: ServedApp, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Flaky | None], list[float]]:
    """Make the CLI's client talk to ``app`` through a transport; the pauses it took."""

    def use(transport: Flaky | None) -> list[float]:
        pauses: list[float] = []

        def client() -> ApiClient:
            made = ApiClient(app.url, token=app.token, transport=transport)
            made.sleep = pauses.append  # type: ignore[method-assign]
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
    assert first.stdout == again.stdout and first.stderr == again.stderr
    assert job_ids(app) == [int(first.stdout)]


def test_when_every_try_fails_the_error_names_the_key_to_retry_with(app, through) -> None:
    flaky = Flaky("refused", fail=100)
    pauses = through(flaky)
    result = hpc("job", "submit", "--", "true")
    assert_one_error_line(result, "cannot reach the control plane", "tried 5 times")
    assert f"--idempotency-key {flaky.keys[0]}" in result.stderr
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
