"""The ``forecast`` idle policy run by the cluster's timer, on a fake clock.

The control plane is real (SQLite store and bus, the local provider whose "VMs" run no agent
here: an AgentDouble plays each one's agent). Each run tells the group's policy the jobs
submitted since the last run with their owners and the group's jobs that ended since, and
stores its learnt state; the test keeps one ForecastPool, as the simulator does, told the
same jobs at their store times: the stored state is that object's, bit for bit, also
across a restart of the control plane (a new one over the same store).
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.domain.cluster import Principal
from shared.domain.forecastpool import ForecastPool
from shared.domain.states import NodeState
from shared.usecases import idle_policy
from shared.usecases.autoscale_log import read_log
from shared.usecases.autoscale_memory import STATE_KEY
from shared.usecases.idle_policy import MEMORY_FIELD
from tests.agent_double import AgentDouble
from tests.test_autoscale_policies import AZ, START, control, managed
from tests.test_control import clock  # noqa: F401 - fixture

ANN, BOB = Principal(name="ann", role="user"), Principal(name="bob", role="user")


@pytest.fixture
def provider(tmp_path):
    p = LocalProvider(tmp_path / "vms")
    yield p
    p.close()


class Twin:
    """The simulator's way: one ForecastPool kept, told each job at its store times."""

    def __init__(self, cp) -> None:
        self.cp = cp
        self.pool = ForecastPool(180.0, 4)

    def submitted(self, job_id: int) -> None:
        job = self.cp.store.get_job(job_id)
        self.pool.arrived(job.submit_time.timestamp(), 1, job.owner)

    def ended(self, job_id: int) -> None:
        job = self.cp.store.get_job(job_id)
        self.pool.ended(job.end_time.timestamp(), 0, job.owner)

    def run(self, cp, clock) -> None:  # noqa: F811
        """An autoscaler run now; the twin plans at the same time (its blend is cached then)."""
        cp.autoscale()
        self.pool.plan(clock.now.timestamp(), 0, 0, 0)

    def assert_stored(self, cp) -> None:
        stored = cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]["forecast"]
        assert stored == json.loads(json.dumps(self.pool.to_dict()))


def _memory(cp) -> dict:
    return cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]


def _joined(cp, clock) -> AgentDouble:  # noqa: F811
    started = min((n for n in cp.list_nodes() if n["state"] == "Starting"), key=lambda n: n["name"])
    clock.advance(30)
    agent = AgentDouble(cp, started["name"], cores=1, groups=(AZ,))
    assert agent.register().accepted
    return agent


def test_the_timer_tells_forecast_the_owners_submits_and_ends_as_the_simulator(
    tmp_path,
    clock,  # noqa: F811
    provider,
):
    cp = control(tmp_path, clock, provider)
    twin = Twin(cp)
    managed(cp, provider, "forecast")  # its first run counts no job
    twin.pool.plan(clock.now.timestamp(), 0, 0, 0)
    twin.assert_stored(cp)
    clock.advance(1)
    cp.submit({"command": "x", "nodeGroups": [AZ]}, ANN)  # job 1
    twin.submitted(1)
    clock.advance(1)
    twin.run(cp, clock)  # a node starts for it; job 1 is watched
    assert _memory(cp)["watch"] == [1]
    twin.assert_stored(cp)
    agent = _joined(cp, clock)
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    agent.send(agent.started(run))
    clock.advance(40)
    agent.send(agent.ended(run))  # job 1 ends between two runs
    twin.ended(1)
    clock.advance(5)
    cp.submit({"command": "y", "nodeGroups": [AZ]}, BOB)  # job 2, canceled before the run
    twin.submitted(2)
    assert cp.schedule_pass() == 1
    clock.advance(5)
    cp.cancel_job(2, by="bob")
    agent.run_all()  # its agent ends it at once
    twin.ended(2)
    clock.advance(10)
    twin.run(cp, clock)
    twin.assert_stored(cp)  # ann's end, then bob's submit and end, in time order
    assert _memory(cp)["watch"] == []
    assert set(twin.pool.widths.activity) == {"ann", "bob"}
    clock.advance(60)
    twin.run(cp, clock)  # nothing new: nothing told twice
    twin.assert_stored(cp)
    # the log says the plan in the policy's words, in jobs (value's unit)
    [kept] = [e for e in read_log(cp.deps, group=AZ) if e["action"] == "keep"]
    assert re.fullmatch(
        r"kept 1 idle node: warm pool for the [0-9.]+ jobs expected within 180 s \(forecast\)",
        kept["reason"],
    )
    assert cp.store.get_node(agent.name).state is NodeState.ONLINE

    again = control(tmp_path, clock, provider)  # a restarted control plane: a new Deps
    clock.now = START + timedelta(hours=1)
    twin.run(again, clock)
    twin.assert_stored(again)  # the memory reloaded from the store plans on as the twin
    cp.submit({"command": "z", "nodeGroups": [AZ]}, ANN)
    twin.submitted(3)
    clock.advance(30)
    twin.run(again, clock)
    twin.assert_stored(again)


def test_a_long_job_beyond_the_pages_of_new_jobs_is_read_once_for_its_end(
    tmp_path,
    clock,  # noqa: F811
    provider,
    monkeypatch,
):
    cp = control(tmp_path, clock, provider)
    twin = Twin(cp)
    managed(cp, provider, "forecast:20")
    twin.pool = ForecastPool(180.0, 4, 20.0)
    twin.pool.plan(clock.now.timestamp(), 0, 0, 0)
    monkeypatch.setattr(idle_policy, "JOB_PAGE", 1)  # a page holds the newest job alone
    cp.submit({"command": "long", "nodeGroups": [AZ]}, ANN)
    twin.submitted(1)
    clock.advance(1)
    twin.run(cp, clock)
    agent = _joined(cp, clock)
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    agent.send(agent.started(run))
    clock.advance(30)
    twin.run(cp, clock)
    assert _memory(cp)["watch"] == [1]
    for job_id in (2, 3):  # jobs canceled while queued, counted: the newest are these
        clock.advance(10)
        cp.submit({"command": "q", "nodeGroups": [AZ]}, BOB)
        twin.submitted(job_id)
        clock.advance(1)
        cp.cancel_job(job_id, by="bob")
        twin.ended(job_id)
    clock.advance(10)
    twin.run(cp, clock)
    clock.advance(600)
    agent.send(agent.ended(run))
    twin.ended(1)
    reads: list[int] = []
    real = cp.store.get_job
    monkeypatch.setattr(cp.store, "get_job", lambda i: reads.append(i) or real(i))
    clock.advance(20)
    cp.autoscale()
    twin.pool.plan(clock.now.timestamp(), 0, 0, 0)
    assert reads == [1]  # job 1 was in no page read: one read of it, for its end
    twin.assert_stored(cp)
    assert _memory(cp)["watch"] == []
    reads.clear()
    clock.advance(60)
    cp.autoscale()
    assert reads == []


@pytest.mark.parametrize(
    "away", [{"idle_policy": "fixed"}, {"idle_policy": "value:30"}, {"autoscale": False}]
)
def test_what_forecast_learnt_is_kept_while_its_group_runs_without_it(
    tmp_path,
    clock,  # noqa: F811
    provider,
    away,
):
    """A probe: a group switched to another policy (or its autoscale off) for one run, then
    back, had lost its weeks of learnt rates and users' widths (the run without it wrote its
    memory without them)."""
    cp = control(tmp_path, clock, provider)
    managed(cp, provider, "forecast")
    for owner in (ANN, BOB, ANN):
        clock.advance(5)
        cp.submit({"command": "x", "nodeGroups": [AZ]}, owner)
    clock.advance(5)
    cp.autoscale()
    learnt = _memory(cp)["forecast"]
    assert set(learnt["widths"]["users"]) == {"ann", "bob"}
    cp.set_group(AZ, **away)
    clock.advance(5)
    cp.autoscale()
    back = {"idle_policy": "forecast", "autoscale": True}
    cp.set_group(AZ, **back)
    stored = cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]
    assert stored["forecast"]["widths"]["users"] == learnt["widths"]["users"]
    assert stored["forecast"]["rates"] == learnt["rates"]
    clock.advance(5)
    cp.autoscale()  # and it plans on from it
    assert set(_memory(cp)["forecast"]["widths"]["users"]) == {"ann", "bob"}
