"""Queued work that defers its boots for nodes that running work likely frees
(shared/domain/deferral.py): the rule on the cluster's tasks as a table, then through the
control plane's timer run (real SQLite store, the local provider whose "VMs" run no agent
here: an AgentDouble plays the one that joined), on a fake clock. The forecast learns the
run times from the ends the timer reads; none is seeded."""

from __future__ import annotations

import random

import pytest

from shared.domain.cluster import Principal
from shared.domain.deferral import defer
from shared.domain.growshrink import GroupPolicy
from shared.domain.likelyends import Release
from shared.domain.models import Task
from shared.domain.states import NodeState
from shared.sim.fleet import Fleet
from shared.sim.queueview import deferred
from shared.sim.swf import SwfJob
from shared.usecases.autoscale_memory import STATE_KEY
from shared.usecases.idle_policy import MEMORY_FIELD
from tests.agent_double import AgentDouble
from tests.test_autoscale_forecast import provider  # noqa: F401 - fixture
from tests.test_autoscale_policies import AZ, control, managed
from tests.test_control import clock  # noqa: F401 - fixture

H = 3600


def task(job: int, i: int = 1, cores: int = 1, nodes: int = 1) -> Task:
    return Task(job_id=job, id=i, command="x", cores=cores, nodes=nodes, node_groups=[AZ])


@pytest.mark.parametrize(
    ("waiting", "cover", "releases", "left_out", "boots"),
    [
        # a 1-node job, a release certain to come: its task waits for it
        ([task(1)], 0, [(1, 1.0)], [(1, 1)], 1),
        ([task(1)], 1, [(1, 1.0)], [], 0),  # an idle or Starting node covers it
        ([task(1)], 0, [(1, 0.9)], [], 0),  # not likely enough for one boot
        # a 4-core node per 2 tasks of 2 cores: 3 nodes for 6 tasks; 1 deferred: the last 2
        ([task(1, i, cores=2) for i in range(1, 7)], 0, [(1, 1.0)], [(1, 5), (1, 6)], 1),
        # jobs in queue order: the first takes the release
        ([task(1), task(2)], 0, [(1, 1.0)], [(1, 1)], 1),
        # a 3-node task is one task: deferring any of its nodes leaves it out whole
        ([task(1, nodes=3)], 0, [(2, 0.99)], [(1, 1)], 2),
    ],
)
def test_the_last_tasks_of_a_deferring_job_are_left_out(waiting, cover, releases, left_out, boots):
    gp = GroupPolicy(node_cores=4 if any(t.cores == 2 for t in waiting) else 1, max_nodes=8)
    got = defer(
        waiting, AZ, gp, cover, [Release(k, n, p) for k, (n, p) in enumerate(releases)], 31.0
    )
    assert sorted(got.keys) == left_out
    assert got.boots == boots
    if left_out:
        note = got.note(AZ, 180.0)
        assert note is not None and "running work likely frees within its boot delay" in note.text


def _ann_runs(cp, clock, agent: AgentDouble, ran_s: float, jobs: int) -> None:  # noqa: F811
    """``jobs`` one-task jobs of ann (limit 1 h) that each run ``ran_s`` on the agent's node,
    a timer run after each (it reads their ends)."""
    for _ in range(jobs):
        cp.submit({"command": "x", "nodeGroups": [AZ], "runtimeLimit": H}, _ann())
        assert cp.schedule_pass() == 1
        [run] = agent.runs()
        agent.send(agent.started(run))
        clock.advance(ran_s)
        agent.send(agent.ended(run))
        clock.advance(5)
        cp.autoscale()  # it reads the end
        clock.advance(600)


def _ann() -> Principal:
    return Principal(name="ann", role="user")


def _one_node_up(cp) -> tuple[list[str], AgentDouble]:
    """AzureNodes with ``forecast:1`` (waits weigh too little for a warm pool here, so that
    what starts is the queue's), at least one node, the first started with its agent."""
    names = managed(cp, cp.deps.compute, "forecast:1")
    cp.set_group(AZ, provider="local", max_nodes=4, node_cores=1, grow_interval_s=0,
                 idle_policy="forecast:1", boot_delay_s=180, min_nodes=1)  # fmt: skip
    cp.node_action("start", names[:1])
    agent = AgentDouble(cp, names[0], cores=1, groups=(AZ,))
    assert agent.register().accepted
    return names, agent


@pytest.mark.parametrize(("ran_s", "started"), [(300, False), (3000, True)])
def test_a_queued_job_waits_for_the_node_a_running_job_likely_frees(
    tmp_path,
    clock,  # noqa: F811
    provider,  # noqa: F811
    ran_s,
    started,
):
    names, agent = _one_node_up(control(tmp_path, clock, provider))
    cp = agent.cp
    _ann_runs(cp, clock, agent, ran_s, jobs=5)
    # ann's sixth job has run 200 s when bob's job comes
    cp.submit({"command": "x", "nodeGroups": [AZ], "runtimeLimit": H}, _ann())
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    agent.send(agent.started(run))
    clock.advance(200)
    job = cp.submit({"command": "y", "nodeGroups": [AZ]})
    assert cp.schedule_pass() == 0
    cp.autoscale()
    starting = cp.store.get_node(names[1]).state is NodeState.STARTING
    reason = cp.pending_reasons(cp.list_tasks(job.id))[(job.id, 1)]
    assert starting is started, reason
    if not started:  # ann's jobs end by 300 s: bob's waits for hers (100 s), not a boot
        assert "running work likely frees within its boot delay (180 s)" in reason
        clock.advance(100)
        agent.send(agent.ended(run))
        assert cp.schedule_pass() == 1


class _Ends:
    """A forecast with fixed releases (what queueview.deferred asks of the policy)."""

    wait_weight = 31.0

    def __init__(self, releases: list[Release]) -> None:
        self.releases = releases

    def likely_ends(self, now: float) -> list[Release]:
        return self.releases

    def plan(self, now, in_use, waiting, up, deferred=0):  # pragma: no cover - not asked
        raise AssertionError


@pytest.mark.parametrize("seed", range(20))
def test_the_replay_and_the_timer_defer_the_same_boots(seed):
    # the replay's rule on whole jobs (shared/sim/queueview.py) and the timer's on their
    # tasks (shared/domain/deferral.py), one 1-core task per node: the same boots per job
    rng = random.Random(seed)
    fleet = Fleet(64, 1)
    for name in list(fleet.offline)[: rng.randrange(0, 4)]:
        fleet.start(name, 0.0, 180.0)  # Starting
    for name in list(fleet.offline)[: rng.randrange(0, 4)]:
        fleet.start(name, 0.0, 0.0)
        fleet.boot(name, 0.0)
        fleet.idle_at[name] = 0.0  # idle Online
    jobs = [
        SwfJob(i + 1, 0.0, 60.0, rng.randrange(1, 9), 600.0) for i in range(rng.randrange(1, 6))
    ]
    releases = [
        Release(k, rng.randrange(1, 6), rng.uniform(0.8, 1.0)) for k in range(rng.randrange(0, 5))
    ]
    ends = _Ends(releases)
    replay = deferred(jobs, fleet, 1, ends, 0.0)
    tasks = [task(j.id, i + 1) for j in jobs for i in range(j.procs)]
    cover = len(fleet.idle_at) + len(fleet.starting)
    timer = defer(tasks, AZ, GroupPolicy(node_cores=1, max_nodes=64), cover, releases, 31.0)
    per_job: dict[int, int] = {}
    for t in timer.tasks:
        per_job[t.job_id] = per_job.get(t.job_id, 0) + 1
    assert per_job == replay
    assert timer.boots == sum(replay.values())


def test_the_timer_learns_a_sweeps_run_times_from_its_tasks(
    tmp_path,
    clock,  # noqa: F811
    provider,  # noqa: F811
):
    # a sweep's run times are on its tasks, not its job: the timer remembers the running
    # ones and reads each once it has ended
    _, agent = _one_node_up(control(tmp_path, clock, provider))
    cp = agent.cp
    spec = {"tasks": [{"command": "x", "sweep": "1-4"}], "nodeGroups": [AZ], "runtimeLimit": H}
    job = cp.submit(spec, _ann())
    for _ in range(4):  # one task at a time on the 1-core node, 300 s each
        assert cp.schedule_pass() == 1
        [run] = agent.runs()
        agent.send(agent.started(run))
        clock.advance(5)
        cp.autoscale()  # sees it running
        clock.advance(295)
        agent.send(agent.ended(run))
        clock.advance(5)
    cp.autoscale()  # reads the last one's end
    memory = cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]
    [(user, limit, runs)] = memory["forecast"]["ends"]["same"]
    assert (user, limit) == ("ann", H) and runs == [300.0] * 4
    assert job.task_count == 4 and memory.get("running", []) == []
