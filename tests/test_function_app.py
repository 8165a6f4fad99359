"""Every function in function_app.py declares what the Azure Functions host needs."""

import json
from datetime import UTC, datetime, timedelta

import pytest

import function_app
from devhost.ncrontab import parse_schedule
from shared.domain.messages import CONNECTION_SETTING, EVENTS_QUEUE, SCHEDULER_QUEUE
from tests.helpers import ROOT

FUNCTIONS = {f.get_function_name(): f for f in function_app.app.get_functions()}


def trigger(name):
    return FUNCTIONS[name].get_trigger().get_dict_repr()


EXPECTED_HTTP = {
    "health": ("health", ["GET", "HEAD", "OPTIONS"]),
    "submit_job": ("jobs", ["POST", "OPTIONS"]),
    "list_jobs": ("jobs", ["GET", "HEAD"]),
    "get_job": ("jobs/{id}", ["GET", "HEAD", "OPTIONS"]),
    "cancel_job": ("jobs/{id}/cancel", ["POST", "OPTIONS"]),
    "requeue_job": ("jobs/{id}/requeue", ["POST", "OPTIONS"]),
    "hold_job": ("jobs/{id}/hold", ["POST", "OPTIONS"]),
    "release_job": ("jobs/{id}/release", ["POST", "OPTIONS"]),
    "modify_job": ("jobs/{id}", ["PATCH"]),
    "list_tasks": ("jobs/{id}/tasks", ["GET", "HEAD", "OPTIONS"]),
    "get_task": ("jobs/{id}/tasks/{taskId}", ["GET", "HEAD", "OPTIONS"]),
    "task_output": ("jobs/{id}/tasks/{taskId}/output", ["GET", "HEAD", "OPTIONS"]),
    "list_nodes": ("nodes", ["GET", "HEAD", "OPTIONS"]),
    "list_node_groups": ("nodegroups", ["GET", "HEAD", "OPTIONS"]),
    "add_nodes": ("nodes", ["POST"]),
    "get_node": ("nodes/{name}", ["GET", "HEAD", "OPTIONS"]),
    "node_action": ("nodes/{name}/{action}", ["POST", "OPTIONS"]),
    "set_node": ("nodes/{name}", ["PATCH"]),
    "remove_node": ("nodes/{name}", ["DELETE"]),
    "create_node_group": ("nodegroups", ["POST"]),
    "get_node_group": ("nodegroups/{name}", ["GET", "HEAD", "OPTIONS"]),
    "set_node_group": ("nodegroups/{name}", ["PATCH"]),
    "delete_node_group": ("nodegroups/{name}", ["DELETE"]),
    "autoscale_log": ("autoscale/log", ["GET", "HEAD", "OPTIONS"]),
    "cancel_task": ("jobs/{id}/tasks/{taskId}/cancel", ["POST", "OPTIONS"]),
    "cancel_tasks": ("jobs/{id}/tasks/cancel", ["POST", "OPTIONS"]),
    "requeue_tasks": ("jobs/{id}/tasks/requeue", ["POST", "OPTIONS"]),
    "requeue_task": ("jobs/{id}/tasks/{taskId}/requeue", ["POST", "OPTIONS"]),
    "list_templates": ("templates", ["GET", "HEAD", "OPTIONS"]),
    "get_template": ("templates/{name}", ["GET", "HEAD", "OPTIONS"]),
    "put_template": ("templates/{name}", ["PUT"]),
    "delete_template": ("templates/{name}", ["DELETE"]),
    "add_user": ("users", ["POST", "OPTIONS"]),
    "list_users": ("users", ["GET", "HEAD"]),
    "me": ("me", ["GET", "HEAD", "OPTIONS"]),
    "remove_user": ("users/{name}", ["DELETE", "OPTIONS"]),
    "list_tokens": ("users/{name}/tokens", ["GET", "HEAD", "OPTIONS"]),
    "revoke_token": ("users/{name}/tokens/{token}", ["DELETE", "OPTIONS"]),
    "dashboard": ("dashboard/{asset?}", ["GET", "HEAD", "OPTIONS"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_HTTP))
def test_http_functions_declare_route_and_methods(name):
    t = trigger(name)
    route, methods = EXPECTED_HTTP[name]
    assert t["type"] == "httpTrigger"
    assert t["route"] == route
    assert [str(m.value if hasattr(m, "value") else m) for m in t["methods"]] == methods


def test_every_get_takes_head_and_every_route_takes_options_once():
    """Azure's host serves only the methods a function declares (functions/routing.py)."""
    options: dict[str, int] = {}
    for route, methods in EXPECTED_HTTP.values():
        assert "GET" not in methods or "HEAD" in methods, route
        options[route] = options.get(route, 0) + methods.count("OPTIONS")
    assert set(options.values()) == {1}


def test_every_function_is_accounted_for():
    assert set(FUNCTIONS) == set(EXPECTED_HTTP) | {
        "on_events",
        "schedule",
        "reconcile",
        "autoscale",
    }


def test_events_handler_reads_the_events_queue_in_batches():
    t = trigger("on_events")
    assert t["type"] == "serviceBusTrigger"
    assert t["queueName"] == EVENTS_QUEUE
    assert t["connection"] == CONNECTION_SETTING
    assert str(getattr(t["cardinality"], "value", t["cardinality"])) == "many"


def test_scheduler_is_a_single_session_consumer():
    t = trigger("schedule")
    assert t["queueName"] == SCHEDULER_QUEUE
    assert t["connection"] == CONNECTION_SETTING
    assert t["isSessionsEnabled"] is True


@pytest.mark.parametrize(
    ("function", "setting"),
    [("reconcile", "HPC_RECONCILE_SCHEDULE"), ("autoscale", "HPC_AUTOSCALE_SCHEDULE")],
)
def test_timer_schedules_are_settings_with_a_local_default(function, setting):
    t = trigger(function)
    assert t["type"] == "timerTrigger"
    assert t["schedule"] == f"%{setting}%"
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    schedule = example["Values"][setting]
    assert len(schedule.split()) == 6, "NCRONTAB has six fields, seconds first"


def service_bus_triggers():
    return {
        name: trigger(name) for name in FUNCTIONS if trigger(name)["type"] == "serviceBusTrigger"
    }


def test_every_service_bus_trigger_is_batched_and_auto_completed():
    """host.json leaves maxConcurrentCalls, maxConcurrentSessions and
    maxAutoLockRenewalDuration unset because they only apply to single-message triggers:
    adding one means deciding them (docs/functions.md)."""
    triggers = service_bus_triggers()
    assert set(triggers) == {"on_events", "schedule"}
    for name, t in triggers.items():
        assert str(getattr(t["cardinality"], "value", t["cardinality"])) == "many", name
        assert t["autoCompleteMessages"] is True, name


def test_host_json_service_bus_settings_are_the_decided_ones():
    bus = json.loads((ROOT / "host.json").read_text())["extensions"]["serviceBus"]
    assert bus["autoCompleteMessages"] is True
    assert bus["prefetchCount"] == 0  # no lock renewal for batches: no prefetch
    assert bus["maxMessageBatchSize"] == 100  # a batch ends well inside its lock
    # These apply to single-message triggers only: this app has none.
    assert not {"maxConcurrentCalls", "maxConcurrentSessions", "maxAutoLockRenewalDuration"} & set(
        bus
    )


def longest_gap_s(schedule: str) -> float:
    """The longest time between two firings of an NCRONTAB schedule (over an hour)."""
    cron = parse_schedule(schedule)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    end = at + timedelta(hours=1)
    gap = 0.0
    while at < end:
        following = cron.next_after(at)
        gap = max(gap, (following - at).total_seconds())
        at = following
    return gap


def test_the_local_reconciler_runs_more_often_than_the_heartbeat_timeout():
    """The reconciler judges silence only over time it was listening: a gap between runs
    longer than the heartbeat timeout would keep every node from ever becoming Unreachable."""
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    timeout = float(values["HPC_HEARTBEAT_TIMEOUT_S"])
    assert longest_gap_s(values["HPC_RECONCILE_SCHEDULE"]) < timeout / 2


def test_the_azure_values_in_docs_keep_the_same_rule_and_cost_less():
    """docs/functions.md gives the Azure schedules: the reconciler still runs more often
    than the heartbeat timeout, and neither timer fires more than 3,000 times a day."""
    rows = {}
    for line in (ROOT / "docs" / "functions.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("HPC_"):
            rows[cells[0]] = cells[2]  # setting | local | Azure | ...
    reconcile, autoscale = rows["HPC_RECONCILE_SCHEDULE"], rows["HPC_AUTOSCALE_SCHEDULE"]
    assert longest_gap_s(reconcile) < float(rows["HPC_HEARTBEAT_TIMEOUT_S"]) / 2
    for schedule in (reconcile, autoscale):
        assert 86400 / longest_gap_s(schedule) <= 3000, schedule


def test_local_settings_example_names_every_connection_setting():
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    connections = {
        f.get_trigger().get_dict_repr().get("connection") for f in FUNCTIONS.values()
    } - {None}
    values = example["Values"]
    # A connection string (NAME) or an identity-based connection (NAME__fullyQualifiedNamespace).
    assert all(c in values or f"{c}__fullyQualifiedNamespace" in values for c in connections)
    # No sentinel a real binding would try to use: the bus adapter is chosen by HPC_BUS.
    assert all(values.get(c) not in ("embedded", "local") for c in connections)
    assert values["HPC_BUS"] in ("sqlite", "servicebus")
    assert values["HPC_STORE"] in ("sqlite", "cosmos")
    assert values["HPC_OUTPUT"] in ("local", "blob")
    assert example["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_host_json_sets_the_api_route_prefix_and_extension_bundle():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == "api"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"


def test_deployment_requirements_cover_what_the_function_app_imports():
    wanted = {"azure-functions", "pydantic", "pydantic-settings"}
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    names = {
        line.split(">=")[0].split("==")[0].strip()
        for line in lines
        if line and not line.startswith("#")
    }
    assert wanted <= names
    ignored = (ROOT / ".funcignore").read_text().split()
    assert "shared" not in ignored and "functions" not in ignored
