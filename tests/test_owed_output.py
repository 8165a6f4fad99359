"""A Blob outage at a task's end: the agent reports the end once its publish gives up, and
publishes the output again until Blob takes it (agent/owedoutput.py).

Before, the output stayed in the node's scratch folder for good once the final publish gave
up: a fault probe on one machine missed it, since the reader falls back to the local file
there; on a VM users never saw it. Azurite is really stopped and started again here, on the
same port and data folder, as a Blob outage looks to the agent (connections refused)."""

# ruff: noqa: F811 - pytest fixtures imported from tests/agent_fixtures.py
from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

import agent.owedoutput
import agent.runner
from agent import Agent
from shared.adapters.blob_output import BlobOutputStore
from shared.domain.messages import RegisterNode
from tests.agent_fixtures import (  # noqa: F401 - fixtures
    ControlPlane,
    bus,
    cp,
    run_task,
    start_agent,
)
from tests.emulators import (
    AZURITE_ACCOUNT,
    _require_node,
    _start,
    _stop,
    azurite_connection_string,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.azurite


class Azurite:
    """An Azurite of this test's own, stopped and started again on one port and folder."""

    def __init__(self, data: Path) -> None:
        self.data = data
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc, _ = _start(
            ["azurite", str(self.data), str(self.port)],
            re.compile(r"Blob service successfully listens on (\S+)"),
        )

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    _require_node()
    blob = Azurite(tmp_path / "azurite")
    blob.start()
    yield blob
    blob.stop()


@pytest.fixture
def output(tmp_path: Path, azurite: Azurite) -> BlobOutputStore:
    """The agent's store: its SDK retries cut to none, so that a give-up takes seconds."""
    connection = azurite_connection_string(azurite.url)
    client = BlobServiceClient.from_connection_string(
        connection, retry_total=0, connection_timeout=2
    )
    return BlobOutputStore(tmp_path / "scratch", client=client)


def _blob(azurite: Azurite, name: str) -> bytes | None:
    client = BlobServiceClient.from_connection_string(azurite_connection_string(azurite.url))
    blob = client.get_container_client("output").get_blob_client(name)
    return blob.download_blob().readall() if blob.exists() else None


def test_output_whose_publish_gave_up_is_published_once_blob_is_back(
    start_agent: Callable[..., tuple[Agent, object]],
    cp: ControlPlane,
    azurite: Azurite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent.runner, "PUBLISH_RETRY_S", (0.1,))
    monkeypatch.setattr(agent.owedoutput, "RETRY_S", 0.3)
    node, _ = start_agent(state_dir=tmp_path / "state")
    cp.wait_for(RegisterNode)
    wait_until(lambda: node.incarnation, what="registered")
    cp.send(run_task(50, "echo before"))
    assert cp.ended(50).exit_code == 0
    assert _blob(azurite, "50/1.1.stdout") == b"before\n"
    assert node.tasks.owed.owed() == []  # paid at its end

    azurite.stop()  # Blob does not answer
    cp.send(run_task(51, "echo owed"))
    assert cp.ended(51, timeout=60).exit_code == 0  # reported, though not published
    assert node.tasks.owed.owed() == ["51.1.1"]
    assert "51.1.1" not in node.tasks.listed  # not listed as running while owed

    azurite.start()
    wait_until(lambda: node.tasks.owed.owed() == [], timeout=60, what="the owed output paid")
    assert _blob(azurite, "51/1.1.stdout") == b"owed\n"
    assert not list((tmp_path / "scratch").rglob("51/*"))  # the scratch copy removed
