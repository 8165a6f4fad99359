"""host.json, local.settings.json and ``python -m devhost``: the local host configured and
started as Core Tools would be."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from devhost.config import HostConfig, parse_timespan
from tests.helpers import ROOT, child_env

# --- host.json and the command line ----------------------------------------------------


def test_host_json_service_bus_settings_in_both_shapes(tmp_path: Path) -> None:
    flat = HostConfig.from_dict(
        {
            "extensions": {
                "serviceBus": {
                    "maxConcurrentSessions": 3,
                    "sessionIdleTimeout": "00:00:00.250",
                    "maxMessageBatchSize": 50,
                    "maxAutoLockRenewalDuration": "00:01:00",
                }
            }
        }
    )
    assert (flat.max_concurrent_sessions, flat.session_idle_timeout_s) == (3, 0.25)
    assert (flat.max_message_batch_size, flat.max_auto_lock_renewal_s) == (50, 60.0)
    nested = HostConfig.from_dict(
        {
            "extensions": {
                "serviceBus": {
                    "sessionHandlerOptions": {"maxConcurrentSessions": 2},
                    "messageHandlerOptions": {"maxConcurrentCalls": 4},
                }
            }
        }
    )
    assert (nested.max_concurrent_sessions, nested.max_concurrent_calls) == (2, 4)
    assert nested.route_prefix == "api"
    project = HostConfig.load(ROOT / "host.json")
    assert project.route_prefix == "api" and project.max_concurrent_sessions == 8
    assert parse_timespan("1.02:03:04.5") == 93784.5


def test_python_m_devhost_serves_until_sigterm(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        "import os\n"
        "import azure.functions as func\n"
        "app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n"
        "@app.route(route='greeting', methods=['GET'])\n"
        "def greeting(req: func.HttpRequest) -> func.HttpResponse:\n"
        "    return func.HttpResponse(os.environ.get('DEVHOST_CLI_GREETING', 'unset'))\n"
    )
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"DEVHOST_CLI_GREETING": "hello from local.settings.json"}})
    )
    env = child_env(tmp_path / "home")
    env.pop("DEVHOST_CLI_GREETING", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--port", "0"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stderr or []], daemon=True
    ).start()
    try:
        log = []
        while "listening on" not in (log[-1] if log else ""):
            log.append(lines.get(timeout=15))
        url = log[-1].rsplit(" ", 1)[-1].strip()
        assert any("http GET api/greeting -> greeting" in line for line in log)
        assert httpx.get(f"{url}/api/greeting").text == "hello from local.settings.json"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_settings_absent_everywhere_else_come_from_the_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devhost.__main__ import load_local_settings

    for name in ("DEVHOST_T_ENV", "DEVHOST_T_LOCAL", "DEVHOST_T_EXAMPLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEVHOST_T_ENV", "from the environment")
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"DEVHOST_T_ENV": "local", "DEVHOST_T_LOCAL": "local"}})
    )
    example = {"DEVHOST_T_ENV": "ex", "DEVHOST_T_LOCAL": "ex", "DEVHOST_T_EXAMPLE": "ex"}
    (tmp_path / "local.settings.json.example").write_text(json.dumps({"Values": example}))
    assert load_local_settings(tmp_path / "local.settings.json") == ["DEVHOST_T_EXAMPLE"]
    assert os.environ["DEVHOST_T_ENV"] == "from the environment"
    assert os.environ["DEVHOST_T_LOCAL"] == "local"
    assert os.environ["DEVHOST_T_EXAMPLE"] == "ex"


def test_the_function_app_sets_no_settings_of_its_own(tmp_path: Path) -> None:
    """Azure reads binding expressions (%HPC_RECONCILE_SCHEDULE%) from app settings before the
    app's code runs, so the app must not set them; the local host takes them from the
    settings files, and the project's example has every one the app names."""
    before = {k: v for k, v in child_env(tmp_path).items() if "%" not in v}
    code = (
        "import json, os, re, sys\n"
        "before = dict(os.environ)\n"
        "import function_app\n"
        "named = set()\n"
        "for f in function_app.app.get_functions():\n"
        "    text = json.dumps(f.get_trigger().get_dict_repr(), default=str)\n"
        "    named |= set(re.findall(r'%([^%]+)%', text))\n"
        "changed = sorted(k for k in os.environ if os.environ[k] != before.get(k))\n"
        "print(json.dumps({'named': sorted(named), 'changed': changed}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={k: v for k, v in before.items() if not k.endswith("_SCHEDULE")},
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["changed"] == []
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert result["named"] and set(result["named"]) <= set(example)


def test_python_m_devhost_refuses_an_app_azures_worker_would_refuse(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n"
        "@app.route(route='greeting', methods=['GET'])\n"
        "def greeting(req: func.HttpRequest) -> None:\n"
        "    pass\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--port", "0"],
        cwd=tmp_path,
        env=child_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "greeting" in result.stderr and '"NoneType" does not match' in result.stderr
    assert "Traceback" not in result.stderr


def test_a_module_with_two_function_apps_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devhost.__main__ import load_app

    (tmp_path / "two_apps_here.py").write_text(
        "import azure.functions as func\napp = func.FunctionApp()\nother = func.FunctionApp()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit, match="more than one top-level function app"):
        load_app("two_apps_here")
    assert load_app("two_apps_here:other") is not None  # named explicitly: that one
