"""Faults a probe of the autoscaler found, through the control plane on the local provider
(its "VMs" are processes that run no agent here: an AgentDouble plays each one's agent)."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py and tests/test_nodes_admin.py

from __future__ import annotations

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.domain.autoscaler_notes import GONE
from shared.domain.states import NodeState
from shared.errors import Conflict
from shared.ports.compute import ErrorKind
from shared.usecases.autoscale_log import read_log
from shared.usecases.autoscale_memory import STATE_KEY
from shared.usecases.control_plane import ControlPlane
from tests.agent_double import AgentDouble
from tests.helpers import wait_until
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixture

AZ = "AzureNodes"


def managed(cp: ControlPlane, provider: LocalProvider, count: int, **kw: object) -> list[str]:  # noqa: F811
    cp.set_group(AZ, provider="local", max_nodes=4, node_cores=1, grow_interval_s=0, **kw)
    names = [n.name for n in cp.add_nodes(AZ, count)]
    provider.faults.never_joins.update(names)
    cp.autoscale()  # the creates are done: Offline nodes
    return names


def backoff_until(cp: ControlPlane) -> object:  # noqa: F811
    return cp.store.get_meta(STATE_KEY).data.get("groups", {}).get(AZ, {}).get("backoff_until")


def test_busy_nodes_above_a_lowered_max_drain_unheld_and_stop_when_their_tasks_end(
    cp,  # noqa: F811
    provider,
    clock,  # noqa: F811
):
    names = managed(cp, provider, 3)
    cp.node_action("start", names)
    agents = [AgentDouble(cp, n, cores=1, groups=(AZ,)) for n in names]
    assert all(a.register().accepted for a in agents)
    job = cp.submit({"command": "x", "nodeGroups": [AZ], "sweep": "1-10"})
    assert cp.schedule_pass() == 3
    for agent in agents:
        agent.send(*[agent.started(r) for r in agent.runs()])
    cp.set_group(AZ, max_nodes=1)
    clock.advance(1)
    cp.autoscale()
    nodes = {n: cp.store.get_node(n) for n in names}
    draining = sorted(n for n, node in nodes.items() if node.state is NodeState.DRAINING)
    assert len(draining) == 2 and all(nodes[n].held is None for n in draining)
    assert cp.schedule_pass() == 0  # no new task on a drained node
    ended = {(t.job_id, t.id, t.attempt) for t in cp.list_tasks(job.id) if t.node == draining[0]}
    first = agents[names.index(draining[0])]
    first.send(*[first.ended(k) for k in ended])
    clock.advance(1)
    cp.autoscale()
    assert cp.store.get_node(draining[0]).state is NodeState.STOPPING
    assert cp.store.get_node(draining[1]).state is NodeState.DRAINING


def test_a_start_of_a_vm_the_provider_forgot_restarts_it_without_a_backoff(
    cp,  # noqa: F811
    provider,
    clock,  # noqa: F811
    tmp_path,
):
    [name] = managed(cp, provider, 1, min_nodes=1)  # its start is begun, not yet polled
    assert cp.store.get_node(name).state is NodeState.STARTING
    provider.close()
    forgetful = LocalProvider(tmp_path / "vms2")  # the control plane was killed and restarted
    forgetful.faults.never_joins.add(name)
    cp.deps.compute = forgetful
    try:
        clock.advance(5)
        cp.autoscale()
        assert cp.store.get_node(name).state is NodeState.STARTING  # started again at once
        assert backoff_until(cp) is None
        assert not [e for e in read_log(cp.deps) if e["action"] == "start failed"]
    finally:
        forgetful.close()


def test_an_admins_stop_of_a_starting_node_is_no_failed_start(cp, provider, clock):  # noqa: F811
    provider.boot_delay_s = 30
    [name] = managed(cp, provider, 1)
    cp.node_action("start", [name])
    cp.node_action("offline", [name])
    clock.advance(1)
    cp.autoscale()
    node = cp.store.get_node(name)
    assert node.state is NodeState.OFFLINE and node.held == "offline"
    assert backoff_until(cp) is None
    assert not [e for e in read_log(cp.deps) if e["action"] == "start failed"]


def test_an_offline_racing_a_start_wins_and_the_vm_is_deallocated(
    cp,  # noqa: F811
    provider,
    clock,  # noqa: F811
):
    [name] = managed(cp, provider, 1)
    start = provider.start

    def racing_start(vm, **kw):  # an admin's offline lands while the start is under way
        op = start(vm, **kw)
        cp.node_action("offline", [vm])
        return op

    provider.start = racing_start  # type: ignore[method-assign]
    with pytest.raises(Conflict, match="later action wins"):
        cp.node_action("start", [name])
    provider.start = start  # type: ignore[method-assign]
    node = cp.store.get_node(name)
    assert node.state is NodeState.OFFLINE and node.held == "offline"
    clock.advance(1)
    cp.autoscale()
    assert cp.store.get_node(name).state is NodeState.OFFLINE
    assert provider.power_states()[name].value in ("deallocated", "deallocating")
    assert backoff_until(cp) is None


def test_refused_and_failed_starts_are_logged_with_their_backoff(cp, provider, clock):  # noqa: F811
    [name] = managed(cp, provider, 1)
    provider.faults.quota_exceeded = True
    cp.set_group(AZ, min_nodes=1)
    clock.advance(1)
    cp.autoscale()
    [refused] = [e for e in read_log(cp.deps) if e["action"] == "start refused"]
    assert refused["node"] == name and refused["group"] == AZ
    assert ErrorKind.QUOTA_EXCEEDED in refused["reason"] and "backs off 60 s" in refused["reason"]


def test_a_quota_refusal_ends_its_groups_starts_for_the_run(cp, provider, clock):  # noqa: F811
    """A probe: QuotaExceeded was tried on every Offline node in the same run (a log line and
    an ARM call each); a quota is the group's, not one VM's. The other starts wait for the
    back-off, and none of them is remembered as ordered (an admin's start counts afresh)."""
    names = managed(cp, provider, 4)
    provider.faults.quota_exceeded = True
    cp.set_group(AZ, min_nodes=4)
    clock.advance(1)
    cp.autoscale()
    refused = [e for e in read_log(cp.deps) if e["action"] == "start refused"]
    assert [e["node"] for e in refused] == names[:1]
    assert refused[0]["reason"].count(names[0]) == 1  # the node said once
    nodes = cp.store.get_meta(STATE_KEY).data.get("nodes", {})
    assert all(nodes.get(n, {}).get("start_ordered_at") is None for n in names)
    assert all(cp.store.get_node(n).state is NodeState.OFFLINE for n in names)


def test_a_vm_that_did_not_boot_is_logged_as_a_failed_start(cp, provider, clock):  # noqa: F811
    [name] = managed(cp, provider, 1)
    provider.faults.never_joins.discard(name)
    provider.python = "/bin/false"  # its "VM" dies at once
    cp.set_group(AZ, min_nodes=1)
    clock.advance(1)
    cp.autoscale()
    assert cp.store.get_node(name).state is NodeState.STARTING
    proc = provider._vms[name].proc
    assert proc is not None
    proc.wait()
    clock.advance(1)
    cp.autoscale()
    [failed] = [e for e in read_log(cp.deps) if e["action"] == "start failed"]
    assert "did not boot" in failed["reason"] and "backs off 60 s" in failed["reason"]
    assert cp.store.get_node(name).state_reason.startswith("failed: ")


def test_an_admins_start_of_a_draining_vm_cancels_its_drain(cp, provider, clock):  # noqa: F811
    """HPC Pack's Bring Online of a node being drained: an admin's stop of a busy VM drained
    it (held); ``hpc node start`` of it brings it back Online with its task still running,
    it takes work again, and the autoscaler does not stop it when that task ends (before:
    409, "only an Offline node can be started", and the VM stopped)."""
    [name] = managed(cp, provider, 1)
    cp.node_action("start", [name])
    agent = AgentDouble(cp, name, cores=1, groups=(AZ,))
    assert agent.register().accepted
    job = cp.submit({"command": "x", "nodeGroups": [AZ], "sweep": "1-2"})
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    agent.send(agent.started(run))
    [stopped] = cp.node_action("stop", [name])
    assert stopped.state is NodeState.DRAINING
    [started] = cp.node_action("start", [name])
    assert started.state is NodeState.ONLINE and started.held is None
    assert started.incarnation == agent.incarnation  # the same agent, its task runs on
    assert "drain is canceled" in (started.state_reason or "")
    agent.send(agent.ended(run))
    clock.advance(1)
    cp.autoscale()
    assert cp.store.get_node(name).state is NodeState.ONLINE  # not stopped: it is not Draining
    assert cp.schedule_pass() == 1  # and it takes the next task
    assert {t.node for t in cp.list_tasks(job.id)} == {name}


def test_a_start_of_a_stopping_vm_starts_it_once_its_stop_is_done(cp, provider, clock):  # noqa: F811
    """A probe got a 409 "start it once it is Offline" and had to come back: the start is
    asked on the node and the autoscaler starts it once its stop is done (as Slurm resumes a
    node powering down once it is down); a second start says it is asked already."""
    [name] = managed(cp, provider, 1)
    cp.node_action("start", [name])
    cp.node_action("stop", [name])  # idle (its agent never joined): Stopping at once
    assert cp.store.get_node(name).state is NodeState.STOPPING
    [asked] = cp.node_action("start", [name])
    assert (asked.state, asked.start_requested) == (NodeState.STOPPING, "started by an admin")
    _, said = cp.act_on_node("start", name)
    assert (
        said
        == f"node {name} is already Stopping: it starts once its VM is deallocated: nothing to do"
    )

    def runs_until_started() -> bool:  # the deallocation is seen done, then the start ordered
        clock.advance(5)
        cp.autoscale()
        return cp.store.get_node(name).state is NodeState.STARTING

    wait_until(runs_until_started, what="the asked start ordered")
    node = cp.store.get_node(name)
    assert (node.state, node.start_requested) == (NodeState.STARTING, None)
    [start] = [e for e in cp.autoscale_log() if e["action"] == "start" and e["node"] == name]
    assert start["reason"] == "started by an admin (asked while it stopped; its stop is done)"


def test_a_stop_or_offline_after_an_asked_start_wins(cp, provider, clock):  # noqa: F811
    [a, b] = managed(cp, provider, 2)
    cp.node_action("start", [a, b])
    cp.node_action("stop", [a, b])
    cp.node_action("start", [a, b])
    assert cp.act_on_node("stop", a)[1] is None  # not "already": it cancels the asked start
    assert cp.store.get_node(a).start_requested is None
    cp.node_action("offline", [b])
    assert cp.store.get_node(b).start_requested is None

    def runs_until_offline() -> bool:
        clock.advance(5)
        cp.autoscale()
        return cp.store.get_node(a).state is NodeState.OFFLINE

    wait_until(runs_until_offline, what="the stop done")
    clock.advance(5)
    cp.autoscale()  # a run more: nothing asked is started
    assert {n: cp.store.get_node(n).state for n in (a, b)} == {
        a: NodeState.OFFLINE,
        b: NodeState.OFFLINE,
    }


def test_an_admins_stop_reason_outlives_the_vms_agent_going_down(cp, provider, clock):  # noqa: F811
    """A probe: `hpc node stop azure-1 --reason maint` showed "stopped by admin: maint"
    until the VM's agent stopped with it, then "agent stopped"."""
    [name] = managed(cp, provider, 1)
    cp.node_action("start", [name])
    agent = AgentDouble(cp, name, cores=1, groups=(AZ,))
    assert agent.register().accepted
    job = cp.submit({"command": "x", "nodeGroups": [AZ]})
    assert cp.schedule_pass() == 1
    [run] = agent.runs()
    agent.send(agent.started(run))
    [stopped] = cp.node_action("stop", [name], reason="stopped by alice: maint")
    assert stopped.state is NodeState.DRAINING  # its task runs on
    agent.send(agent.ended(run, exit_code=0))
    clock.advance(1)
    cp.autoscale()  # drained: its VM is deallocated
    assert cp.store.get_node(name).state is NodeState.STOPPING
    agent.send(agent.stopping())  # its agent goes down with the VM
    clock.advance(1)
    cp.autoscale()  # the deallocation is seen done
    node = cp.store.get_node(name)
    assert node.state is NodeState.OFFLINE
    assert node.state_reason == "drained (stopped by alice: maint): its last task ended"
    assert [t.state.value for t in cp.list_tasks(job.id)] == ["Finished"]
    logged = [e for e in read_log(cp.deps, limit=50) if e.get("node") == name]
    assert any("stopped by alice: maint" in e.get("reason", "") for e in logged), logged


def test_vms_lost_with_a_killed_hpc_up_are_offline_and_started_again(
    cp,  # noqa: F811
    provider,
    clock,  # noqa: F811
    tmp_path,
):
    """A probe: kill -9 of the whole ``hpc up`` tree with AzureNodes VMs Online; restarted,
    the local provider knew none of them and the nodes stayed Unreachable for 25 minutes,
    the job Queued ("at its maxNodes"), a stop of one Stopping for ever. Now a node the
    provider's whole list lacks is Offline once unheard, and the queue starts it again."""
    [name] = managed(cp, provider, 1)
    cp.node_action("start", [name])
    agent = AgentDouble(cp, name, cores=1, groups=(AZ,))
    assert agent.register().accepted
    restarted = LocalProvider(tmp_path / "vms-after-restart")  # it knows no VM
    cp.deps.compute = restarted
    try:
        for _ in range(int(cp.settings.heartbeat_timeout_s) // 2 + 2):
            cp.reconcile()  # every 2 s; the agent died with the tree: unheard
            clock.advance(2)
        assert cp.store.get_node(name).state is NodeState.UNREACHABLE
        job = cp.submit({"command": "x", "nodeGroups": [AZ]})
        cp.autoscale()
        node = cp.store.get_node(name)
        assert (node.state, node.state_reason) == (NodeState.OFFLINE, GONE)
        restarted.faults.never_joins.add(name)
        clock.advance(1)
        cp.autoscale()  # the queued job starts it again: its VM is created anew
        assert cp.store.get_node(name).state is NodeState.STARTING
        assert name in restarted.power_states()
        assert cp.get_job(job.id).state.value == "Queued"
    finally:
        restarted.close()


def test_a_vm_that_runs_behind_an_offline_node_is_deallocated_after_the_deployment_timeout(
    cp,  # noqa: F811
    provider,
    clock,  # noqa: F811
):
    """A fault probe: the autoscaler ordered such a VM stopped every run, and the stop of an
    Offline node did nothing, so the VM would run (and bill) forever. It is now deallocated
    once it has run so for the deployment timeout (not at once: a restarted control plane
    boots its local VMs again and their agents register within seconds)."""
    [name] = managed(cp, provider, 1)
    provider.start(name, request_id="outside", now=clock())  # started outside the cluster
    cp.autoscale()
    assert provider.power_states()[name].value == "running"
    clock.advance(cp.settings.deployment_timeout_s)
    cp.autoscale()
    node = cp.store.get_node(name)
    assert node.state is NodeState.OFFLINE and "while its node is Offline" in node.state_reason
    wait_until(lambda: provider.power_states()[name].value == "deallocated", 10, "deallocated")
    entries = read_log(cp.deps, group=AZ)
    assert any(e["action"] == "stop" and e["node"] == name for e in entries), entries


def test_an_unreachable_vm_is_deallocated_past_the_deployment_timeout_and_replaced(
    cp,  # noqa: F811
    provider,
    clock,  # noqa: F811
):
    """A probe SIGSTOPped a busy VM's agent: the node went Unreachable, its task was
    requeued, and its VM ran on (billing, and at maxNodes holding its replacement back) for
    as long as one waited, with no word in the log. Now it is deallocated once unheard for
    the deployment timeout, the node Offline saying why, and the work's replacement starts."""
    first, second = managed(cp, provider, 2)
    cp.set_group(AZ, max_nodes=1)
    cp.node_action("start", [first])
    agent = AgentDouble(cp, first, cores=1, groups=(AZ,))
    assert agent.register().accepted
    cp.reconcile()  # listening from now on
    job = cp.submit({"command": "x", "nodeGroups": [AZ]})
    assert cp.schedule_pass() == 1
    agent.send(*[agent.started(r) for r in agent.runs()])
    for _ in range(int(cp.settings.heartbeat_timeout_s) // 2 + 2):
        clock.advance(2)
        cp.reconcile()  # its agent is silent
    assert cp.store.get_node(first).state is NodeState.UNREACHABLE
    cp.autoscale()  # the unheard VM counts toward maxNodes 1: nothing starts yet
    clock.advance(cp.settings.deployment_timeout_s - 60)
    cp.autoscale()
    assert cp.store.get_node(first).state is NodeState.UNREACHABLE  # not yet
    assert provider.power_states()[first].value == "running"
    clock.advance(60)
    cp.autoscale()
    node = cp.store.get_node(first)
    assert node.state is NodeState.STOPPING and node.state_reason.startswith("unreachable for 20")
    wait_until(lambda: provider.power_states()[first].value == "deallocated", 10, "deallocated")
    clock.advance(1)
    cp.autoscale()
    off = cp.store.get_node(first)
    assert (off.state, off.state_reason) == (
        NodeState.OFFLINE,
        f"{node.state_reason}; its VM is deallocated",  # its power as found, done
    )
    assert cp.store.get_node(second).state is NodeState.STARTING  # the work's replacement
    assert [t.state.value for t in cp.list_tasks(job.id)] == ["Queued"]
    stops = [e for e in read_log(cp.deps, group=AZ) if e["action"] == "stop"]
    assert [(e["node"], e["reason"]) for e in stops] == [(first, node.state_reason)]


def test_an_offline_nodes_reason_says_deallocated_once_its_deallocation_is_done(
    cp,  # noqa: F811
    provider,
    clock,  # noqa: F811
):
    """A probe: after `hpc node stop` of a hung VM the node read "its VM is deallocating" for
    good, though its VM was gone. The run that finds the deallocation done says so."""
    [name] = managed(cp, provider, 1)
    cp.node_action("start", [name])
    assert AgentDouble(cp, name, cores=1, groups=(AZ,)).register().accepted
    cp.node_action("stop", [name])
    node = cp.store.get_node(name)  # as the run that saw its VM deallocating left it:
    node.move_to(NodeState.OFFLINE, reason="its VM is deallocating: the stop is done")
    cp.store.put_node(node)
    wait_until(lambda: provider.power_states()[name].value == "deallocated", 10, "deallocated")
    clock.advance(1)
    cp.autoscale()
    assert cp.store.get_node(name).state_reason == "its VM is deallocated: the stop is done"
