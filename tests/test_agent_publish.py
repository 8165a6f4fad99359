"""Ended tasks' output is published off the agent's loop (agent/publisher.py).

Found by a live probe on Blob output (Azurite): 80 tasks ended together, their uploads in the
agent's loop took longer than the lifeline's fence, the fence killed the node's other tasks,
and 23 tasks that had run to their end ran again. Here the agent's loop must go on
heartbeating while an upload is slow, list the ended attempt as running until its end is
reported, and report the end (with its output) once the upload is done.

The slow upload is a stand-in, said so: :class:`SlowOutput` is the real local output store
whose ``publish`` waits on an event, as a hung Blob request would. Azurite answers in
milliseconds and cannot be made to hang on demand; what is tested is the agent's loop.
"""

# ruff: noqa: F811 - pytest fixtures imported from tests/agent_fixtures.py

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agent import Agent, AgentConfig
from agent import runner as runner_module
from agent.publisher import Publisher
from agent.runner import Runner
from shared.adapters.local_output import LocalOutputStore
from shared.domain.messages import Heartbeat, RegisterNode, TaskEnded
from tests.agent_fixtures import NODE, bus, cp, run_task  # noqa: F401 - fixtures
from tests.helpers import wait_until


class SlowOutput(LocalOutputStore):
    """The local store, but remote as Blob is, and each publish waits until released."""

    remote = True

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()
        self.published: list[tuple[int, int, int]] = []

    def publish(self, job_id: int, task_id: int, *, attempt: int = 0, final: bool = False) -> None:
        assert self.release.wait(timeout=30), "the test never released the upload"
        super().publish(job_id, task_id, attempt=attempt, final=final)
        self.published.append((job_id, task_id, attempt))


def test_a_slow_upload_holds_up_neither_heartbeats_nor_the_fence_and_the_end_waits_for_it(
    bus, cp, tmp_path
):
    output = SlowOutput(tmp_path / "output")
    config = AgentConfig(
        name=NODE,
        cores=4,
        heartbeat_interval_s=0.2,
        fence_s=1.0,
        poll_ms=20,
        state_dir=tmp_path / "agent",
    )
    agent = Agent(config, bus=bus, output=output)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        cp.wait_for(RegisterNode)
        wait_until(lambda: agent.incarnation, what="registered")
        me = agent.incarnation
        cp.send(run_task(1, "echo done", incarnation=me), run_task(2, "sleep 30", incarnation=me))
        key = "1.1.1"
        # task 1 ended; its upload hangs: heartbeats go on (3 s, three fences' worth) and
        # still list it, so the control plane neither gives it up nor waits on a dead node
        wait_until(lambda: key in agent.tasks.publisher.in_flight(), what="task 1 publishing")
        beats = len(cp.of(Heartbeat))
        wait_until(lambda: len(cp.of(Heartbeat)) >= beats + 10, timeout=10, what="heartbeats")
        assert all(key in h.running for h in cp.of(Heartbeat)[beats:])
        assert [e for e in cp.of(TaskEnded) if e.job_id == 1] == []  # not before its output
        assert agent.tasks.fenced is False and agent.incarnation == me  # task 2 lives on
        assert len(cp.of(RegisterNode)) == 1
        output.release.set()
        end = cp.wait_for(TaskEnded, lambda e: e.job_id == 1)
        assert (end.exit_code, end.output) == (0, "done\n")
        assert output.published == [(1, 1, 1)]
        assert output.read(1, 1, "stdout", attempt=1) == b"done\n"
        cp.wait_for(Heartbeat, lambda h: key not in h.running and h.incarnation == me)
    finally:
        output.release.set()
        agent.stop()
        thread.join(timeout=10)


def test_an_inline_publisher_reports_at_once_and_settle_waits_for_the_slow():
    said: list[str] = []
    inline = Publisher(inline=True)
    inline.publish("1.1.0", lambda: None, lambda: said.append("1"))
    assert said == ["1"] and inline.in_flight() == []
    gate = threading.Event()
    pool = Publisher(inline=False)
    pool.publish("2.1.0", lambda: gate.wait(5) and None, lambda: said.append("2"))
    assert pool.settle() == 1 and said == ["1"] and pool.in_flight() == ["2.1.0"]
    gate.set()
    assert pool.settle(wait_s=5) == 0 and said == ["1", "2"] and pool.in_flight() == []
    pool.close()


class FlakyOutput(LocalOutputStore):
    """The local store, but remote as Blob is, and its first ``fails`` publishes fail."""

    remote = True

    def __init__(self, root: Path, fails: int) -> None:
        super().__init__(root)
        self.fails, self.tries, self.done = fails, 0, False

    def publish(self, job_id: int, task_id: int, *, attempt: int = 0, final: bool = False) -> None:
        self.tries += 1
        if self.tries <= self.fails:
            raise OSError("the storage account is not answering")
        super().publish(job_id, task_id, attempt=attempt, final=final)
        self.done = True


@pytest.mark.parametrize(("fails", "tries", "published"), [(2, 3, True), (5, 3, False)])
def test_a_failed_upload_is_tried_again_before_it_is_given_up(
    tmp_path, monkeypatch, fails, tries, published
):
    """A helper found a failed upload never tried again: the output stayed on the node."""
    monkeypatch.setattr(runner_module, "PUBLISH_RETRY_S", (0.01, 0.02))
    output = FlakyOutput(tmp_path / "output", fails)
    runner = Runner(run_task(1, "echo hi"), output=output, env=dict(os.environ))
    assert runner.start() is None
    wait_until(lambda: runner.poll() is not None, what="the task's end")
    runner.finish()
    assert (output.tries, output.done) == (tries, published)
