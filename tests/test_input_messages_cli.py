"""The CLI's side of a probe's findings: ``--stream bogus`` is refused without pydantic's
"Value error," prefix; ``hpc dashboard`` checks the token its link carries (exit 1 if the
control plane refuses it) instead of printing a link that cannot sign in; ``hpc job watch``
of a control plane it never reached fails at once, while a blip after it connected is still
waited out.

Against the stand-in control plane of tests/cli_fixtures.py, and fake clients for
:func:`hpc.watch.watch_job`.
"""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from rich.console import Console

from hpc import watch
from hpc.client import ApiError
from tests.cli_fixtures import StandIn, assert_one_error_line, hpc

# --- 6. hpc task output --stream ---------------------------------------------------------


def test_a_bad_stream_is_one_line_without_pydantic_words(api: StandIn) -> None:
    result = hpc("task", "output", "1", "1", "--stream", "bogus")
    assert result.exit_code == 2
    assert_one_error_line(result, "--stream", "give stdout or stderr, got 'bogus'")
    assert "Value error" not in result.output
    assert not [r for r in api.requests if r["path"].endswith("/output")]  # nothing sent


@pytest.mark.parametrize(("given", "sent"), [("stderr", "stderr"), ("STDOUT", "stdout")])
def test_either_stream_in_any_case_is_asked_for(api: StandIn, given: str, sent: str) -> None:
    result = hpc("task", "output", "1", "1", "--stream", given)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{sent} of task\n"
    [request] = [r for r in api.requests if r["path"].endswith("/output")]
    assert request["query"]["stream"] == sent


def test_the_stream_defaults_to_stdout(api: StandIn) -> None:
    result = hpc("task", "output", "1", "1")
    assert result.exit_code == 0 and result.stdout == "stdout of task\n", result.output


# --- 7. hpc dashboard with a token the control plane refuses -----------------------------


def test_dashboard_with_a_refused_token_fails_without_printing_a_link(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_TOKEN", "bad")
    result = hpc("dashboard")
    assert result.exit_code == 1
    assert result.stdout == ""  # no link that cannot sign in
    assert_one_error_line(
        result, "refuses your token", "would not sign in", "invalid token", "--no-token"
    )
    assert any(r["path"] == "/api/jobs" and r["auth"] == "Bearer bad" for r in api.requests)


def test_dashboard_with_a_good_token_prints_its_link(api: StandIn) -> None:
    result = hpc("dashboard")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{api.url}/api/dashboard#token=test-token\n"


def test_dashboard_without_the_token_does_not_need_a_valid_one(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_TOKEN", "bad")  # the page asks for one
    result = hpc("dashboard", "--no-token")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{api.url}/api/dashboard\n"


# --- 8. hpc job watch of a control plane never reached -----------------------------------


def test_watch_of_a_closed_port_fails_at_once(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_API_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(watch, "POLL_INTERVAL_S", 1.0)  # as shipped: 30 s of patience
    started = time.monotonic()
    result = hpc("job", "watch", "1")
    assert time.monotonic() - started < 5
    assert_one_error_line(result, "cannot reach the control plane at http://127.0.0.1:9")


class _Flaky:
    """A client whose get_job answers from ``answers``: a dict, or an exception to raise."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0

    def get_job(self, job_id: int) -> dict[str, Any]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


def _job(state: str) -> dict[str, Any]:
    return {"id": 1, "state": state, "taskCount": 1, "taskCounts": {state: 1}}


def _watch(client: _Flaky, sleeps: list[float]) -> dict[str, Any]:
    return watch.watch_job(
        client,  # type: ignore[arg-type]
        1,
        console=Console(file=io.StringIO(), force_terminal=False),
        interval_s=0.5,
        patience_s=60,
        sleep=sleeps.append,
    )


def test_watch_does_not_retry_a_first_poll_that_reaches_nothing() -> None:
    down = ApiError(0, "cannot reach the control plane at http://x: is `hpc up` running?")
    client, sleeps = _Flaky([down, _job("Finished")]), []
    with pytest.raises(ApiError, match="cannot reach"):
        _watch(client, sleeps)
    assert client.calls == 1 and sleeps == []


def test_watch_waits_out_a_blip_once_it_has_connected() -> None:
    down = ApiError(0, "cannot reach the control plane")
    client = _Flaky([_job("Running"), down, down, _job("Finished")])
    sleeps: list[float] = []
    assert _watch(client, sleeps)["state"] == "Finished"
    assert client.calls == 4 and sleeps == [0.5, 0.5, 0.5]
