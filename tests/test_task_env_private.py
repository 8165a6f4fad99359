"""A user task never inherits the agent's credentials or the cluster's settings from the
agent's own environment (a probe read HPC_COSMOS_KEY and HPC_BLOB_CONNECTION_STRING in a
plain user's task); what the control plane sends (its HPC_* variables, the user's own) and
the rest of the agent's environment (PATH, HOME...) still reach it."""

from __future__ import annotations

import pytest

from agent.taskenv import agent_private, task_env
from tests.agent_fixtures import run_task


@pytest.mark.parametrize(
    ("name", "private"),
    [
        ("HPC_COSMOS_KEY", True),
        ("HPC_BLOB_CONNECTION_STRING", True),
        ("HPC_SERVICEBUS_CONNECTION_STRING", True),
        ("HPC_TOKEN", True),
        ("HPC_HOME", True),  # the agent's settings: a task gets its HPC_* from its assignment
        ("AZURE_CLIENT_SECRET", True),
        ("AZURE_CLIENT_CERTIFICATE_PATH", True),
        ("IDENTITY_HEADER", True),
        ("AzureWebJobsStorage", True),
        ("GITHUB_TOKEN", True),
        ("GPG_KEY", True),
        ("PGPASSWORD", True),
        ("MY_SECRET_THING", True),
        ("PATH", False),
        ("HOME", False),
        ("LANG", False),
        ("MONKEY", False),  # "KEY" as a word only
        ("KEYBOARD_LAYOUT", False),
        ("OMP_NUM_THREADS", False),
        ("AZURE_CLIENT_ID", False),  # an identity's name, no secret
        ("ServiceBusConnection", True),  # the Functions trigger's (a probe)
        ("AzureWebJobsServiceBus", True),
    ],
)
def test_the_rule(name: str, private: bool) -> None:
    assert agent_private(name) is private


@pytest.mark.parametrize(
    ("name", "value", "private"),
    [
        ("DATABASE_URL", "postgres://u:pw@db:5432/x", True),  # a URL's password (a probe)
        ("SB", "Endpoint=sb://ns/;SharedAccessKeyName=r;SharedAccessKey=S3CRET", True),
        ("STORE", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=K==", True),
        ("DB", "Server=x;User Id=u;Password=p;", True),
        ("HOMEPAGE", "https://example.org/a:b", False),  # no user:password@
        ("PATH", "/usr/local/bin:/usr/bin", False),
        ("PROXY", "http://proxy:3128", False),
    ],
)
def test_a_value_that_carries_a_credential(name: str, value: str, private: bool) -> None:
    assert agent_private(name, value) is private


def test_the_tasks_environment() -> None:
    base = {
        "PATH": "/usr/bin",
        "HPC_COSMOS_KEY": "k",
        "HPC_BLOB_CONNECTION_STRING": "c",
        "AZURE_CLIENT_SECRET": "s",
        "HPC_JOB_ID": "stale",
    }
    sent = {"HPC_JOB_ID": "7", "HPC_TASK_ID": "1", "MY_VAR": "x"}
    env = task_env(run_task(7, "true", env=sent), node="n1", group="G", base=base)
    assert env == {
        "PATH": "/usr/bin",
        "HPC_JOB_ID": "7",
        "HPC_TASK_ID": "1",
        "MY_VAR": "x",
        "HPC_NODE_NAME": "n1",
        "HPC_NODE_GROUP": "G",
    }


def test_a_real_task_sees_none_of_them(agent, cp, monkeypatch):
    monkeypatch.setenv("HPC_COSMOS_KEY", "cosmos-secret")
    monkeypatch.setenv("HPC_BLOB_CONNECTION_STRING", "AccountKey=blob-secret")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "sp-secret")
    cp.send(run_task(1, "env"))
    out = cp.ended(1).output
    assert "secret" not in out and "HPC_NODE_NAME=" in out
