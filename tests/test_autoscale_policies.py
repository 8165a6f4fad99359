"""The autoscaler's timer runs the node groups' idle policies (``idlePolicy``), on a fake clock.

The control plane is real (SQLite store and bus, the local provider whose "VMs" run no
agent here: an AgentDouble plays each one's agent). ``keep`` keeps the nodes a finished job
released while its forecast expects work within one boot delay (180 s here) and stops them
once the forecast has decayed; ``fixed`` is the group's ShrinkIdleTimes x ShrinkInterval as
before; the forecast survives a restart; bad text is refused by the API and the CLI.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.domain.autoscaler import Decision, Order
from shared.domain.cluster import Node
from shared.domain.growshrink import AutoscalerState, GroupPolicy
from shared.domain.idleplan import (
    Attribution,
    GroupPlan,
    Load,
    attribution,
    explain,
    group_load,
    idle_vms,
    overflow,
    pool_bound,
    run_policy,
)
from shared.domain.models import Task
from shared.domain.policymemory import Forecast, PolicyMemory
from shared.domain.states import NodeState, TaskState
from shared.domain.warmpool import Plan
from shared.errors import InvalidRequest
from shared.usecases import idle_policy
from shared.usecases.autoscale_log import read_log
from shared.usecases.autoscale_memory import STATE_KEY
from shared.usecases.control_plane import ControlPlane
from shared.usecases.idle_policy import MEMORY_FIELD
from tests.agent_double import AgentDouble
from tests.app_fixtures import served_app
from tests.cli_fixtures import assert_one_error_line, hpc
from tests.test_control import clock, make_cp  # noqa: F401 - fixture

AZ = "AzureNodes"
START = datetime(2026, 1, 1, tzinfo=UTC)
"""The fake clock's start (tests/test_control.py's Clock)."""
FORMS = "keep[:SECONDS], anticipate[:SECONDS]"
DECAYED_S = 3600 * math.log(10)
"""When one 1-node arrival's pool (2 x rate x 180 s, rate 1/3600 s decaying with 1 h) falls
under a hundredth of a node: ~8,289 s."""


@pytest.fixture
def provider(tmp_path):
    p = LocalProvider(tmp_path / "vms")
    yield p
    p.close()


def control(tmp_path, clock, provider) -> ControlPlane:  # noqa: F811
    cp = make_cp(tmp_path, clock)
    cp.deps.compute = provider
    cp.settings.scale_down_delay_s = 0  # as the simulator: the policy alone decides stops
    return cp


def managed(cp: ControlPlane, provider: LocalProvider, policy: str) -> list[str]:
    """AzureNodes with two 1-core Offline nodes whose "VMs" boot without an agent."""
    cp.set_group(AZ, provider="local", max_nodes=4, node_cores=1, grow_interval_s=0,
                 idle_policy=policy, boot_delay_s=180)  # fmt: skip
    names = [n.name for n in cp.add_nodes(AZ, 2)]
    provider.faults.never_joins.update(names)
    cp.autoscale()  # the creates are done: the VMs are deallocated, the nodes Offline
    assert {cp.store.get_node(n).state for n in names} == {NodeState.OFFLINE}
    return names


def run_one_job(cp: ControlPlane, clock) -> AgentDouble:  # noqa: F811
    """A one-task job for AzureNodes: the autoscaler starts a node, it joins, runs the task,
    and the task ends; the node is Online and idle."""
    cp.submit({"command": "x", "nodeGroups": [AZ]})
    clock.advance(1)
    cp.autoscale()
    [started] = [n for n in cp.list_nodes() if n["state"] == "Starting"]
    clock.advance(30)
    agent = AgentDouble(cp, started["name"], cores=1, groups=(AZ,))
    assert agent.register().accepted
    assert cp.schedule_pass() == 1
    assert len(agent.run_all()) == 1
    return agent


def state(cp: ControlPlane, name: str) -> NodeState:
    return cp.store.get_node(name).state


def at(cp: ControlPlane, clock, seconds: float) -> None:  # noqa: F811
    """An autoscaler run ``seconds`` after the fake clock's start."""
    clock.now = START + timedelta(seconds=seconds)
    cp.autoscale()


# --------------------------------------------------------------- on a fake clock


@pytest.fixture
def kept(tmp_path, clock, provider):  # noqa: F811
    """A `keep` group whose one job ran on a node the autoscaler started: (cp, its agent)."""
    cp = control(tmp_path, clock, provider)
    managed(cp, provider, "keep")
    return cp, run_one_job(cp, clock)


def test_keep_holds_released_nodes_while_arrivals_are_expected_and_stops_them_after(
    kept,
    clock,  # noqa: F811
):
    cp, agent = kept
    node = agent.name
    for t in (120, 600, 3600, DECAYED_S - 300):  # fixed (180 s idle) would have stopped it
        at(cp, clock, t)
        assert state(cp, node) is NodeState.ONLINE, t
    log = read_log(cp.deps, group=AZ)
    [kept] = [e for e in log if e["action"] == "keep"]
    assert kept["reason"] == (
        "kept 1 idle node: warm pool for the 0.048 nodes expected within 180 s (keep)"  # 2 min on
    )
    at(cp, clock, DECAYED_S + 60)
    assert state(cp, node) is NodeState.STOPPING
    [stop] = [e for e in read_log(cp.deps, group=AZ) if e["action"] == "stop"]
    assert stop["node"] == node
    assert stop["reason"].startswith("stopped: idle for ")
    assert (
        "beyond the warm pool (keep: 0 in use + 0 for queued work + a warm pool of 0"
        in (stop["reason"])
    )


def test_keep_lets_the_next_job_run_on_the_kept_node_without_a_start(
    kept,
    clock,  # noqa: F811
):
    cp, agent = kept
    at(cp, clock, 900)
    cp.submit({"command": "y", "nodeGroups": [AZ]})
    assert cp.schedule_pass() == 1  # the kept node takes it at once: no boot to wait for
    assert [r.job_id for r in agent.runs()] == [2]
    at(cp, clock, 960)
    assert [e["action"] for e in read_log(cp.deps, group=AZ)].count("start") == 1


def test_a_measured_boot_is_logged_beside_the_groups_boot_delay(kept):
    cp, _ = kept  # its node started at +1 s and joined 30 s later
    cp.autoscale()
    [booted] = [e for e in read_log(cp.deps, group=AZ) if e["action"] == "booted"]
    assert booted["reason"] == (
        "Starting -> Online in 30 s (its idle policy plans with a boot delay of 180 s: "
        "hpc nodegroup set AzureNodes --boot-delay S)"
    )


@pytest.mark.parametrize(
    ("took", "said"), [(0.04, "0.0"), (1.44, "1.4"), (9.94, "9.9"), (10.0, "10"), (30.4, "30")]
)
def test_a_boot_of_seconds_is_not_read_as_none(took: float, said: str) -> None:
    assert idle_policy._seconds(took) == said  # hpc up's local VMs join in about 1.5 s


def test_a_job_about_to_take_an_idle_vm_is_the_groups_demand(
    kept,
    clock,  # noqa: F811
):
    """As the replay counts it (docs/simulator.md): before, a queued task that fit on an idle
    VM at the timer's run (the scheduler's pass not yet run) counted toward no group, so its
    submit was never told to the policy, and its VM counted as the warm pool."""
    cp, _ = kept
    at(cp, clock, 900)
    before = cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]["rate"]
    cp.submit({"command": "y", "nodeGroups": [AZ]})
    at(cp, clock, 901)  # before the scheduler's pass: the task still queued
    after = cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]["rate"]
    assert after > 1.5 * before  # one more arrival (1/3600 a second), not only 1 s of decay


def test_fixed_runs_as_before_and_reads_no_jobs(tmp_path, clock, provider, monkeypatch):  # noqa: F811
    cp = control(tmp_path, clock, provider)
    managed(cp, provider, "fixed")  # ShrinkIdleTimes 3 x ShrinkInterval 60 s (the defaults)
    reads: list[object] = []
    real = cp.store.list_jobs
    monkeypatch.setattr(cp.store, "list_jobs", lambda **kw: reads.append(kw) or real(**kw))
    agent = run_one_job(cp, clock)
    at(cp, clock, 60)  # first seen idle
    for t in (120, 180):
        at(cp, clock, t)
        assert state(cp, agent.name) is NodeState.ONLINE, t
    at(cp, clock, 240)
    assert state(cp, agent.name) is NodeState.STOPPING
    [stop] = [e for e in read_log(cp.deps, group=AZ) if e["action"] == "stop"]
    assert stop["reason"] == (
        "idle for 180 s (ShrinkIdleTimes 3 x ShrinkInterval 60 s) and no queued task can run on it"
    )
    assert not [e for e in read_log(cp.deps) if e["action"] == "keep"]
    assert reads == []  # a fixed group costs the timer no read of jobs
    assert MEMORY_FIELD not in cp.store.get_meta(STATE_KEY).data


def test_the_forecast_survives_a_restart_of_the_control_plane(
    kept,
    tmp_path,
    clock,  # noqa: F811
    provider,
):
    cp, agent = kept
    at(cp, clock, 120)
    memory = cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]
    assert memory["lastJob"] == 1 and memory["groups"][AZ]["rate"] == pytest.approx(1 / 3600)

    again = control(tmp_path, clock, provider)  # a new Deps over the same store
    at(again, clock, 3600)  # a fresh forecast would expect nothing and stop the node
    assert state(again, agent.name) is NodeState.ONLINE
    at(again, clock, DECAYED_S + 60)
    assert state(again, agent.name) is NodeState.STOPPING


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"idle_policy": "lazy"}, f"idlePolicy must be fixed, fixed:SECONDS, {FORMS}"),
        ({"idle_policy": "keep:x"}, "'x' is not whole seconds"),
        ({"idle_policy": "ski"}, "runs in the simulator only"),
        ({"boot_delay_s": 0}, "bootDelayS must be more than 0"),
    ],
)
def test_bad_idle_policy_settings_are_refused_saying_what_to_fix(
    tmp_path,
    clock,  # noqa: F811
    settings,
    message,
):
    cp = make_cp(tmp_path, clock)
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        cp.set_group(AZ, **settings)
    assert cp.store.list_groups()[0].idle_policy == "fixed"  # nothing was stored


@pytest.mark.parametrize(
    ("idle_policy", "group_delay", "stopped_at_240"),
    [
        ("fixed:0", None, True),  # the plan decides: no delay on top of it
        ("fixed:0", 600, False),  # unless the group sets its own
        ("fixed", 0, True),
        ("fixed", None, False),  # plain fixed: the cluster's HPC_SCALE_DOWN_DELAY_S, as before
    ],
)
def test_the_clusters_scale_down_delay_holds_only_groups_without_an_idle_policy(
    tmp_path,
    clock,  # noqa: F811
    provider,
    idle_policy,
    group_delay,
    stopped_at_240,
):
    cp = control(tmp_path, clock, provider)
    cp.settings.scale_down_delay_s = 600
    managed(cp, provider, idle_policy)
    cp.set_group(AZ, scale_down_delay_s=group_delay, shrink_interval_s=1, shrink_idle_times=1)
    node = run_one_job(cp, clock).name  # the group grew at +1 s; the node is idle at +31 s
    gone = (NodeState.STOPPING, NodeState.OFFLINE)
    at(cp, clock, 120)
    at(cp, clock, 240)
    assert (state(cp, node) in gone) is stopped_at_240
    at(cp, clock, 700)
    assert state(cp, node) in gone


def test_a_task_two_policy_groups_may_run_raises_one_floor_not_both(
    tmp_path,
    clock,  # noqa: F811
    provider,
):
    cp = control(tmp_path, clock, provider)
    for group in ("AzureA", "AzureB"):
        cp.create_group(group, provider="local", max_nodes=4, node_cores=1, grow_interval_s=0,
                     idle_policy="keep", boot_delay_s=180)  # fmt: skip
        provider.faults.never_joins.update(n.name for n in cp.add_nodes(group, 4))
    cp.autoscale()
    cp.submit({"command": "x", "sweep": {"start": 1, "end": 3}})  # may run anywhere
    clock.advance(1)
    cp.autoscale()
    starting = sorted(n["groups"][0] for n in cp.list_nodes() if n["state"] == "Starting")
    assert starting == ["AzureA"] * 3  # before: 3 more in AzureB, for the same 3 tasks


def test_work_the_on_prem_nodes_take_keeps_no_azure_node_warm(
    tmp_path,
    clock,  # noqa: F811
    provider,
):
    cp = control(tmp_path, clock, provider)
    managed(cp, provider, "value")
    onprem = AgentDouble(cp, "onprem1", cores=4)
    assert onprem.register().accepted
    cp.autoscale()  # the first run counts no job: it starts from the newest
    for _ in range(6):  # a burst the value pool would start for, were it Azure's demand
        cp.submit({"command": "x", "nodeGroups": ["OnPremNodes", AZ]})
        assert cp.schedule_pass() == 1
        clock.advance(20)
        cp.autoscale()
        onprem.run_all()
    assert {n["state"] for n in cp.list_nodes() if n["groups"] == [AZ]} == {"Offline"}
    memory = cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]
    assert memory["rate"] == 0.0
    cp.submit({"command": "y", "nodeGroups": [AZ]})  # Azure's own work still counts
    clock.advance(1)
    cp.autoscale()
    assert cp.store.get_meta(STATE_KEY).data[MEMORY_FIELD]["groups"][AZ]["rate"] > 0


# ------------------------------------------------------------------- pure parts


def node(name: str, state: NodeState, groups=(AZ,), cores: int = 1) -> Node:
    return Node(name=name, state=state, groups=list(groups), cores=cores)


def test_the_queue_overflows_what_online_nodes_can_take_on_prem_first():
    nodes = [
        node("onprem", NodeState.ONLINE, ("OnPremNodes",), cores=2),
        node("az1", NodeState.ONLINE),
        node("az2", NodeState.STARTING),
    ]
    tasks = [Task(job_id=1, id=k, command="x", node_groups=["OnPremNodes", AZ]) for k in (1, 2, 3)]
    tasks.append(Task(job_id=2, id=1, command="x", node_groups=[AZ]))
    left = overflow(tasks, nodes, {}, managed={"az1", "az2"})
    # on-prem takes two, az1 the third; job 2's task fits nowhere Online (az2 is Starting)
    assert [(t.job_id, t.id) for t in left] == [(2, 1)]


def test_queued_work_that_would_take_an_idle_vm_waits_for_its_group():
    nodes = [
        node("onprem", NodeState.ONLINE, ("OnPremNodes",), cores=2),
        node("az1", NodeState.ONLINE),
        node("az2", NodeState.ONLINE, cores=2),
    ]
    used = {"az2": 1}  # az1 idle (the warm pool), az2 busy with a free core
    managed = {"az1", "az2"}
    pools = idle_vms(nodes, used, [AZ])
    assert pools == {AZ: {"az1"}}
    tasks = [Task(job_id=1, id=k, command="x", node_groups=["OnPremNodes", AZ]) for k in (1, 2)]
    tasks += [Task(job_id=j, id=1, command="x", node_groups=[AZ]) for j in (2, 3)]

    def place(pool=()):
        return overflow(tasks, nodes, used, managed, pool=pool)

    # on-prem takes job 1; job 2's task takes az2's free core (a busy VM's: no node of the
    # group needed); job 3's would take the idle az1: it waits for the group
    assert place() == [] and pool_bound(tasks, place(), pools, place) == {(3, 1): AZ}


def test_work_an_idle_vm_would_take_waits_for_that_vms_group_not_the_first_by_name():
    """A review: a task two managed groups may run, bound for B's idle VM, raised A's floor
    (the first group by name) and was told to A's forecast as A's submit."""
    nodes = [node("a1", NodeState.ONLINE, ("AzureA",)), node("b1", NodeState.ONLINE, ("AzureB",))]
    used = {"a1": 1}
    tasks = [Task(job_id=1, id=1, command="x", node_groups=["AzureA", "AzureB"])]

    def place(pool=()):
        return overflow(tasks, nodes, used, {"a1", "b1"}, pool=pool)

    pools = idle_vms(nodes, used, ["AzureA", "AzureB"])
    assert pools == {"AzureB": {"b1"}}
    bound = pool_bound(tasks, place(), pools, place)
    assert bound == {(1, 1): "AzureB"}
    groups = {"AzureA": GroupPolicy(node_cores=1), "AzureB": GroupPolicy(node_cores=1)}
    where = attribution(tasks, tasks, nodes, groups, bound=bound)
    assert where.of(tasks, "AzureB") == tasks and where.of(tasks, "AzureA") == []


def _attribution() -> Attribution:
    nodes = [
        node("onprem", NodeState.ONLINE, ("OnPremNodes",), cores=2),
        node("a1", NodeState.ONLINE, ("AzureA",)),
        node("b1", NodeState.ONLINE, ("AzureB",)),
    ]
    groups = {"AzureA": GroupPolicy(node_cores=1), "AzureB": GroupPolicy(node_cores=4)}
    queued = [Task(job_id=9, id=1, command="x"), Task(job_id=9, id=2, command="x", cores=2)]
    return attribution(queued, queued[1:], nodes, groups)  # 9.1 fits on-prem, 9.2 overflows


@pytest.mark.parametrize(
    ("task", "group"),
    [
        (Task(job_id=1, id=1, command="x", state=TaskState.RUNNING, node="a1"), "AzureA"),
        (Task(job_id=1, id=2, command="x", state=TaskState.FINISHED, node="b1"), "AzureB"),
        (Task(job_id=1, id=3, command="x", state=TaskState.RUNNING, node="onprem"), None),
        (Task(job_id=9, id=1, command="x"), None),  # fits on an Online node now
        (Task(job_id=9, id=2, command="x", cores=2), "AzureB"),  # overflows; too wide for A
        (Task(job_id=5, id=1, command="x"), "AzureA"),  # a stand-in: the first it may run on
        (Task(job_id=5, id=2, command="x", node_groups=["AzureB"]), "AzureB"),
        (Task(job_id=5, id=3, command="x", node_groups=["OnPremNodes"]), None),
    ],
)
def test_a_tasks_demand_counts_toward_the_group_it_ran_on_or_overflows_to(task, group):
    assert _attribution().group(task) == group


@pytest.mark.parametrize(
    ("states", "used", "expected"),
    [
        ([NodeState.ONLINE, NodeState.ONLINE], {"n0": 1}, Load(1, 0, 2, 0)),
        ([NodeState.STARTING, NodeState.OFFLINE], {}, Load(0, 0, 1, 0)),
        ([NodeState.DRAINING, NodeState.STOPPING], {"n0": 1}, Load(1, 0, 1, 1)),
    ],
)
def test_a_groups_load_counts_what_the_simulator_counts(states, used, expected):
    members = [node(f"n{i}", s) for i, s in enumerate(states)]
    assert group_load(members, used, [], AZ, GroupPolicy(node_cores=1)) == expected


def test_a_plan_sets_the_floor_and_idle_time_for_one_run_never_below_the_groups_min():
    gp = GroupPolicy(node_cores=1, min_nodes=1, max_nodes=4, shrink_idle_times=3)
    plan = GroupPlan("keep:30", Plan(min_nodes=3, idle_s=30), Load(1, 1, 3, 1), 0.6, 180)
    ran = run_policy(gp, plan)
    assert (ran.min_nodes, ran.idle.total_seconds()) == (4, 30)  # 3 + the leaving one, max 4
    low = GroupPlan("keep", Plan(min_nodes=0, idle_s=0), Load(0, 0, 0, 0), 0.0, 180)
    assert run_policy(gp, low).min_nodes == 1


def test_reasons_are_said_in_the_policys_words_for_its_group_only():
    plan = GroupPlan("anticipate", Plan(min_nodes=2, idle_s=0), Load(0, 0, 1, 0), 1.2, 180)
    idle = "idle for 0 s (ShrinkIdleTimes 0 x ShrinkInterval 1 s) and no queued task can run on it"
    orders = [
        Order("start", "az2", AZ, f"{AZ} is below its minNodes 2"),
        Order("start", "az3", AZ, "3 queued tasks of job 1 overflow ..."),
        Order("stop", "az1", AZ, idle),
        Order("stop", "az4", AZ, "drained: its last task ended"),
        Order("stop", "gpu1", "Gpu", idle),
    ]
    members = {AZ: [node("az1", NodeState.ONLINE), node("az5", NodeState.ONLINE)]}
    said, kept = explain(Decision(orders, AutoscalerState(), []), {AZ: plan}, members, {}, {AZ: 2})
    why = "anticipate: 0 in use + 0 for queued work + a warm pool of 2 for the 1.2 nodes expected within 180 s"
    assert [o.reason for o in said.orders] == [
        f"started for the warm pool ({why})",
        "3 queued tasks of job 1 overflow ...",
        f"stopped: idle for 0 s, beyond the warm pool ({why})",
        "drained: its last task ended",
        idle,
    ]
    assert kept == {AZ: 1}  # az5 is idle and not stopped; az1 is stopped


def test_an_idle_vm_queued_work_will_take_is_not_said_kept_for_the_pool():
    """A review: the "kept N idle nodes: warm pool" entry counted an idle VM that a queued
    task is bound for (it counts as queued work since the timer counts as the replay)."""
    members = {AZ: [node("az1", NodeState.ONLINE), node("az2", NodeState.ONLINE)]}
    for waiting, pool, kept in ((1, 1, 1), (2, 1, 0), (0, 2, 2)):
        load = Load(0, waiting, 2, 0)  # 2 idle VMs up, the queue bound for `waiting` of them
        plan = GroupPlan("value", Plan(min_nodes=waiting + pool, idle_s=0), load, 1.0, 180)
        _, said = explain(Decision([], AutoscalerState(), []), {AZ: plan}, members, {}, {})
        assert said == {AZ: kept}, (waiting, pool)


@pytest.mark.parametrize(
    ("load", "queue_starts", "purposes"),
    [
        # a run between grow checks: only the floor starts, for the 3 waiting first
        (Load(0, 3, 0, 0), 0, ["queued work"] * 3 + ["the warm pool"]),
        # the grow rule started 2 for the queue: the floor's are the pool's
        (Load(0, 2, 0, 0), 2, ["the warm pool"] * 2),
        # one of the 2 waiting will take the idle node that is up
        (Load(1, 2, 2, 0), 0, ["queued work", "the warm pool"]),
    ],
)
def test_a_floor_start_says_whether_it_is_for_queued_work_or_the_pool(load, queue_starts, purposes):
    floor = load.in_use + load.waiting + 1  # a pool of 1
    plan = GroupPlan("value", Plan(min_nodes=floor, idle_s=0), load, 0.05, 180, "jobs")
    orders = [Order("start", f"q{k}", AZ, "queued tasks ...") for k in range(queue_starts)]
    orders += [
        Order("start", f"f{k}", AZ, f"{AZ} is below its minNodes {floor}")
        for k in range(len(purposes))
    ]
    said, _ = explain(Decision(orders, AutoscalerState(), []), {AZ: plan}, {}, {}, {AZ: floor})
    assert [o.reason for o in said.orders[queue_starts:]] == [
        f"started for {p} ({plan.why()})" for p in purposes
    ]


def test_the_memory_is_a_small_json_document():
    memory = PolicyMemory(7, {AZ: Forecast(rate=0.001, at=1.5e9, kept=2)})
    assert memory.to_dict() == {
        "lastJob": 7,
        "groups": {AZ: {"rate": 0.001, "at": 1.5e9, "kept": 2}},
    }
    assert PolicyMemory.from_dict(memory.to_dict()) == memory
    assert PolicyMemory.from_dict(None) == PolicyMemory()


# --------------------------------------------------------------- the API and CLI


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The real function_app on the local host, and a client with the admin token."""
    with served_app(tmp_path_factory.mktemp("api")) as app, app.client() as client:
        yield client, app.token


def test_the_api_sets_the_idle_policy_and_refuses_bad_text_with_422(host):
    client, _ = host
    assert client.patch(f"/api/nodegroups/{AZ}", json={"provider": "local"}).status_code == 200
    bad = client.patch(f"/api/nodegroups/{AZ}", json={"idlePolicy": "lazy"})
    assert bad.status_code == 422
    assert FORMS in bad.json()["error"] and "'lazy'" in bad.json()["error"]
    forecast = client.patch(f"/api/nodegroups/{AZ}", json={"idlePolicy": "forecast:25"})
    assert (forecast.status_code, forecast.json()["idlePolicy"]) == (200, "forecast:25")
    session = client.patch(f"/api/nodegroups/{AZ}", json={"idlePolicy": "session"})
    assert session.status_code == 422 and "simulator only" in session.json()["error"]
    good = client.patch(f"/api/nodegroups/{AZ}", json={"idlePolicy": "keep", "bootDelayS": 240})
    assert good.status_code == 200
    assert (good.json()["idlePolicy"], good.json()["bootDelayS"]) == ("keep", 240)
    listed = {g["name"]: g for g in client.get("/api/nodegroups").json()["groups"]}
    assert (listed[AZ]["idlePolicy"], listed[AZ]["scaleDownDelayS"]) == ("keep", None)
    negative = client.patch(f"/api/nodegroups/{AZ}", json={"scaleDownDelayS": -1})
    assert negative.status_code == 422
    assert negative.json()["error"] == (
        "scaleDownDelayS must be a number of seconds from 0 to 604,800 or null, got -1"
    )
    own = client.patch(f"/api/nodegroups/{AZ}", json={"scaleDownDelayS": 300})
    assert (own.status_code, own.json()["scaleDownDelayS"]) == (200, 300)
    back = client.patch(f"/api/nodegroups/{AZ}", json={"scaleDownDelayS": None})
    assert (back.status_code, back.json()["scaleDownDelayS"]) == (200, None)  # the default


def test_the_cli_sets_the_idle_policy_and_refuses_bad_text_in_one_line(host, monkeypatch):
    client, token = host
    monkeypatch.setenv("HPC_API_URL", str(client.base_url).rstrip("/"))
    monkeypatch.setenv("HPC_TOKEN", token)
    assert hpc("nodegroup", "set", AZ, "--provider", "local").exit_code == 0  # managed
    bad = hpc("nodegroup", "set", AZ, "--idle-policy", "anticipate:soon")
    assert_one_error_line(bad, "--idle-policy", FORMS, "'soon' is not whole seconds")
    assert bad.exit_code == 2
    forecast = hpc("nodegroup", "set", AZ, "--idle-policy", "forecast")
    assert forecast.exit_code == 0 and "idle policy forecast " in forecast.output
    ok = hpc("nodegroup", "set", AZ, "--idle-policy", "anticipate:30", "--boot-delay", "240")
    assert ok.exit_code == 0, ok.output
    assert "idle policy anticipate:30 (boot delay 240.0 s)" in ok.output
    listed = {g["name"]: g for g in client.get("/api/nodegroups").json()["groups"]}
    assert (listed[AZ]["idlePolicy"], listed[AZ]["bootDelayS"]) == ("anticipate:30", 240)
    delay = hpc("nodegroup", "set", AZ, "--scale-down-delay", "120", "--grow-by-min")
    assert delay.exit_code == 0
    assert "set: growByMin on, scaleDownDelayS 120 s" in delay.output  # echoed as stored
    listed = {g["name"]: g for g in client.get("/api/nodegroups").json()["groups"]}
    assert listed[AZ]["scaleDownDelayS"] == 120
    negative = hpc("nodegroup", "set", AZ, "--scale-down-delay", "-5")
    assert negative.exit_code == 2 and "Traceback" not in negative.output
