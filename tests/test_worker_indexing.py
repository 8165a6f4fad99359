"""Azure's own Python worker indexes function_app.py and accepts every function.

In Azure the worker (PyPI ``azure-functions-runtime``, Python >= 3.13) indexes the app at
start-up, and one function it refuses stops the whole app, HTTP routes included. These
tests run the worker's own indexing code (``loader.index_function_app``, then
``functions.Registry().add_indexed_function`` per function: scripts/worker_index.py) in
its own venv (scripts/worker_venv.sh: created once, reused while requirements.txt is
unchanged), and check that the local host (devhost.indexing) refuses what it refuses.
Skipped, with the reason, only where no Python >= 3.13 exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import types
from pathlib import Path
from typing import Any

import pytest

import function_app
from devhost.functions import discover
from devhost.indexing import AppIndexingError, find_app
from shared.domain.messages import CONNECTION_SETTING, EVENTS_QUEUE, SCHEDULER_QUEUE
from tests import signature_cases
from tests.helpers import ROOT

NO_PYTHON_3_13 = 3
"""scripts/worker_venv.sh's exit status when no Python >= 3.13 exists."""


@pytest.fixture(scope="module")
def worker_python() -> Path:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "worker_venv.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode == NO_PYTHON_3_13:
        pytest.skip(f"Azure's Python worker cannot run here: {result.stderr.strip()}")
    assert result.returncode == 0, f"scripts/worker_venv.sh failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


def worker_index(python: Path, app_file: Path) -> tuple[int, dict[str, Any]]:
    """What the worker says of ``app_file``: (exit status, scripts/worker_index.py's report)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(python), str(ROOT / "scripts" / "worker_index.py"), str(app_file)],
        cwd=app_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1, 2), result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def project_report(worker_python: Path) -> dict[str, Any]:
    code, report = worker_index(worker_python, ROOT / "function_app.py")
    print("indexed by", report["versions"])
    refused = {n: f["error"] for n, f in report["functions"].items() if f["error"]}
    assert (code, report["app_error"], refused) == (0, None, {})
    return report


def test_every_function_of_function_app_is_accepted_by_azures_worker(
    project_report: dict[str, Any],
) -> None:
    specs, errors = discover(function_app.app)  # not get_functions(): it runs once a process
    ours = {s.name for s in specs} | set(errors)
    assert set(project_report["functions"]) == ours  # the worker saw every function


def _trigger(report: dict[str, Any], name: str) -> dict[str, Any]:
    [trigger] = [b for b in report["functions"][name]["bindings"] if b["type"].endswith("Trigger")]
    return dict(trigger)


def test_the_host_gets_the_service_bus_triggers_as_decided(project_report: dict[str, Any]) -> None:
    """The raw bindings the worker hands the Functions host (docs/functions.md says why)."""
    schedule = _trigger(project_report, "schedule")
    assert schedule["queueName"] == SCHEDULER_QUEUE
    assert schedule["isSessionsEnabled"] is True  # one session: one pass at a time
    assert schedule["cardinality"].lower() == "many"  # kicks coalesce into one pass
    events = _trigger(project_report, "on_events")
    assert events["queueName"] == EVENTS_QUEUE
    assert events["cardinality"].lower() == "many"
    assert not events.get("isSessionsEnabled")
    for trigger in (schedule, events):
        # In Azure: ServiceBusConnection__fullyQualifiedNamespace (a managed identity).
        assert trigger["connection"] == CONNECTION_SETTING
        assert trigger["autoCompleteMessages"] is True  # the functions never settle messages
    for name, setting in (
        ("reconcile", "HPC_RECONCILE_SCHEDULE"),
        ("autoscale", "HPC_AUTOSCALE_SCHEDULE"),
    ):
        assert _trigger(project_report, name)["schedule"] == f"%{setting}%"


def test_the_local_host_refuses_what_the_worker_refuses(worker_python: Path) -> None:
    code, report = worker_index(worker_python, Path(signature_cases.__file__))
    worker = {name: f["error"] for name, f in report["functions"].items()}
    assert code == 1 and report["app_error"] is None
    assert sorted(worker) == sorted(signature_cases.ACCEPTED + signature_cases.REFUSED)
    assert sorted(n for n, error in worker.items() if error) == signature_cases.REFUSED

    with pytest.raises(AppIndexingError) as refused:
        discover(signature_cases.app)
    assert sorted(refused.value.refusals) == signature_cases.REFUSED
    assert "list[" in refused.value.refusals["refused_builtin_list"]


def test_an_app_module_with_two_function_apps_is_refused_by_both(
    worker_python: Path, tmp_path: Path
) -> None:
    source = (
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "other = func.FunctionApp()\n"
        "@app.route(route='ping')\n"
        "def ping(req: func.HttpRequest) -> func.HttpResponse:\n"
        "    return func.HttpResponse('pong')\n"
    )
    (tmp_path / "two_apps.py").write_text(source)
    code, report = worker_index(worker_python, tmp_path / "two_apps.py")
    assert code == 2 and "more than one" in report["app_error"].lower()

    module = types.ModuleType("two_apps")
    exec(compile(source, "two_apps.py", "exec"), module.__dict__)
    with pytest.raises(AppIndexingError, match="more than one"):
        find_app(module)


def test_a_bad_schedule_setting_is_named_as_spelt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe's HPC_RECONCILE_SCHEDULE=bogus read only "NCRONTAB needs six fields"; every
    other bad setting names its variable."""
    monkeypatch.setenv("HPC_RECONCILE_SCHEDULE", "bogus")
    _specs, errors = discover(function_app.app)
    assert errors["reconcile"].startswith("app setting HPC_RECONCILE_SCHEDULE: NCRONTAB needs")
