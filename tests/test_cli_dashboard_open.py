"""Third probe: ``hpc dashboard --open`` where no browser can be opened printed the link and
said nothing of it (``webbrowser.open``'s answer was ignored); it now says so on stderr, in
one line, and still exits 0 with the link on stdout. Also: a node action that cannot reach
the control plane stops at once (only a 404 or 409 is a node's own refusal).

Against the stand-in control plane of tests/cli_fixtures.py; no browser is started.
"""

from __future__ import annotations

import webbrowser

import pytest

from tests.cli_fixtures import StandIn, assert_one_error_line, hpc


def _no_browser(url: str) -> bool:
    return False


def _broken_browser(url: str) -> bool:
    raise webbrowser.Error("could not locate runnable browser")


@pytest.mark.parametrize("opener", [_no_browser, _broken_browser])
def test_open_without_a_browser_says_so_in_one_line(
    api: StandIn, monkeypatch: pytest.MonkeyPatch, opener: object
) -> None:
    monkeypatch.setattr(webbrowser, "open", opener)
    result = hpc("dashboard", "--open", "--no-token")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{api.url}/api/dashboard\n"
    [line] = result.stderr.strip().splitlines()
    assert "No web browser could be opened" in line and "open the link" in line


def test_open_with_a_browser_says_nothing_more(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    result = hpc("dashboard", "--open")
    assert result.exit_code == 0, result.output
    assert opened == [result.stdout.strip()]
    assert result.stderr.strip() == "This link signs in as you: do not share it."


def test_a_node_action_without_a_control_plane_stops_at_once(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_API_URL", "http://127.0.0.1:9")
    assert_one_error_line(
        hpc("node", "drain", "a", "b", "c"), "cannot reach the control plane at http://127.0.0.1:9"
    )
