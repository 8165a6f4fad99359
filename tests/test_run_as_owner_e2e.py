"""Per-user execution through the control plane: a job submitted by an API user runs, on an
agent with --run-as-owner, as the OS user of that name; the owner travels in the assignment.

The real control plane's use cases, store and bus, and a real agent (in a thread of this
root test process) whose tasks run as ``nobody``; the test applies the agent's events as the
Functions host would. Skipped, saying so, where it is not root.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import Agent, AgentConfig
from shared.domain.cluster import Principal
from shared.domain.messages import EVENT, EVENTS_QUEUE
from shared.domain.states import TaskState
from shared.usecases.control_plane import ControlPlane
from tests.test_control import make_cp
from tests.test_run_as_owner import as_root


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ControlPlane, Callable[[Callable[[], Any]], Any]]]:
    """A control plane with one registered agent running tasks as their owners, and
    ``settle(condition)``, which applies the agent's events until ``condition()`` holds."""
    cp = make_cp(tmp_path, lambda: datetime.now(UTC))
    config = AgentConfig(
        name="onprem-1",
        cores=2,
        poll_ms=20,
        heartbeat_interval_s=30.0,
        run_as_owner=True,
        state_dir=tmp_path / "agent",
    )
    agent = Agent(config, bus=cp.bus, output=cp.output)
    thread = threading.Thread(target=agent.run, name="agent", daemon=True)
    thread.start()
    events = cp.bus.get_receiver(EVENTS_QUEUE)

    def settle(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
        deadline = datetime.now(UTC).timestamp() + timeout
        while not (result := condition()):
            assert datetime.now(UTC).timestamp() < deadline, "the cluster did not get there"
            batch = events.receive(max_messages=100, max_wait_ms=50)
            if batch:
                cp.apply_events([EVENT.validate_json(m.body) for m in batch])
                for m in batch:
                    events.complete(m)
        return result

    settle(lambda: any(n["incarnation"] for n in cp.list_nodes()))
    yield cp, settle
    agent.stop()
    thread.join(timeout=10)
    events.close()


@as_root
def test_a_job_of_the_api_user_nobody_runs_as_nobody(
    cluster: tuple[ControlPlane, Callable[[Callable[[], Any]], Any]],
) -> None:
    cp, settle = cluster
    [node] = cp.list_nodes()
    assert node["agentProtocol"] >= 4
    assert node["runsAsOwner"] is True  # shown with the node: tasks here run as their owners
    nobody, root = Principal(name="nobody", role="user"), Principal(name="root", role="admin")
    ok = cp.submit({"command": "id -un", "workDir": "/tmp"}, nobody)
    refused = cp.submit({"command": "id -un", "workDir": "/tmp", "maxRetries": 0}, root)
    cp.schedule_pass()

    def ended(job: int) -> Any:
        task = cp.get_task(job, 1)
        return task if task.state in (TaskState.FINISHED, TaskState.FAILED) else None

    done = settle(lambda: ended(ok.id))
    assert (cp.get_job(ok.id).owner, done.state, done.output) == (
        "nobody",
        TaskState.FINISHED,
        "nobody\n",
    )
    failed = settle(lambda: ended(refused.id))
    assert failed.state is TaskState.FAILED and failed.exit_code is None
    assert failed.error.startswith("the job's owner 'root' is uid 0 (root) on node onprem-1")
