"""The autoscaler policy as tables on a fake clock: state and ``now`` in, orders out."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.autoscaler import (
    AutoscalerPolicy,
    AutoscalerState,
    ClusterView,
    Decision,
    GroupPolicy,
    StartFailure,
    autoscale,
    request_stop,
)
from shared.domain.cluster import Node
from shared.domain.demand import bins_needed
from shared.domain.models import Task
from shared.domain.states import NodeState
from shared.ports.compute import ComputeError, ErrorKind, PowerState

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
AZ, ONPREM = "AzureNodes", "OnPremNodes"
ON, OFF, STARTING = NodeState.ONLINE, NodeState.OFFLINE, NodeState.STARTING


def node(name: str, state: NodeState = OFF, group: str = AZ, cores: int = 4, since=T0) -> Node:
    provider = "onprem" if group == ONPREM else "azure"
    return Node(
        name=name, groups=[group], cores=cores, state=state, provider=provider, state_time=since
    )


def tasks(n: int, cores: int = 1, groups: tuple[str, ...] = (), job: int = 1) -> list[Task]:
    return [
        Task(job_id=job, id=i + 1, command="x", cores=cores, node_groups=list(groups))
        for i in range(n)
    ]


def azure_vms(n: int, state: NodeState = OFF) -> list[Node]:
    return [node(f"az-{i}", state) for i in range(1, n + 1)]


def policy(**group_kw) -> AutoscalerPolicy:
    top = {
        k: group_kw.pop(k)
        for k in list(group_kw)
        if k
        in (
            "max_starts_per_run",
            "max_stops_per_run",
            "deployment_timeout",
            "scale_down_delay",
            "exclude_node_groups",
        )
    }
    return AutoscalerPolicy(groups={AZ: GroupPolicy(node_cores=4, **group_kw)}, **top)


def run(
    nodes,
    queued=(),
    *,
    pol=None,
    state=None,
    now=T0,
    used=None,
    power=None,
    failures=(),
    reserved=None,
) -> Decision:
    view = ClusterView(
        nodes=nodes,
        queued=list(queued),
        used_cores=used or {},
        power=power or {},
        failures=failures,
        reserved=reserved,
    )
    return autoscale(view, pol or policy(), state or AutoscalerState(), now)


def started(decision: Decision) -> list[str]:
    return [o.node for o in decision.orders if o.action == "start"]


def actions(decision: Decision) -> list[tuple[str, str]]:
    return [(o.action, o.node) for o in decision.orders]


# ------------------------------------------------------------------- grow


@pytest.mark.parametrize(
    ("cores", "node_cores", "bins"),
    [
        ([], 4, 0),
        ([1, 1, 1, 1], 4, 1),
        ([1] * 5, 4, 2),
        ([3, 3, 2, 2, 1, 1], 4, 3),  # FFD: 3+1, 3+1, 2+2
        ([2, 3, 1, 3, 2, 1], 4, 3),  # order of arrival does not matter
        ([4, 4, 4], 4, 3),
    ],
)
def test_bins_needed_is_first_fit_decreasing(cores, node_cores, bins):
    assert bins_needed(cores, node_cores) == bins


@pytest.mark.parametrize(
    ("queued", "expected"),
    [
        (tasks(1), 1),
        (tasks(4), 1),  # four 1-core tasks fit one 4-core node
        (tasks(5), 2),
        (tasks(3, cores=2), 2),
        (tasks(3, groups=(ONPREM,)), 0),  # not allowed on Azure
        (tasks(3, cores=8), 0),  # wider than any Azure node: it can never run there
        (tasks(2, groups=(ONPREM, AZ)), 1),
        (tasks(40), 5),  # all five Offline nodes, no more
    ],
)
def test_group_grows_only_by_the_nodes_its_runnable_queued_work_needs(queued, expected):
    decision = run(azure_vms(5), queued)
    assert len(started(decision)) == expected
    for order in decision.orders:
        assert "queued task" in order.reason and "AzureNodes needs" in order.reason


def test_starting_nodes_count_as_coming_capacity():
    nodes = [node("az-1", STARTING), *azure_vms(3)[1:]]
    assert started(run(nodes, tasks(4))) == []
    assert started(run(nodes, tasks(5))) == ["az-2"]


def test_hybrid_burst_fills_onprem_free_cores_before_starting_azure_nodes():
    onprem = [node("op-1", ON, ONPREM, cores=4), node("op-2", ON, ONPREM, cores=4)]
    queued = tasks(10, groups=(ONPREM, AZ))
    # op-1 has 2 cores busy: 6 free on-prem cores take 6 tasks; 4 overflow to one Azure node.
    decision = run([*onprem, *azure_vms(3)], queued, used={"op-1": 2})
    assert started(decision) == ["az-1"]
    # Enough free on-prem cores: no Azure node at all.
    assert started(run([*onprem, *azure_vms(3)], tasks(8, groups=(ONPREM, AZ)))) == []


def test_onprem_only_job_never_starts_azure_nodes_even_when_onprem_is_full():
    onprem = [node("op-1", ON, ONPREM, cores=2)]
    decision = run([*onprem, *azure_vms(2)], tasks(6, groups=(ONPREM,)), used={"op-1": 2})
    assert started(decision) == []


@pytest.mark.parametrize(
    ("group_kw", "queued", "expected"),
    [
        ({"grow_threshold": 5}, tasks(4), 0),
        ({"grow_threshold": 5}, tasks(5), 2),
        ({"tasks_per_resource_unit": 2}, tasks(8), 1),  # 8 tasks count as 4 cores
        ({"extra_nodes_grow_ratio": 50}, tasks(8), 3),  # 2 nodes + 50% -> 3
        ({"grow_by_min": True}, [*tasks(8, job=1), *tasks(8, job=2)], 1),  # one task per job
        ({"max_nodes": 2}, tasks(40), 2),
        ({"max_starts_per_run": 3}, tasks(40), 3),
        ({"exclude_node_groups": frozenset({AZ})}, tasks(40), 0),
    ],
)
def test_autogrowshrink_parameters(group_kw, queued, expected):
    assert len(started(run(azure_vms(6), queued, pol=policy(**group_kw)))) == expected


def test_a_grow_reason_names_extra_nodes_grow_ratios_share():
    """An admin saw 3 nodes start where the note said the tasks need 2."""
    [first, *_] = run(azure_vms(6), tasks(8), pol=policy(extra_nodes_grow_ratio=50)).orders
    assert first.reason.endswith(
        "AzureNodes needs 3 nodes of 4 cores (1 of them ExtraNodesGrowRatio's 50%)"
    )
    [plain, *_] = run(azure_vms(6), tasks(8), pol=policy()).orders
    assert plain.reason.endswith("AzureNodes needs 2 nodes of 4 cores")


def test_a_grow_reason_names_the_settings_that_packed_the_tasks():
    """An admin probe: "2 queued tasks ... AzureNodes needs 1 node of 2 cores" of two 2-core
    tasks, with no word of TasksPerResourceUnit."""
    pol = policy(tasks_per_resource_unit=2)
    [order] = run(azure_vms(6), tasks(2, cores=4), pol=pol).orders
    assert order.reason.endswith(
        "AzureNodes needs 1 node of 4 cores (TasksPerResourceUnit 2: a node per that many)"
    )
    [order] = run(azure_vms(6), tasks(8), pol=policy(grow_by_min=True)).orders
    assert order.reason.endswith("needs 1 node of 4 cores (GrowByMin: one task per job)")


def test_a_task_allowed_on_two_managed_groups_grows_only_one():
    pol = AutoscalerPolicy(groups={AZ: GroupPolicy(4), "AzureHPC": GroupPolicy(4)})
    nodes = [*azure_vms(2), node("hpc-1", group="AzureHPC")]
    d = run(nodes, tasks(3, groups=(AZ, "AzureHPC")), pol=pol)
    assert [(o.node, o.group) for o in d.orders] == [("hpc-1", "AzureHPC")]


def test_max_nodes_counts_nodes_already_running():
    nodes = [node("az-1", ON), node("az-2", STARTING), *azure_vms(5)[2:]]
    decision = run(nodes, tasks(40), pol=policy(max_nodes=3), used={"az-1": 4})
    assert started(decision) == ["az-3"]
    assert any("maxNodes 3" in str(n) for n in decision.notes)


def test_growth_is_considered_once_per_grow_interval():
    pol = policy(grow_interval=MIN)
    first = run(azure_vms(4), tasks(4), pol=pol)
    assert started(first) == ["az-1"]
    # The start failed silently (node still Offline); within the interval nothing new starts.
    again = run(azure_vms(4), tasks(4), pol=pol, state=first.state, now=T0 + 30 * S)
    assert started(again) == []
    later = run(azure_vms(4), tasks(4), pol=pol, state=first.state, now=T0 + MIN)
    assert started(later) == ["az-1"]


def test_a_quiet_grow_check_leaves_the_next_run_due():
    """A check that found no queued work does not start the interval: the first work after a
    quiet spell is grown for at the next run (HPC Pack waits up to a whole GrowInterval)."""
    pol = policy(grow_interval=5 * MIN)
    quiet = run(azure_vms(4), [], pol=pol)
    assert started(quiet) == [] and quiet.state.groups[AZ].quiet
    first = run(azure_vms(4), tasks(2), pol=pol, state=quiet.state, now=T0 + 10 * S)
    assert started(first) == ["az-1"] and not first.state.groups[AZ].quiet
    # growth goes on at most once an interval from the check that grew
    up = [node("az-1", STARTING), *azure_vms(4)[1:]]
    again = run(up, tasks(8), pol=pol, state=first.state, now=T0 + 4 * MIN)
    assert started(again) == []
    later = run(up, tasks(8), pol=pol, state=first.state, now=T0 + 10 * S + 5 * MIN)
    assert started(later) == ["az-2"]


def test_min_nodes_are_kept_started_without_queued_work():
    decision = run(azure_vms(3), [], pol=policy(min_nodes=2))
    assert started(decision) == ["az-1", "az-2"]
    assert all("minNodes 2" in o.reason for o in decision.orders)


# ----------------------------------------------------------------- shrink


def test_idle_node_stops_after_shrink_idle_times_shrink_intervals():
    pol = policy(shrink_interval=MIN, shrink_idle_times=3, scale_down_delay=timedelta(0))
    nodes = [node("az-1", ON)]
    state = AutoscalerState()
    for minute in range(3):  # first seen idle at T0; not yet 3 minutes
        d = run(nodes, pol=pol, state=state, now=T0 + minute * MIN)
        assert d.orders == []
        state = d.state
    d = run(nodes, pol=pol, state=state, now=T0 + 3 * MIN)
    assert actions(d) == [("stop", "az-1")]
    assert "idle for 180 s" in d.orders[0].reason


def test_a_node_that_just_joined_gets_the_whole_idle_time_before_it_can_stop():
    pol = policy(shrink_interval=MIN, shrink_idle_times=5, scale_down_delay=0 * S)
    d = run(azure_vms(1), tasks(1), pol=pol)
    assert started(d) == ["az-1"]
    # The task it was started for went elsewhere; it joins idle 4 minutes later.
    joined = [node("az-1", ON, since=T0 + 4 * MIN)]
    d = run(joined, pol=pol, state=d.state, now=T0 + 4 * MIN)
    d = run(joined, pol=pol, state=d.state, now=T0 + 8 * MIN)
    assert d.orders == []
    d = run(joined, pol=pol, state=d.state, now=T0 + 9 * MIN)
    assert actions(d) == [("stop", "az-1")]


def test_work_resets_idle_time():
    pol = policy(shrink_interval=MIN, shrink_idle_times=2, scale_down_delay=timedelta(0))
    nodes = [node("az-1", ON)]
    d = run(nodes, pol=pol, now=T0)
    d = run(nodes, pol=pol, state=d.state, now=T0 + MIN, used={"az-1": 1})  # busy
    d = run(nodes, pol=pol, state=d.state, now=T0 + 2 * MIN)  # idle again from here
    assert d.orders == []
    d = run(nodes, pol=pol, state=d.state, now=T0 + 3 * MIN)
    assert d.orders == []
    d = run(nodes, pol=pol, state=d.state, now=T0 + 4 * MIN)
    assert actions(d) == [("stop", "az-1")]


def test_node_with_running_tasks_is_never_stopped():
    pol = policy(shrink_interval=MIN, scale_down_delay=timedelta(0))
    nodes = [node("az-1", ON)]
    state = AutoscalerState()
    for hour in range(5):
        d = run(nodes, pol=pol, state=state, now=T0 + hour * 60 * MIN, used={"az-1": 1})
        assert d.orders == []
        state = d.state


def test_idle_node_that_queued_work_will_use_is_not_stopped():
    pol = policy(shrink_interval=MIN, scale_down_delay=timedelta(0))
    nodes = [node("az-1", ON)]
    d = run(nodes, pol=pol, now=T0)
    d = run(nodes, tasks(1), pol=pol, state=d.state, now=T0 + 60 * MIN)
    assert d.orders == []


def test_stop_requested_while_tasks_run_drains_first_then_stops_when_empty():
    busy = node("az-1", ON)
    order = request_stop(busy, used_cores=2, reason="admin asked")
    assert (order.action, order.node) == ("drain", "az-1") and "tasks still run" in order.reason
    assert request_stop(busy, used_cores=0, reason="admin asked").action == "stop"
    draining = node("az-1", NodeState.DRAINING)
    assert run([draining], used={"az-1": 1}).orders == []
    d = run([draining], used={})
    assert actions(d) == [("stop", "az-1")] and "drained" in d.orders[0].reason


def test_no_scale_down_soon_after_a_scale_up():
    pol = policy(shrink_interval=MIN, shrink_idle_times=1, scale_down_delay=10 * MIN)
    grown = run([node("az-1", ON), *azure_vms(3)[1:]], tasks(4), pol=pol, used={"az-1": 4})
    assert started(grown) == ["az-2"]
    # az-1's tasks ended, nothing queued: it is idle, but the group just grew.
    nodes = [node("az-1", ON), node("az-2", ON), node("az-3")]
    d = run(nodes, pol=pol, state=grown.state, now=T0 + 5 * MIN)
    d = run(nodes, pol=pol, state=d.state, now=T0 + 9 * MIN)
    assert d.orders == [] and any("scale-up" in str(n) for n in d.notes)
    d = run(nodes, pol=pol, state=d.state, now=T0 + 10 * MIN)
    assert sorted(actions(d)) == [("stop", "az-1"), ("stop", "az-2")]


@pytest.mark.parametrize(
    ("group_delay", "stops_at_min"),
    [(None, 10), (timedelta(0), 6), (3 * MIN, 6), (20 * MIN, 20)],  # None: the policy's 10
)
def test_a_groups_own_scale_down_delay_overrides_the_clusters(group_delay, stops_at_min):
    pol = policy(shrink_interval=MIN, shrink_idle_times=1, scale_down_delay=10 * MIN)
    gp = replace(pol.groups[AZ], scale_down_delay=group_delay)
    pol = replace(pol, groups={AZ: gp})
    grown = run([node("az-1", ON), *azure_vms(2)[1:]], tasks(5), pol=pol, used={"az-1": 4})
    assert started(grown) == ["az-2"]
    nodes = [node("az-1", ON), node("az-2", ON)]
    d = run(nodes, pol=pol, state=grown.state, now=T0 + 5 * MIN)  # both seen idle
    stops = None
    for minute in range(6, 22):
        d = run(nodes, pol=pol, state=d.state, now=T0 + minute * MIN)
        if d.orders:
            stops = minute
            break
    assert stops == stops_at_min


@pytest.mark.parametrize(
    ("states", "used", "stops_left", "stops", "noted"),
    [
        ((ON, ON, ON), {}, 10, ["az-1", "az-2"], False),  # idle: stop now, not after 3 min
        ((ON, ON, ON), {"az-1": 1}, 10, ["az-2", "az-3"], False),  # the busy one is kept
        ((ON, ON, ON), {"az-1": 1, "az-2": 4}, 10, ["az-3"], False),  # az-1 drains
        ((ON, STARTING, OFF), {}, 10, ["az-2"], False),  # a Starting node stops first
        ((ON, NodeState.DRAINING, OFF), {"az-2": 1}, 10, [], False),  # already going
        ((ON, ON, ON), {}, 1, ["az-1"], True),  # the stop rate limit holds
        ((ON, OFF, OFF), {}, 10, [], False),  # at max: the idle time decides, as always
    ],
)
def test_nodes_up_beyond_a_lowered_max_stop_once_idle(states, used, stops_left, stops, noted):
    pol = policy(max_nodes=1, shrink_idle_times=3, max_stops_per_run=stops_left)
    nodes = [node(f"az-{i}", state) for i, state in enumerate(states, 1)]
    d = run(nodes, tasks(1), pol=pol, used=used)  # queued work does not keep them either
    assert [n for a, n in actions(d) if a == "stop"] == stops
    assert all("above its maxNodes 1" in o.reason for o in d.orders)
    assert any("more stop once idle" in str(n) for n in d.notes) == noted


@pytest.mark.parametrize(
    ("used", "stops_left", "orders"),
    [
        # all busy: the least busy drain (no new task), the busiest keeps running
        ({"az-1": 4, "az-2": 1, "az-3": 2}, 10, [("drain", "az-2"), ("drain", "az-3")]),
        # one idle stops, the least busy other drains
        ({"az-1": 4, "az-3": 2}, 10, [("stop", "az-2"), ("drain", "az-3")]),
        # idle ones held back by the stop rate limit stop next run: no busy node drains
        ({"az-1": 4}, 1, [("stop", "az-2")]),
    ],
)
def test_busy_nodes_beyond_a_lowered_max_drain_least_busy_first(used, stops_left, orders):
    pol = policy(max_nodes=1, max_stops_per_run=stops_left)
    nodes = [node(f"az-{i}", ON) for i in (1, 2, 3)]
    d = run(nodes, tasks(40), pol=pol, used=used)  # queued work keeps none of them
    assert actions(d) == orders
    assert all("above its maxNodes 1" in o.reason for o in d.orders)


@pytest.mark.parametrize(
    ("states", "used", "stops_left", "orders", "noted"),
    [
        # the reviewer's case: the new VMs stop, the warm busy nodes keep their work
        ((ON, ON, STARTING, STARTING), {"az-1": 4, "az-2": 4}, 10,
         [("stop", "az-3"), ("stop", "az-4")], False),
        # Starting first, then idle Online; the busiest node is kept
        ((ON, ON, STARTING, ON), {"az-1": 4}, 10, [("stop", "az-3"), ("stop", "az-2")], False),
        # still over after Starting and idle ones: the least busy drains
        ((ON, ON, ON, STARTING), {"az-1": 4, "az-2": 1, "az-3": 2}, 10,
         [("stop", "az-4"), ("drain", "az-2")], False),
        # the stop rate limit holds: the Starting node held back stops next run, nothing drains
        ((ON, ON, STARTING, STARTING), {"az-1": 4, "az-2": 4}, 1, [("stop", "az-3")], True),
        # at max: a Starting node is kept
        ((ON, STARTING, OFF, OFF), {"az-1": 4}, 10, [], False),
    ],
)  # fmt: skip
def test_starting_nodes_beyond_a_lowered_max_stop_before_online_ones(
    states, used, stops_left, orders, noted
):
    pol = policy(max_nodes=2, max_stops_per_run=stops_left)
    nodes = [node(f"az-{i}", state) for i, state in enumerate(states, 1)]
    d = run(nodes, tasks(8), pol=pol, used=used)  # queued work keeps none of them
    assert actions(d) == orders
    assert all("above its maxNodes 2" in o.reason for o in d.orders)
    assert any("more stop once idle" in str(n) for n in d.notes) == noted


def test_the_newest_starting_node_stops_first_for_a_lowered_max():
    pol = policy(max_nodes=1)
    nodes = [node("az-1", STARTING, since=T0 - MIN), node("az-2", STARTING, since=T0 - 5 * MIN)]
    d = run(nodes, pol=pol, now=T0 + S)
    assert actions(d) == [("stop", "az-1")]  # az-2 is nearer to joining
    assert d.state.nodes["az-1"].start_ordered_at is None  # it is no failed start


def test_starting_nodes_stopped_for_a_lowered_max_back_nothing_off():
    pol = policy(max_nodes=0)
    d = run([node("az-1", STARTING)], pol=pol, now=T0 + S)
    assert actions(d) == [("stop", "az-1")]
    assert d.state.groups[AZ].backoff_until is None


def test_nodes_drained_for_a_lowered_max_stop_once_empty_at_the_stop_rate_limit():
    pol = policy(max_nodes=1, max_stops_per_run=1)
    nodes = [node("az-1", ON), *(node(f"az-{i}", NodeState.DRAINING) for i in (2, 3))]
    d = run(nodes, tasks(40), pol=pol, used={"az-1": 4, "az-3": 1})
    assert actions(d) == [("stop", "az-2")]  # az-3 still runs a task
    d = run(nodes, tasks(40), pol=pol, used={"az-1": 4})
    assert actions(d) == [("stop", "az-2")]  # one stop per run: az-3 next time


def test_a_node_that_never_joined_stays_failed_once_deallocated():
    pol = policy(deployment_timeout=45 * S)
    d = run([node("az-1", STARTING)], pol=pol, now=T0 + 50 * S)
    [stop] = d.orders
    assert stop.action == "stop" and stop.reason.startswith("failed: its agent did not join")
    stopping = node("az-1", NodeState.STOPPING)
    stopping.state_reason = stop.reason
    d = run([stopping], pol=pol, power={"az-1": PowerState.DEALLOCATED})
    assert [(o.action, o.reason) for o in d.orders] == [
        ("offline", "failed: its agent did not join within the deployment timeout (45 s); "
         "deallocated")
    ]  # fmt: skip


def test_min_nodes_are_not_stopped_however_idle():
    pol = policy(min_nodes=1, shrink_interval=MIN, shrink_idle_times=1, scale_down_delay=0 * S)
    nodes = [node("az-1", ON), node("az-2", ON)]
    d = run(nodes, pol=pol, now=T0)
    d = run(nodes, pol=pol, state=d.state, now=T0 + 5 * MIN)
    assert actions(d) == [("stop", "az-1")]


def test_on_prem_nodes_are_never_stopped():
    pol = policy(shrink_interval=MIN, shrink_idle_times=1, scale_down_delay=0 * S)
    nodes = [node("op-1", ON, ONPREM)]
    d = run(nodes, pol=pol, now=T0)
    assert run(nodes, pol=pol, state=d.state, now=T0 + 60 * MIN).orders == []


# ------------------------------------------------ failures, timeouts, eviction


def quota(node_name: str = "az-1", retry_after=None) -> StartFailure:
    return StartFailure(AZ, node_name, "QuotaExceeded: cores quota used up", retry_after)


def test_failed_start_backs_off_the_group_and_doubles_only_after_expiry():
    pol = policy(grow_interval=0 * S)
    nodes = azure_vms(3)
    d = run(nodes, tasks(4), pol=pol, failures=[quota()])
    assert started(d) == [] and any("QuotaExceeded" in str(n) for n in d.notes)
    assert d.state.groups[AZ].backoff == MIN
    # A second failure while backing off does not double it.
    d = run(nodes, tasks(4), pol=pol, state=d.state, now=T0 + 30 * S, failures=[quota("az-2")])
    assert d.state.groups[AZ].backoff == MIN and d.state.groups[AZ].backoff_until == T0 + MIN
    # Expired: growth resumes.
    d = run(nodes, tasks(4), pol=pol, state=d.state, now=T0 + MIN)
    assert started(d) == ["az-1"]
    # It fails again after the backoff expired: doubled.
    d = run(nodes, tasks(4), pol=pol, state=d.state, now=T0 + 2 * MIN, failures=[quota()])
    assert d.state.groups[AZ].backoff == 2 * MIN and started(d) == []
    assert d.state.groups[AZ].backoff_until == T0 + 4 * MIN


def test_backoff_is_capped():
    pol = replace(policy(grow_interval=0 * S), backoff_max=3 * MIN)
    state, now = AutoscalerState(), T0
    for _ in range(6):
        d = run(azure_vms(1), tasks(1), pol=pol, state=state, now=now, failures=[quota()])
        state = d.state
        now = state.groups[AZ].backoff_until or now
    assert state.groups[AZ].backoff == 3 * MIN


def test_a_provider_error_value_becomes_a_start_failure():
    error = ComputeError(ErrorKind.THROTTLED, "slow down", "az-1", retry_after_s=90)
    failure = StartFailure.from_error(AZ, "az-1", error)
    assert failure.retry_after == 90 * S and "Throttled: slow down" in failure.reason
    quota_error = ComputeError(ErrorKind.QUOTA_EXCEEDED, "cores quota used up", "az-1")
    d = run(azure_vms(2), tasks(1), failures=[StartFailure.from_error(AZ, "az-1", quota_error)])
    assert started(d) == [] and "QuotaExceeded" in (d.state.groups[AZ].last_failure or "")


def test_retry_after_extends_the_backoff():
    failure = StartFailure(AZ, "az-1", "Throttled", retry_after=5 * MIN)
    d = run(azure_vms(2), tasks(1), failures=[failure])
    assert d.state.groups[AZ].backoff_until == T0 + 5 * MIN


def test_node_that_joins_resets_the_backoff():
    d = run(azure_vms(2), tasks(1), pol=policy(grow_interval=0 * S))
    assert started(d) == ["az-1"]
    d = run([node("az-1", STARTING), node("az-2")], state=d.state, now=T0 + S, failures=[quota()])
    assert d.state.groups[AZ].backoff == MIN
    d = run([node("az-1", ON), node("az-2")], state=d.state, now=T0 + 2 * S, used={"az-1": 1})
    assert d.state.groups[AZ].backoff is None


def test_node_that_never_joins_is_stopped_after_the_deployment_timeout():
    pol = policy(deployment_timeout=10 * MIN, grow_interval=0 * S)
    d = run(azure_vms(2), tasks(1), pol=pol)
    assert started(d) == ["az-1"]
    nodes = [node("az-1", STARTING), node("az-2")]
    d = run(nodes, tasks(1), pol=pol, state=d.state, now=T0 + 9 * MIN)
    assert d.orders == []  # still booting, and it counts as capacity for the queued task
    d = run(nodes, tasks(1), pol=pol, state=d.state, now=T0 + 10 * MIN)
    # this VM's fault: the group does not back off while it has VMs no start failed on, and
    # a replacement starts at once (an admin probe: the group's growth waited 2 min)
    assert actions(d) == [("stop", "az-1"), ("start", "az-2")]
    assert "did not join within the deployment timeout" in d.orders[0].reason
    assert d.state.groups[AZ].backoff_until is None
    # the group's last untried VM never joins either (a bad image?): the group backs off
    nodes = [node("az-1"), node("az-2", STARTING, since=T0 + 10 * MIN)]
    d = run(nodes, tasks(1), pol=pol, state=d.state, now=T0 + 20 * MIN)
    assert actions(d) == [("stop", "az-2")]
    assert d.state.groups[AZ].backoff_until == T0 + 21 * MIN  # no replacement right away


def test_an_admins_start_after_a_refused_one_gets_its_whole_deployment_timeout():
    """A probe: the quota refused the autoscaler's start of az-1; raised, an admin started
    az-1 a minute later, and it was stopped within seconds as "did not join within the
    deployment timeout", timed from the refused start (and blamed for the group's back-off)."""
    pol = policy(deployment_timeout=30 * S, grow_interval=0 * S)
    d = run(azure_vms(1), tasks(1), pol=pol)
    assert started(d) == ["az-1"] and d.state.nodes["az-1"].start_ordered_at == T0
    d = run(azure_vms(1), pol=pol, state=d.state, now=T0 + S, failures=[quota()])
    assert d.state.nodes["az-1"].start_ordered_at is None  # that start is over
    admin = T0 + MIN  # hpc node start: Starting from then
    booting = [node("az-1", STARTING, since=admin)]
    d = run(booting, pol=pol, state=d.state, now=admin + 5 * S)
    assert d.orders == []
    d = run(booting, pol=pol, state=d.state, now=admin + 30 * S)
    assert actions(d) == [("stop", "az-1")]  # its own timeout, from the admin's start
    stale = AutoscalerState(nodes={"az-1": replace(d.state.nodes["az-1"], start_ordered_at=T0)})
    d = run(booting, pol=pol, state=stale, now=admin + 5 * S)  # an order kept from before
    assert d.orders == []


def test_a_group_run_by_hand_still_gets_its_vms_repaired_but_never_grown_or_shrunk():
    """A probe: with a group's autoscale off, an admin's stopped VM stayed Drained (and
    billing), a VM that never joined stayed Starting, and a finished stop stayed Stopping.
    Autoscale off means no growing or shrinking; the admin's own orders and the VM facts are
    still seen to."""
    pol = policy(
        deployment_timeout=30 * S, grow_interval=0 * S, exclude_node_groups=frozenset({AZ})
    )
    nodes = [
        node("az-1", NodeState.DRAINING),  # hpc node stop while tasks ran; they have ended
        node("az-2", STARTING),  # hpc node start; its agent never joins
        node("az-3", NodeState.STOPPING),
        node("az-4", ON),  # idle for ever: not the autoscaler's to stop
        node("az-5"),
    ]
    power = {"az-3": PowerState.DEALLOCATED, "az-4": PowerState.RUNNING}
    d = run(nodes, tasks(8), pol=pol, power=power, now=T0 + HOUR)
    assert sorted(actions(d)) == [("offline", "az-3"), ("stop", "az-1"), ("stop", "az-2")]
    assert not started(d)  # 8 tasks queued, 4 cores up: the admin starts what runs them


def test_a_never_joined_vms_replacement_starts_in_that_run_whatever_grow_interval():
    """A third probe: deployment timeout 25 s, GrowInterval longer; the run that stopped the
    VM that never joined started no healthy one until the next grow check."""
    pol = policy(deployment_timeout=30 * S, grow_interval=10 * MIN)
    d = run(azure_vms(3), tasks(1), pol=pol)
    assert started(d) == ["az-1"]
    stuck = [node("az-1", STARTING), *azure_vms(3)[1:]]
    d = run(stuck, tasks(1), pol=pol, state=d.state, now=T0 + 30 * S)
    assert actions(d) == [("stop", "az-1"), ("start", "az-2")]
    assert d.state.groups[AZ].backoff_until is None


def test_a_vm_that_never_joined_is_started_last_until_it_joins():
    """A probe: az-1 never joined; after each back-off the autoscaler started az-1 again
    while the healthy az-2..4 stayed off, and the job never ran."""
    pol = policy(deployment_timeout=30 * S, grow_interval=0 * S)
    d = run(azure_vms(4), tasks(1), pol=pol)
    assert started(d) == ["az-1"]
    stuck = [node("az-1", STARTING), *azure_vms(4)[1:]]
    d = run(stuck, tasks(1), pol=pol, state=d.state, now=T0 + 30 * S)
    assert actions(d) == [("stop", "az-1"), ("start", "az-2")]  # a healthy one, at once
    later = T0 + 10 * MIN
    d = run(azure_vms(4), tasks(16), pol=pol, state=d.state, now=later + S)
    assert started(d) == ["az-2", "az-3", "az-4", "az-1"]  # all needed: it goes last
    joined = [node("az-1", ON), *azure_vms(4)[1:]]
    d = run(joined, pol=pol, state=d.state, now=later + 2 * S, used={"az-1": 1})
    assert d.state.nodes["az-1"].failed_at is None  # it joined: not put aside any more


def test_an_admins_drain_keeps_its_vm_up_and_a_stops_drain_deallocates_it():
    """A probe: `hpc node drain` of a VM deallocated it once empty (Slurm's DRAIN and the
    README keep it up, held); `hpc node stop` of a busy VM drains it, then stops it."""
    held = node("az-1", NodeState.DRAINING)
    held.held = "drain"
    d = run([held, node("az-2", NodeState.DRAINING)])
    assert actions(d) == [("stop", "az-2")]


def test_an_evicted_node_is_offline_at_once_and_replaced_by_another_without_back_off():
    """A Spot eviction is no failed deployment: a probe's eviction backed the whole group
    off (60 s, then 120 s), and its requeued tasks waited while regular VMs sat Offline.
    The evicted VM is started last, as one that never joined."""
    pol = policy(grow_interval=0 * S)
    nodes = [node("az-1", ON), node("az-2")]
    power = {"az-1": PowerState.DEALLOCATED, "az-2": PowerState.DEALLOCATED}
    d = run(nodes, tasks(1), pol=pol, power=power, used={"az-1": 1})
    # replaced in the same run, by another VM
    assert actions(d) == [("offline", "az-1"), ("start", "az-2")]
    assert "evicted" in d.orders[0].reason
    assert AZ not in d.state.groups or d.state.groups[AZ].backoff_until is None
    nodes = [node("az-1"), node("az-2")]
    d = run(nodes, tasks(8), pol=pol, state=d.state, now=T0 + 2 * S, power=power)
    assert started(d) == ["az-2", "az-1"]  # the evicted one last


@pytest.mark.parametrize(
    ("memories", "order"),
    [
        ({}, ["az-1", "az-2", "az-3"]),
        # a probe: az-1 never joined, az-2 was evicted later: az-2 had run, so it goes first
        ({"az-1": (0, False), "az-2": (5, True)}, ["az-3", "az-2", "az-1"]),
        ({"az-1": (5, False), "az-2": (0, False)}, ["az-3", "az-2", "az-1"]),  # oldest first
        ({"az-1": (5, True), "az-2": (0, True)}, ["az-3", "az-2", "az-1"]),
    ],
)
def test_healthy_nodes_first_then_evicted_then_never_joined(memories, order):
    from shared.domain.growshrink import NodeMemory, healthy_first

    memory = {
        name: NodeMemory(failed_at=T0 + at * S, evicted=evicted)
        for name, (at, evicted) in memories.items()
    }
    assert [n.name for n in healthy_first(azure_vms(3), memory)] == order


def test_an_evicted_vm_is_started_before_one_that_never_joined():
    pol = policy(grow_interval=0 * S, deployment_timeout=60 * S)
    d = run([node("az-1", STARTING), node("az-2", ON), node("az-3")], pol=pol, now=T0 + 61 * S,
            power={"az-2": PowerState.DEALLOCATED}, used={"az-2": 1})  # fmt: skip
    assert ("stop", "az-1") in actions(d) and ("offline", "az-2") in actions(d)
    nodes = [node("az-1"), node("az-2"), node("az-3", ON)]
    d = run(nodes, tasks(12), pol=pol, state=d.state, now=T0 + 200 * S, used={"az-3": 4})
    assert started(d)[:2] == ["az-2", "az-1"]  # the one that had run, then the broken one


def test_a_finished_stop_marks_the_node_offline_without_backing_off():
    d = run([node("az-1", NodeState.STOPPING)], power={"az-1": PowerState.DEALLOCATED})
    assert actions(d) == [("offline", "az-1")] and "stop is done" in d.orders[0].reason
    assert AZ not in d.state.groups or d.state.groups[AZ].backoff_until is None


def test_a_starting_node_is_not_judged_by_a_vm_list_that_lags():
    d = run([node("az-1", STARTING)], power={"az-1": PowerState.DEALLOCATED})
    assert d.orders == []


def test_vm_running_behind_an_offline_node_is_stopped_after_the_deployment_timeout():
    """Not at once: a control plane restarted boots its local VMs again, and their agents
    register within seconds (shared.domain.strayvms). A fault probe saw it ordered stopped
    every run before they did (and the stop did nothing: a VM left on would bill forever)."""
    pol = policy(deployment_timeout=10 * MIN)
    on = {"az-1": PowerState.RUNNING}
    d = run([node("az-1")], pol=pol, power=on)
    assert actions(d) == [] and d.state.nodes["az-1"].on_offline_since == T0
    d = run([node("az-1")], pol=pol, state=d.state, now=T0 + 10 * MIN - S, power=on)
    assert actions(d) == []
    d = run([node("az-1")], pol=pol, state=d.state, now=T0 + 10 * MIN, power=on)
    assert actions(d) == [("stop", "az-1")]
    assert "run for 600 s while its node is Offline" in d.orders[0].reason
    assert d.state.nodes["az-1"].on_offline_since == T0  # until it is off (or joins)


def test_a_vm_behind_an_offline_node_whose_agent_joins_is_not_stopped():
    pol = policy(deployment_timeout=10 * MIN)
    on = {"az-1": PowerState.RUNNING}
    d = run([node("az-1")], pol=pol, power=on)
    d = run(
        [node("az-1", ON)], pol=pol, state=d.state, now=T0 + 5 * MIN, power=on, used={"az-1": 1}
    )
    assert d.state.nodes["az-1"].on_offline_since is None  # it joined: forgotten
    d = run([node("az-1")], pol=pol, state=d.state, now=T0 + 11 * MIN, power=on)
    assert actions(d) == [] and d.state.nodes["az-1"].on_offline_since == T0 + 11 * MIN
    off = {"az-1": PowerState.DEALLOCATED}
    d = run([node("az-1")], pol=pol, state=d.state, now=T0 + 12 * MIN, power=off)
    assert d.state.nodes["az-1"].on_offline_since is None


# ------------------------------------------------------------------ state


def test_state_survives_a_json_round_trip_through_the_store():
    d = run(azure_vms(3), tasks(4), failures=[quota("az-3")])
    d = run([node("az-1", ON)], state=d.state, now=T0 + 2 * MIN)
    text = json.dumps(d.state.to_dict())
    assert AutoscalerState.from_dict(json.loads(text)) == d.state


def test_decisions_do_not_depend_on_module_memory():
    first = run(azure_vms(2), tasks(1))
    second = run(azure_vms(2), tasks(1))
    assert first == second
