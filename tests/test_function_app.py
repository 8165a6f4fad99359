"""Every function in function_app.py declares what the Azure Functions host needs."""

import json

import pytest

import function_app
from shared.domain.messages import CONNECTION_SETTING, EVENTS_QUEUE, SCHEDULER_QUEUE
from tests.helpers import ROOT

FUNCTIONS = {f.get_function_name(): f for f in function_app.app.get_functions()}


def trigger(name):
    return FUNCTIONS[name].get_trigger().get_dict_repr()


EXPECTED_HTTP = {
    "health": ("health", ["GET"]),
    "submit_job": ("jobs", ["POST"]),
    "list_jobs": ("jobs", ["GET"]),
    "get_job": ("jobs/{id}", ["GET"]),
    "cancel_job": ("jobs/{id}/cancel", ["POST"]),
    "requeue_job": ("jobs/{id}/requeue", ["POST"]),
    "hold_job": ("jobs/{id}/hold", ["POST"]),
    "release_job": ("jobs/{id}/release", ["POST"]),
    "modify_job": ("jobs/{id}", ["PATCH"]),
    "add_nodes": ("nodes", ["POST"]),
    "node_action": ("nodes/{name}/{action}", ["POST"]),
    "remove_node": ("nodes/{name}", ["DELETE"]),
    "create_node_group": ("nodegroups", ["POST"]),
    "set_node_group": ("nodegroups/{name}", ["PATCH"]),
    "autoscale_log": ("autoscale/log", ["GET"]),
    "list_tasks": ("jobs/{id}/tasks", ["GET"]),
    "get_task": ("jobs/{id}/tasks/{taskId}", ["GET"]),
    "task_output": ("jobs/{id}/tasks/{taskId}/output", ["GET"]),
    "list_nodes": ("nodes", ["GET"]),
    "list_node_groups": ("nodegroups", ["GET"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_HTTP))
def test_http_functions_declare_route_and_methods(name):
    t = trigger(name)
    route, methods = EXPECTED_HTTP[name]
    assert t["type"] == "httpTrigger"
    assert t["route"] == route
    assert [str(m.value if hasattr(m, "value") else m) for m in t["methods"]] == methods


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


def test_local_settings_example_names_every_connection_setting():
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    connections = {
        f.get_trigger().get_dict_repr().get("connection") for f in FUNCTIONS.values()
    } - {None}
    assert connections <= set(example["Values"])
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
