"""The autoscaler sees the scheduler's unknown-time reservation: cores held for a blocked head
task are not free to later tasks, so those tasks burst instead of waiting (maybe forever)
behind a task with no runtime limit. The reviewer's case: on-prem node P (4 cores) runs one
unlimited 1-core task; head task A (4 cores, OnPremNodes only, Highest) is reserved P; three
1-core tasks B may run anywhere; three Offline Azure nodes."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py and tests/test_nodes_admin.py

from __future__ import annotations

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.domain import scheduler
from shared.domain.autoscaler_io import Reserved
from shared.domain.models import Host, Task
from shared.domain.protocol import AGENT_PROTOCOL
from shared.domain.states import NodeState
from shared.usecases.autoscale import reserved
from shared.usecases.control_plane import ControlPlane
from tests.test_autoscaler import (
    AZ,
    ON,
    ONPREM,
    STARTING,
    T0,
    actions,
    azure_vms,
    node,
    run,
    started,
    tasks,
)
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixture

HEAD = (1, 1)


def onprem(cores: int = 4):
    p = node("P", ON, group=ONPREM, cores=cores)
    p.incarnation = 1
    p.agent_protocol = AGENT_PROTOCOL  # reads every assignment (runtime limits too)
    return p


def unlimited(limit_s: int | None = None) -> Task:
    """Job 9's task on P: no runtime limit, so no time can be projected for A."""
    return Task(
        job_id=9, id=1, command="x", cores=1, state="Running", node="P", dispatch_time=T0,
        runtime_limit_s=limit_s, hosts=[Host(node="P", cores=1, incarnation=1)],
    )  # fmt: skip


def head(cores: int = 4, exclusive: bool = False) -> Task:
    return Task(
        job_id=1, id=1, command="x", cores=cores, node_groups=[ONPREM], priority=4000,
        exclusive=exclusive,
    )  # fmt: skip


def later(n: int = 3) -> list[Task]:
    return tasks(n, job=2)


# --------------------------------------------------------------- the scheduler's hold


def test_the_reservation_a_pass_makes_is_what_the_autoscaler_gets():
    queue = [head(), *later()]
    nodes = [onprem(), *azure_vms(3)]
    assert scheduler.plan(queue, nodes, {"P": 1}, running=[unlimited()], now=T0) == []
    got = reserved(nodes, queue, [unlimited()], {"P": 1}, T0)
    assert got == Reserved(HEAD, {"P": 3}, held_mb={})  # P's 3 free cores: none spare


def test_a_known_time_reservation_is_given_with_its_time():
    """A review found later tasks that do not end before a known reserved start waiting for
    hours while the autoscaler, told nothing, counted the held cores for them."""
    running = [unlimited(limit_s=3600)]
    got = reserved([onprem()], [head(), *later()], running, {"P": 1}, T0)
    assert got is not None and (got.task, dict(got.cores)) == (HEAD, {"P": 3})
    assert got.at == T0.timestamp() + 3600  # dispatched at T0 with a 1 h limit


def test_an_exclusive_head_holds_the_whole_node():
    queue = [head(cores=2, exclusive=True), *later()]
    got = reserved([onprem()], queue, [unlimited()], {"P": 1}, T0)
    assert got == Reserved(HEAD, {"P": 3}, held_mb={})  # the whole node: every free core


@pytest.mark.parametrize(
    ("running", "used", "queue"),
    [
        ([], {}, [head(), *later()]),  # the head fits now: nothing is reserved
        ([unlimited()], {"P": 1}, later()),  # nothing blocks
        ([unlimited()], {"P": 4}, [head(), *later()]),  # no core free: a pass reserves none
    ],
)
def test_no_hold_without_a_reservation(running, used, queue):
    assert reserved([onprem()], queue, running, used, T0) is None


# ------------------------------------------------------------------- the policy


def test_later_tasks_burst_when_the_reservation_holds_the_free_cores():
    queue = [head(), *later()]
    nodes = [onprem(), *azure_vms(3)]
    # before: B counted on P's 3 free cores, which A waits for: nothing started
    assert actions(run(nodes, queue, used={"P": 1})) == []
    d = run(nodes, queue, used={"P": 1}, reserved=Reserved(HEAD, {"P": 4}))
    assert started(d) == ["az-1"]
    assert "overflow" in d.orders[0].reason and "job 2" in d.orders[0].reason


@pytest.mark.parametrize(
    ("count", "starts"),
    [
        (3, []),  # P has 8 cores: 7 free, 4 held for A, 3 spare take the three B
        (4, ["az-1"]),  # the fourth overflows
    ],
)
def test_later_tasks_still_use_the_spare_cores_of_a_reserved_node(count, starts):
    queue = [head(), *later(count)]
    hold = Reserved(HEAD, {"P": 4})
    assert started(run([onprem(cores=8), *azure_vms(3)], queue, used={"P": 1}, reserved=hold)) == (
        starts
    )


def test_tasks_ahead_of_the_reserved_one_are_not_held_back():
    first = Task(job_id=0, id=1, command="x", cores=3)  # fits P now, before A blocks
    queue = [first, head(), *later()]
    hold = Reserved(HEAD, {"P": 4})
    d = run([onprem(), *azure_vms(3)], queue, used={"P": 1}, reserved=hold)
    assert started(d) == ["az-1"]  # for B only: 3 one-core tasks, one node


def test_a_reserved_task_that_fits_a_starting_node_lifts_the_hold():
    # A goes to the Starting node once it joins; B then runs on P: nothing more starts
    nodes = [onprem(), node("az-1", STARTING), *azure_vms(3)[1:]]
    bursts = head().model_copy(update={"node_groups": [ONPREM, AZ]})
    queue = [bursts, *later()]
    assert started(run(nodes, queue, used={"P": 1}, reserved=Reserved(HEAD, {"P": 4}))) == []


def test_a_hold_whose_task_left_the_window_still_stands():
    d = run([onprem(), *azure_vms(3)], later(), used={"P": 1}, reserved=Reserved(HEAD, {"P": 4}))
    assert started(d) == ["az-1"]


# ------------------------------------------------------- through the control plane


def test_a_timer_run_starts_a_node_for_work_the_reservation_keeps_waiting(
    cp: ControlPlane,  # noqa: F811
    provider: LocalProvider,
    clock,  # noqa: F811
):
    cp.set_group(AZ, provider="local", max_nodes=3, node_cores=4, grow_interval_s=0)
    names = [n.name for n in cp.add_nodes(AZ, 3)]
    provider.faults.never_joins.update(names)
    cp.autoscale()  # the creates are done: Offline nodes
    agent = register(cp, "P", cores=4)
    cp.submit({"command": "x", "nodeGroups": [ONPREM]})  # no runtime limit
    assert cp.schedule_pass() == 1
    agent.send(*[agent.started(r) for r in agent.runs()])
    cp.submit({"command": "x", "nodeGroups": [ONPREM], "cores": 4, "priority": "Highest"})
    cp.submit({"command": "x", "sweep": "1-3"})
    assert cp.schedule_pass() == 0  # P's free cores are A's: B waits
    clock.advance(1)
    cp.autoscale()
    states = [cp.store.get_node(n).state for n in names]
    assert states.count(NodeState.STARTING) == 1


# ----------------------------------------------- a known time; a reserved task that bursts


@pytest.mark.parametrize(
    ("limit_s", "starts"),
    [
        (600, []),  # B ends before A's projected start (T0 + 1 h): P's free cores take it
        (7200, ["az-1"]),  # B would delay A: held off P, it bursts
        (None, ["az-1"]),  # no limit: it may never end first
    ],
)
def test_a_known_time_hold_lets_only_what_ends_first_use_the_held_cores(limit_s, starts):
    """A review: the scheduler lets a later task onto the held cores only if it ends before
    the reserved start; the autoscaler counted them free for any task and grew nothing."""
    queue = [head(), *(t.model_copy(update={"runtime_limit_s": limit_s}) for t in later())]
    hold = Reserved(HEAD, {"P": 4}, T0.timestamp() + 3600)
    assert started(run([onprem(), *azure_vms(3)], queue, used={"P": 1}, reserved=hold)) == starts


def test_a_reserved_task_that_will_burst_holds_nothing_back():
    """A review: A, allowed on Azure too, gets a VM of its own; once it boots A leaves P and
    B takes P's free cores. Holding them for A would start a second VM B never uses."""
    burstable = head().model_copy(update={"node_groups": [ONPREM, "AzureNodes"]})
    queue = [burstable, *later()]
    d = run([onprem(), *azure_vms(3)], queue, used={"P": 1}, reserved=Reserved(HEAD, {"P": 4}))
    assert started(d) == ["az-1"]
