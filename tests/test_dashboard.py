"""The web dashboard: served by the real function app through the local host, every API call
its script makes exists in that app, and it writes values only as text.

The page's behaviour in a browser is not tested here (no browser on these machines): what is
checked is what it is served with, what it calls, and that it cannot turn data into markup.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import function_app
from devhost.functions import HTTP_TRIGGER, discover
from devhost.routes import compile_template
from functions.dashboard import ASSETS, asset
from hpc.cli import app as cli
from tests.app_fixtures import served_app
from tests.helpers import ROOT

SCRIPT = asset("cells.js").decode() + asset("app.js").decode()
"""The page's scripts, in the order index.html loads them."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    home = tmp_path_factory.mktemp("dashboard")
    # a client without a token: the page needs none
    with served_app(home) as app, httpx.Client(base_url=app.url) as client:
        yield client, app.token


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_each_file_is_served_with_its_type_and_a_strict_policy(
    served: tuple[httpx.Client, str], name: str
) -> None:
    client, _ = served
    r = client.get(f"/api/dashboard/{name}" if name else "/api/dashboard")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(ASSETS[name])
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert r.headers["x-content-type-options"] == "nosniff"


def test_an_unknown_file_is_a_404_saying_where_the_page_is(
    served: tuple[httpx.Client, str],
) -> None:
    client, _ = served
    r = client.get("/api/dashboard/secrets.txt")
    assert r.status_code == 404 and "/api/dashboard" in r.text


def test_the_page_with_a_trailing_slash_redirects_to_the_page(
    served: tuple[httpx.Client, str],
) -> None:
    client, _ = served
    r = client.get("/api/dashboard/")
    assert r.status_code == 308
    assert httpx.URL(str(r.url)).join(r.headers["location"]).path == "/api/dashboard"


def test_the_page_loads_only_the_files_that_are_served() -> None:
    page = asset("").decode()
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and all(link.removeprefix("dashboard/") in ASSETS for link in links)
    assert "<script>" not in page and " style=" not in page  # nothing inline: the policy refuses it


def _called_paths() -> list[tuple[str, str]]:
    """(method, path) of every API path the script builds: its string and template literals
    that start with an API collection, ``${action}`` expanded to each action the page offers
    (POST), any other ``${...}`` filled with a sample value."""
    page = asset("").decode()
    job_actions = re.findall(r'data-action="(\w+)"', page)
    rule = re.search(r"function nodeActions\(node\) \{(.+?)\n\}", SCRIPT, re.DOTALL)
    assert rule is not None  # the node buttons: those its state allows (cells.js)
    node_actions = set(re.findall(r'actions\.push\("(\w+)"\)', rule.group(1)))
    assert node_actions == {"start", "drain", "stop", "offline", "release"}
    tasks = re.search(r"const TASK_ACTIONS = \{(.+?)\};", SCRIPT, re.DOTALL)
    assert tasks is not None
    task_actions = set(re.findall(r'"(\w+)"', tasks.group(1)))
    calls = []
    literals = r'[`"]((?:jobs|nodes|nodegroups|autoscale)(?:[/?][^`"]*)?)[`"]'
    for literal in re.findall(literals, SCRIPT):
        path = literal.split("?")[0]
        if "${action}" in path:
            if "/tasks/" in path:
                actions = sorted(task_actions)
            else:
                actions = job_actions if path.startswith("jobs") else sorted(node_actions)
            assert actions, path
            calls += [("POST", path.replace("${action}", a)) for a in actions]
            continue
        calls.append(("GET", re.sub(r"\$\{[^}]+\}", "x1", path)))
    return [(m, re.sub(r"\$\{[^}]+\}", "x1", p)) for m, p in calls]


def test_every_api_call_of_the_script_is_a_route_of_the_function_app() -> None:
    functions, _timers_without_schedules = discover(function_app.app)
    routes = [
        (str(method).upper(), compile_template(spec.trigger["route"]))
        for spec in functions
        if spec.trigger_type == HTTP_TRIGGER
        for method in spec.trigger.get("methods") or []
    ]
    calls = _called_paths()
    assert len(calls) >= 8, calls  # jobs, a job, its tasks, output, actions, nodes, groups, log
    assert {p for _, p in calls} >= {
        "jobs/x1/cancel",
        "jobs/x1/tasks/x1/output",
        "jobs/x1/tasks/x1/requeue",
        "nodes/x1/drain",
        "nodes/x1/release",  # an admin probe: a VM's hold could not be lifted from the page
    }
    for method, path in calls:
        found = any(m == method and r.match(f"/{path}") is not None for m, r in routes)
        assert found, (method, path)


def test_the_script_writes_values_as_text_never_as_markup() -> None:
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in SCRIPT, sink
    assert "new Function" not in SCRIPT


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
@pytest.mark.parametrize("name", ["cells.js", "app.js"])
def test_the_script_parses(name: str) -> None:
    done = subprocess.run(
        ["node", "--check", str(ROOT / "functions" / "dashboard_assets" / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _hpc(monkeypatch: pytest.MonkeyPatch, url: str, token: str, *args: str) -> Any:
    monkeypatch.setenv("HPC_API_URL", url)
    monkeypatch.setenv("HPC_TOKEN", token)
    return CliRunner().invoke(cli, ["dashboard", *args])


def test_hpc_dashboard_prints_a_link_that_signs_in(
    served: tuple[httpx.Client, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, token = served
    result = _hpc(monkeypatch, str(client.base_url), token)
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert link.startswith(f"{str(client.base_url).rstrip('/')}/api/dashboard#token=")
    assert "do not share it" in result.stderr
    plain = _hpc(monkeypatch, str(client.base_url), token, "--no-token").stdout.strip()
    assert plain.endswith("/api/dashboard")
    assert client.get(plain.removeprefix(str(client.base_url).rstrip("/"))).status_code == 200


def test_hpc_dashboard_without_a_control_plane_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = _hpc(monkeypatch, "http://127.0.0.1:9", "t0ken")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
