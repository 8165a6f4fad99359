"""Memory as a node filter in the autoscaler: a group grows for a task asking for memory only
if a node of it is believed to have it (its own report; never registered, what ``hpc node
add`` gave it or the group's ``nodeMemoryMb``, unless a registered node of its VM size
reported less), or their memory is unknown, when it starts one node whose agent then tells
it; a group known too small starts none, and the log says why. Pure tables on a fake clock, then the
rule through the usecase that builds the policy."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py and tests/test_burst_wide.py

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from shared.domain.cluster import NodeGroup
from shared.domain.demand import Reach, grown_for, memory_of
from shared.domain.firstfit import place_queue
from shared.domain.growshrink import (
    AutoscalerPolicy,
    GroupPolicy,
    fits_node,
    group_memory_mb,
    start_order,
)
from shared.domain.idleplan import demand, overflow, owner_group
from shared.domain.models import Task
from shared.domain.reservedhold import may_grow_for
from shared.domain.states import NodeState
from shared.usecases.autoscale import policy_of
from shared.usecases.autoscale_log import read_log
from tests.test_autoscaler import (
    AZ,
    ON,
    ONPREM,
    STARTING,
    T0,
    azure_vms,
    node,
    run,
    started,
)
from tests.test_burst_wide import provider, wide  # noqa: F401 - fixture
from tests.test_control import clock, make_cp  # noqa: F401 - fixture

G = 1024  # MB in a GB
OFF = NodeState.OFFLINE


def mem_node(name, state, group=AZ, memory_mb=None, *, registered=True, cores=4):
    n = node(name, state, group, cores=cores)
    n.memory_mb = memory_mb
    n.incarnation = 1 if registered else 0
    return n


def asks(memory_gb: int | None, n: int = 1, *, cores: int = 1, groups=(), job: int = 1):
    memory_mb = None if memory_gb is None else memory_gb * G
    return [
        Task(
            job_id=job,
            id=i + 1,
            command="x",
            cores=cores,
            node_groups=list(groups),
            min_memory_mb=memory_mb,
        )  # fmt: skip
        for i in range(n)
    ]


def pol(memory_gb: int | None, **kw) -> AutoscalerPolicy:
    memory_mb = None if memory_gb is None else memory_gb * G
    return AutoscalerPolicy(groups={AZ: GroupPolicy(node_cores=4, node_memory_mb=memory_mb, **kw)})


# ------------------------------------------------------------- the group's node memory


@pytest.mark.parametrize(
    ("setting", "nodes", "expected"),
    [
        (None, [], None),  # nothing known: unknown
        (64 * G, [], 64 * G),  # no node: what hpc node add makes
        # a node's own word beats the setting (the size of nodes added after it)
        (64 * G, [mem_node("a", ON, memory_mb=16 * G)], 16 * G),
        # ... nor for nodes added before it, never registered (a probe saw them started
        # one by one for a task none could run): unknown, the known 16 GB decides
        (
            64 * G,
            [mem_node("a", ON, memory_mb=16 * G), mem_node("b", OFF, registered=False)],
            16 * G,
        ),
        (64 * G, [mem_node("b", OFF, registered=False)], None),  # unknown: one probe tells
        # ... nor for a mute one (registered, said none): it runs no memory task
        (64 * G, [mem_node("a", ON, memory_mb=16 * G), mem_node("b", ON)], 16 * G),
        (64 * G, [mem_node("b", OFF)], None),
        (None, [mem_node("a", ON, memory_mb=16 * G), mem_node("b", ON)], 16 * G),
        (None, [mem_node("a", ON, memory_mb=16 * G)], 16 * G),
        (  # the most of its nodes, whatever their state: the grow starts those first
            None,
            [
                mem_node("a", ON, memory_mb=32 * G),
                mem_node("b", ON, memory_mb=16 * G),
                mem_node("c", STARTING, memory_mb=8 * G),
            ],
            32 * G,
        ),
        (None, [mem_node("a", ON)], None),  # registered by an agent that said no memory
        # never registered: what hpc node add gave it from the group's setting then
        (None, [mem_node("a", STARTING, memory_mb=8 * G, registered=False)], 8 * G),
        (None, [mem_node("a", ON, ONPREM, memory_mb=8 * G)], None),  # another group's node
    ],
)
def test_the_groups_node_memory_rule(setting, nodes, expected):
    assert group_memory_mb(setting, AZ, nodes) == expected


@pytest.mark.parametrize(
    ("task", "node_memory_gb", "fits"),
    [
        (asks(None)[0], 16, True),
        (asks(16)[0], 16, True),
        (asks(32)[0], 16, False),
        (asks(64)[0], None, True),  # unknown: taken as enough (a node started tells)
        (asks(None, cores=8)[0], None, False),  # cores still count
        (asks(8, cores=8)[0], 64, False),
    ],
)
def test_one_node_of_a_group_fits_a_task_by_cores_and_memory(task, node_memory_gb, fits):
    memory_mb = None if node_memory_gb is None else node_memory_gb * G
    assert fits_node(task, GroupPolicy(node_cores=4, node_memory_mb=memory_mb)) is fits


# ------------------------------------------------------------------------ grow


@pytest.mark.parametrize(
    ("node_memory_gb", "queued", "expected"),
    [
        (64, asks(64), 1),
        (128, asks(64, 8), 4),  # known big enough: bin-packed by cores and memory (2 per node)
        (16, asks(64), 0),  # known too small: never
        (16, asks(64, 3) + asks(None, job=2), 1),  # the task asking none still grows it
        (None, asks(64), 1),  # unknown: one node, whose agent tells its memory
        (None, asks(64, 8), 1),  # ... one only, however many tasks ask
        (None, asks(64, 2) + asks(None, 3, job=2), 1),  # 1 of them + 3 others: 4 cores
        (None, asks(None, 8), 2),  # no memory asked: as before
    ],
)
def test_a_group_grows_for_a_memory_task_only_if_its_nodes_may_have_it(
    node_memory_gb, queued, expected
):
    assert len(started(run(azure_vms(5), queued, pol=pol(node_memory_gb)))) == expected


def test_a_group_known_too_small_starts_none_and_the_log_says_why():
    decision = run(azure_vms(3), asks(64, 2, job=7), pol=pol(16))
    assert started(decision) == []
    [note] = decision.notes
    assert note.group == AZ and not note.grows  # the task's pending reason says it itself
    assert note.text == (
        "2 queued tasks of job 7 ask up to 64 GB memory per node; its nodes have 16 GB: "
        "none started for them (bigger VMs, an admin's: hpc nodegroup set AzureNodes --size VM "
        "--node-memory SIZE, then hpc node add --group AzureNodes)"
    )


def test_unknown_memory_starts_one_node_then_the_known_memory_stops_the_growth():
    """The loop a group of unknown node size must not run: start one node, learn from its
    registration that it has 16 GB, then start none for the 64 GB task (the log says why);
    the group's memory is the rule's, as the timer run builds it."""
    nodes = azure_vms(4)
    first = run(nodes, asks(64), pol=pol(None))
    assert started(first) == ["az-1"]
    booting = [mem_node("az-1", STARTING, registered=False), *nodes[1:]]  # its agent not up
    assert started(run(booting, asks(64), pol=pol(None), now=T0)) == []  # waits for it
    joined = [mem_node("az-1", ON, memory_mb=16 * G), *nodes[1:]]
    group = replace(pol(None).groups[AZ], node_memory_mb=group_memory_mb(None, AZ, joined))
    decision = run(joined, asks(64), pol=AutoscalerPolicy(groups={AZ: group}))
    assert started(decision) == []
    assert "its nodes have 16 GB" in decision.notes[0].text


@pytest.mark.parametrize(
    ("nodes", "queued", "expected"),
    [
        # an idle on-prem node of 16 GB cannot take a 64 GB task: it bursts (before: 0)
        ([mem_node("op", ON, ONPREM, 16 * G)], asks(64), 1),
        ([mem_node("op", ON, ONPREM, 64 * G)], asks(64), 0),  # it can: no VM
        ([mem_node("op", ON, ONPREM, None)], asks(64), 1),  # unknown: the scheduler skips it
        ([mem_node("op", ON, ONPREM, None)], asks(None), 0),  # none asked: it takes it
        # an idle Online VM of 16 GB is no room for it; the group's 64 GB nodes are
        ([mem_node("az-0", ON, AZ, 16 * G)], asks(64), 1),
        # a Starting VM counts as coming room: its own memory if it registered before...
        ([mem_node("az-0", STARTING, AZ, 64 * G)], asks(64), 0),
        ([mem_node("az-0", STARTING, AZ, 16 * G)], asks(64), 1),
        # ...else its group's (64 GB here)
        ([mem_node("az-0", STARTING, AZ, None, registered=False)], asks(64), 0),
    ],
)
def test_the_first_fit_counts_only_nodes_with_the_memory_as_room(nodes, queued, expected):
    assert len(started(run([*nodes, *azure_vms(3)], queued, pol=pol(64)))) == expected


def test_a_starting_node_of_unknown_memory_in_a_group_of_unknown_memory_is_room():
    booting = mem_node("az-0", STARTING, registered=False)
    assert started(run([booting, *azure_vms(3)], asks(64), pol=pol(None))) == []


# -------------------------------------------------------------- the other questions


def test_memory_of_counts_online_nodes_as_the_scheduler_and_starting_ones_by_their_group():
    nodes = [
        mem_node("on", ON, ONPREM, None),
        mem_node("big", ON, AZ, 64 * G),
        mem_node("s-own", STARTING, AZ, 8 * G),
        mem_node("s-group", STARTING, AZ, None, registered=False),
        mem_node("s-onprem", STARTING, ONPREM, None),
        mem_node("s-mute", STARTING, AZ, None),  # registered before, said no memory
    ]
    group_of = {n.name: (AZ if n.groups == [AZ] else None) for n in nodes}
    gp = GroupPolicy(node_cores=4, node_memory_mb=64 * G)
    got = memory_of(nodes, group_of, {AZ: gp})
    assert got == {"on": None, "big": 64 * G, "s-own": 8 * G, "s-mute": None}
    assert "s-group" not in got  # unknown: left out, taken as enough
    nodes[3].memory_mb = 32 * G  # what hpc node add gave it (never registered)
    assert memory_of(nodes, group_of, {AZ: gp})["s-group"] == 32 * G


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ({"a": 16 * G, "b": 64 * G}, {"b"}),
        ({"a": 16 * G, "b": None}, set()),  # unknown: no room for a memory task
        ({"a": 16 * G}, {"b"}),  # b missing: a Starting node taken as enough
    ],
)
def test_place_queue_puts_a_memory_task_only_where_it_fits(memory, expected):
    one = asks(64)[0]
    whole = wide(nodes=1, cores=1, exclusive=True).model_copy(update={"min_memory_mb": 64 * G})
    for task in (one, whole):  # the single-node path and the wide (exclusive) one
        left, used = place_queue(
            [task], ["a", "b"], {"a": 4, "b": 4}, {"a": 4, "b": 4},
            {"a": set(), "b": set()}, memory=memory,
        )  # fmt: skip
        assert used == expected and len(left) == (0 if expected else 1)


def test_a_wide_memory_task_counts_only_onprem_nodes_with_the_memory_and_groups_that_fit():
    onprem = [((ONPREM,), 4, 64 * G), ((ONPREM,), 4, 16 * G), ((ONPREM,), 4, None)]
    big = wide(nodes=3, cores=4).model_copy(update={"min_memory_mb": 64 * G})
    assert Reach(onprem, {AZ: (GroupPolicy(node_cores=4, node_memory_mb=64 * G), 2)}).holds(big)
    assert not Reach(onprem, {AZ: (GroupPolicy(node_cores=4, node_memory_mb=64 * G), 1)}).holds(
        big
    )  # 1 on-prem node with 64 GB + 1 VM < 3
    assert not Reach(onprem, {AZ: (GroupPolicy(node_cores=4, node_memory_mb=16 * G), 9)}).holds(
        big
    )  # the group's nodes are too small: it cannot burst


def test_grown_for_splits_the_tasks_a_group_runs_from_those_it_starts_none_for():
    small = GroupPolicy(node_cores=4, node_memory_mb=16 * G)
    tasks = [*asks(64), *asks(8, job=2), *asks(None, cores=8, job=3)]
    grown, why, able = grown_for(tasks, AZ, small)
    assert able == 1
    assert [t.job_id for t in grown] == [2]  # job 3's 8 cores: never, and not said here
    assert why is not None and why.startswith("1 queued task of job 1 asks up to 64 GB")
    unknown = GroupPolicy(node_cores=4)
    assert [t.id for t in grown_for(asks(64, 3), AZ, unknown)[0]] == [1]  # one to find out
    booting = [mem_node("s", STARTING, registered=False)]
    assert grown_for(asks(64, 3), AZ, unknown, booting)[:2] == ([], None)  # it will tell


def test_a_group_whose_online_node_did_not_tell_its_memory_starts_none_for_memory_tasks():
    """No VM started each grow check for nothing: a node of the group joined without a
    memory (its agent did not report one), so another would not tell either; the log says
    why and how to set it. Tasks asking none still grow the group."""
    mute = mem_node("az-0", ON, AZ, None)
    decision = run([mute, *azure_vms(3)], asks(64, job=4), pol=pol(None), used={"az-0": 4})
    assert started(decision) == []
    [note] = decision.notes
    assert note.text == (
        "1 queued task of job 4 asks up to 64 GB memory per node; its nodes' memory is "
        "unknown (az-0's agent did not report it): none started for them (upgrade its agent, "
        "or run it with --memory-mb SIZE)"
    )
    plain = run([mute, *azure_vms(3)], asks(None), pol=pol(None), used={"az-0": 4})
    assert started(plain) == ["az-1"]


def test_the_reservation_hold_and_the_idle_policies_ask_the_same_question():
    """may_grow_for (is the reserved task given a node), owner_group and demand (which group's
    floor a task raises): a group whose nodes are too small is not one that can run it."""
    small, big = pol(16), pol(64)
    task = asks(64)[0]
    members = {AZ}
    assert not may_grow_for(task, small, members, {}, T0)
    assert may_grow_for(task, big, members, {}, T0)
    assert owner_group(task, small.groups, ()) is None
    assert owner_group(task, big.groups, ()) == AZ
    assert demand(asks(64, 2), AZ, small.groups[AZ]) == 0
    assert demand(asks(64, 2), AZ, big.groups[AZ]) == 2  # each holds a 64 GB node's memory


def test_the_idle_policies_overflow_skips_online_nodes_without_the_memory():
    nodes = [mem_node("op", ON, ONPREM, 16 * G), *azure_vms(2)]
    managed = {n.name for n in nodes if n.groups == [AZ]}
    assert len(overflow(asks(64), nodes, {}, managed)) == 1
    assert overflow(asks(8), nodes, {}, managed) == []


# ------------------------------------------------------------------ the timer's policy


def test_the_timer_run_builds_each_groups_node_memory_by_the_rule():
    deps = SimpleNamespace(
        compute=SimpleNamespace(name="azure"),
        settings=SimpleNamespace(deployment_timeout_s=600, scale_down_delay_s=600),
    )
    groups = [
        NodeGroup(name=AZ, provider="azure", max_nodes=4),
        NodeGroup(name="Big", provider="azure", max_nodes=4, node_memory_mb=256 * G),
    ]
    nodes = [mem_node("az-1", ON, memory_mb=16 * G), mem_node("big-1", ON, "Big", 64 * G)]
    policy = policy_of(groups, deps, nodes)  # type: ignore[arg-type]
    assert policy.groups[AZ].node_memory_mb == 16 * G
    assert policy.groups["Big"].node_memory_mb == 64 * G  # its node's word, not the setting
    assert policy_of(groups, deps).groups[AZ].node_memory_mb is None  # type: ignore[arg-type]
    assert policy_of(groups, deps).groups["Big"].node_memory_mb == 256 * G  # type: ignore[arg-type]


def test_the_timer_run_starts_one_node_of_unknown_memory_then_none_once_it_is_known(
    tmp_path, clock, provider
):
    """Through the control plane: a group with no nodeMemoryMb and no node registered starts
    one VM for a 64 GB task; once that node registered with 16 GB it starts no other, and
    the log says why."""
    cp = make_cp(tmp_path, clock)
    cp.deps.compute = provider
    cp.set_group(AZ, provider="local", max_nodes=3, node_cores=4, grow_interval_s=0)
    cp.add_nodes(AZ, 3)
    cp.autoscale()  # the creates are done: the nodes Offline
    cp.submit({"command": "x", "nodeGroups": [AZ], "minMemoryMb": "64G"})
    clock.advance(1)
    cp.autoscale()
    [first] = [n for n in cp.store.list_nodes() if n.state is STARTING]
    first.move_to(ON, now=clock())
    first.memory_mb, first.incarnation = 16 * G, 1  # what its agent said at registration
    cp.store.put_node(first)
    clock.advance(1)
    cp.autoscale()
    assert [n.name for n in cp.store.list_nodes() if n.state is STARTING] == []
    [note] = [e for e in read_log(cp.deps) if e["action"] == "note"]
    assert "its nodes have 16 GB: none started for them" in note["reason"]


# ------------------------------------------------- which nodes a grow starts (start_order)


@pytest.mark.parametrize(
    ("memories_gb", "queued", "expected"),
    [
        # no memory asked: by name, as before
        ({"a": 16, "b": None, "c": 64}, asks(None), ["a", "b", "c"]),
        # those with the most asked first, then unknown, then the rest that fit some task
        ({"a": 16, "b": None, "c": 64}, asks(64) + asks(8, job=2), ["c", "b", "a"]),
        # none known to have less than every task asks: it would run none of them
        ({"a": 16, "b": None, "c": 64}, asks(64), ["c", "b"]),
        # a task asking none may run on any: none left out
        ({"a": 16, "c": 64}, asks(64) + asks(None, job=2), ["c", "a"]),
    ],
)
def test_a_grow_starts_first_the_nodes_that_have_the_memory_asked(memories_gb, queued, expected):
    offline = [
        mem_node(n, OFF, memory_mb=None if gb is None else gb * G, registered=gb is not None)
        for n, gb in memories_gb.items()
    ]
    assert [n.name for n in start_order(offline, queued, offline)] == expected


def test_a_group_with_a_bigger_node_added_starts_that_one_not_the_small_ones():
    """The probe's case: a group of 24 GB VMs, one 128 GB VM added after ``--node-memory
    128G``: a 100 GB task starts the big one, and no small one beside it."""
    nodes = [mem_node(f"az-{i}", OFF, memory_mb=24 * G) for i in (1, 2)]
    nodes.append(mem_node("az-3", OFF, memory_mb=128 * G, registered=False))
    assert started(run(nodes, asks(100), pol=pol(None))) == ["az-3"]
    assert started(run(nodes, asks(100, 2), pol=pol(None))) == ["az-3"]  # one fits: one


# ---------------------------------------- what the review found: loops, thresholds, probes


def test_a_mute_node_stopped_is_not_started_again_for_a_memory_task():
    """A billing loop the review found: az-1's agent registered without a memory; stopped
    once idle, it was started again for the 32 GB task, and again. Now it never counts: a
    node given 64 GB by hpc node add is started instead, and with none of them the group
    starts none and says why."""
    mute_off = mem_node("az-1", OFF)  # registered (incarnation 1), no memory
    fresh = [mem_node(f"az-{i}", OFF, registered=False) for i in (2, 3)]
    assert started(run([mute_off, *fresh], asks(32), pol=pol(None))) == []
    fresh[0].memory_mb = 64 * G  # added after --node-memory 64G
    group = replace(
        pol(None).groups[AZ], node_memory_mb=group_memory_mb(None, AZ, [mute_off, *fresh])
    )
    decision = run([mute_off, *fresh], asks(32), pol=AutoscalerPolicy(groups={AZ: group}))
    assert started(decision) == ["az-2"]  # az-1 never
    alone = run([mute_off], asks(32), pol=AutoscalerPolicy(groups={AZ: group}))
    assert started(alone) == []


def test_a_vm_size_that_reported_less_than_its_nominal_memory_is_believed_for_its_kind():
    """Nodes added with ``--node-memory 16G`` (nominal) whose first VM reported 15990 MB (what
    its OS sees): a 16 GB task starts none of the others (they would all fall short)."""
    first = mem_node("az-1", OFF, memory_mb=15990)
    first.size = "Standard_D4s_v5"
    rest = [mem_node(f"az-{i}", OFF, memory_mb=16 * G, registered=False) for i in (2, 3, 4)]
    for n in rest:
        n.size = "Standard_D4s_v5"
    nodes = [first, *rest]
    assert group_memory_mb(16 * G, AZ, nodes) == 15990
    group = replace(pol(None).groups[AZ], node_memory_mb=group_memory_mb(16 * G, AZ, nodes))
    assert started(run(nodes, asks(16, 4), pol=AutoscalerPolicy(groups={AZ: group}))) == []
    # a bigger size added later is believed as given: it starts
    big = mem_node("az-9", OFF, memory_mb=64 * G, registered=False)
    big.size = "Standard_E8s_v5"
    group = replace(group, node_memory_mb=group_memory_mb(16 * G, AZ, [*nodes, big]))
    pol_big = AutoscalerPolicy(groups={AZ: group})
    assert started(run([*nodes, big], asks(16), pol=pol_big)) == ["az-9"]


def test_grow_threshold_counts_the_tasks_a_probe_stands_for():
    """GrowThreshold 3, ten 64 GB tasks, node memory unknown: the probe grows for one of
    them, and the threshold counts the ten (before: none started, "1 queued task(s)")."""
    decision = run(azure_vms(5), asks(64, 10), pol=pol(None, grow_threshold=3))
    assert started(decision) == ["az-1"]
    few = run(azure_vms(5), asks(64, 2), pol=pol(None, grow_threshold=3))
    assert started(few) == []
    assert "2 queued task(s) it could run, below GrowThreshold 3" in few.notes[-1].text


def test_a_wide_probe_starts_one_node():
    """Node memory unknown, a task on 6 nodes asking 64 GB: one node finds out (before: 6)."""
    wide_task = asks(64)[0].model_copy(update={"nodes": 6})
    assert started(run(azure_vms(8), [wide_task], pol=pol(None))) == ["az-1"]


def test_a_setting_made_after_the_nodes_were_added_does_not_speak_for_them():
    """The live probe: ``--node-memory 30G`` on a group whose three VMs were added before
    (never registered, of this host's 23.5 GB): a 30 GB task started az-1, az-2, az-3 one
    grow interval apart, none of which could run it. Now: one probe, and once it reported
    23.5 GB, no other start."""
    nodes = [mem_node(f"az-{i}", OFF, registered=False) for i in (1, 2, 3)]
    group = replace(pol(None).groups[AZ], node_memory_mb=group_memory_mb(30 * G, AZ, nodes))
    assert group.node_memory_mb is None  # unknown: the setting is not their size
    assert started(run(nodes, asks(30), pol=AutoscalerPolicy(groups={AZ: group}))) == ["az-1"]
    nodes[0] = mem_node("az-1", ON, memory_mb=24105)  # it registered
    group = replace(group, node_memory_mb=group_memory_mb(30 * G, AZ, nodes))
    later = run(nodes, asks(30), pol=AutoscalerPolicy(groups={AZ: group}), used={"az-1": 4})
    assert started(later) == []


def test_the_log_says_a_start_is_for_memory_and_a_probe_is_one():
    """The live probe: every memory start read "overflow the free cores of running nodes"
    while on-prem cores sat free."""
    [probe] = run(azure_vms(3), asks(64, job=22), pol=pol(None)).orders
    assert probe.reason == (
        "1 queued task of job 22 (up to 64 GB memory) fits no running node; AzureNodes's "
        "node memory is unknown: one started tells"
    )
    [known] = run(azure_vms(3), asks(64, job=22), pol=pol(128)).orders
    assert known.reason == (
        "1 queued task of job 22 (up to 64 GB memory) fits no running node's free cores and "
        "memory; AzureNodes needs 1 node of 4 cores and 128 GB"
    )
    [plain] = run(azure_vms(3), asks(None, job=5), pol=pol(128)).orders
    assert plain.reason.endswith(
        "overflows the free cores of running nodes; AzureNodes needs 1 node of 4 cores"
    )
