"""Third probe: ``hpc dashboard --open`` where no browser can be opened printed the link and
said nothing of it (``webbrowser.open``'s answer was ignored); it now says so on stderr, in
one line, and still exits 0 with the link on stdout. Fourth: ``--open`` gave the browser
the link, token and all, on its command line; it now opens a page only the user may read
that moves on to the link (hpc/openlink.py). Also: a node action that cannot reach
the control plane stops at once (only a 404 or 409 is a node's own refusal).

Against the stand-in control plane of tests/cli_fixtures.py; no browser is started.
"""

from __future__ import annotations

import json
import os
import stat
import time
import webbrowser
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from hpc import openlink
from shared.settings import Settings
from tests.cli_fixtures import TOKEN, StandIn, assert_one_error_line, hpc
from tests.helpers import wait_until


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
    monkeypatch.setattr(openlink, "_remove_later", lambda page: None)
    result = hpc("dashboard", "--open")
    assert result.exit_code == 0, result.output
    assert len(opened) == 1
    assert result.stdout == f"{api.url}/api/dashboard#token={TOKEN}\n"  # printed, as before
    assert result.stderr.strip() == "This link signs in as you: do not share it."


def test_open_gives_the_browser_a_private_page_never_the_token(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fourth probe: ``webbrowser.open(link)`` put the token on the browser's command line,
    which every local user of a login node reads in ``ps`` or /proc/*/cmdline."""
    opened: list[str] = []
    later: list[Path] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.setattr(openlink, "_remove_later", later.append)
    result = hpc("dashboard", "--open")
    assert result.exit_code == 0, result.output
    [arg] = opened
    assert TOKEN not in arg and arg.startswith("file://")
    page = Path(url2pathname(urlparse(arg).path))
    assert page.parent == Settings().home_dir / openlink.FOLDER
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert stat.S_IMODE(page.parent.stat().st_mode) == 0o700
    link = result.stdout.strip()
    assert link == f"{api.url}/api/dashboard#token={TOKEN}"
    assert f"location.replace({json.dumps(link)})" in page.read_text()
    assert later == [page]  # removed once the browser had time to load it


def test_a_page_no_browser_took_is_removed_at_once(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webbrowser, "open", _broken_browser)
    result = hpc("dashboard", "--open")
    assert result.exit_code == 0 and "No web browser could be opened" in result.stderr
    assert list((Settings().home_dir / openlink.FOLDER).iterdir()) == []


def test_redirect_pages_are_removed_later_and_stale_ones_by_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / openlink.FOLDER
    folder.mkdir()
    stale = folder / "dashboard-old.html"
    stale.write_text("old")
    os.utime(stale, (time.time() - openlink.REMOVE_AFTER_S - 1,) * 2)
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.setattr(openlink, "REMOVE_AFTER_S", 0.2)  # the real helper process, soon
    assert openlink.open_privately("http://h/api/dashboard#token=s", tmp_path)
    assert not stale.exists()
    page = Path(url2pathname(urlparse(opened[0]).path))
    assert page.exists()
    wait_until(lambda: not page.exists(), timeout=10, what="the page removed")


def test_the_redirect_page_cannot_be_broken_out_of_by_the_link() -> None:
    page = openlink.redirect_page('http://h/</script><b x="1">#token=a&b')
    assert "</script><b" not in page and '<b x="1">' not in page


def test_a_node_action_without_a_control_plane_stops_at_once(
    api: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_API_URL", "http://127.0.0.1:9")
    assert_one_error_line(
        hpc("node", "drain", "a", "b", "c"), "cannot reach the control plane at http://127.0.0.1:9"
    )
