"""Administering managed nodes and node groups through the control plane, on the local
provider (its "VMs" are agent processes; these tests create them but start none)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.adapters.local_compute import LocalProvider
from shared.domain import lifecycle
from shared.domain.cluster import Node
from shared.domain.lifecycle.nodes import removal_refusal
from shared.domain.messages import CancelTask
from shared.domain.states import JobState, NodeState, TaskState
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.ports.compute import OFF_STATES, PowerState
from shared.usecases.operations import pending_operations
from tests.agent_double import AgentDouble
from tests.helpers import wait_until
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures


@pytest.fixture
def provider(cp, tmp_path):
    p = LocalProvider(tmp_path / "vms")
    cp.deps.compute = p
    yield p
    p.close()


def managed(cp, name="AzureNodes", **settings):
    return cp.set_group(name, provider="local", max_nodes=4, node_cores=2, **settings)


def test_adding_nodes_creates_offline_vms_named_after_the_group(cp, provider):
    managed(cp)
    added = cp.add_nodes("azurenodes", 2)  # group names match case-insensitively
    assert [(n.name, n.state, n.cores, n.provider) for n in added] == [
        ("azure-1", NodeState.OFFLINE, 2, "local"),
        ("azure-2", NodeState.OFFLINE, 2, "local"),
    ]
    assert set(pending_operations(cp.deps)) == {"azure-1", "azure-2"}
    power = provider.power_states()
    assert set(power) == {"azure-1", "azure-2"} and all(s in OFF_STATES for s in power.values())


def test_a_group_keeps_within_its_max(cp, provider):
    managed(cp)
    cp.add_nodes("AzureNodes", 4)
    with pytest.raises(Conflict, match="has 4 node.s. and its maxNodes is 4"):
        cp.add_nodes("AzureNodes", 1)


def test_nodes_cannot_be_added_to_an_unmanaged_group(cp, provider):
    with pytest.raises(Conflict, match="on-prem nodes join by running `hpc agent run`"):
        cp.add_nodes("OnPremNodes", 1)
    with pytest.raises(NotFound, match="node group 'Nope' does not exist"):
        cp.add_nodes("Nope", 1)


def test_only_offline_nodes_start_and_only_offline_nodes_are_removed(cp, provider):
    managed(cp)
    cp.add_nodes("AzureNodes", 1)
    onprem = register(cp, "n1")
    with pytest.raises(Conflict, match="n1 is Online already: nothing to do"):
        cp.node_action("start", [onprem.name])  # an on-prem node: tests/test_node_online.py
    with pytest.raises(Conflict, match="take it offline or stop it first"):
        cp.node_action("remove", ["n1"])
    assert cp.node_action("remove", ["azure-1"]) == ["azure-1"]
    with pytest.raises(NotFound):
        cp.store.get_node("azure-1")


def test_stopping_a_busy_node_drains_it_first(cp, provider):
    n1 = register(cp, "n1", cores=1)
    cp.submit({"command": "x"})
    cp.schedule_pass()
    [node] = cp.node_action("stop", ["n1"])
    assert node.state is NodeState.DRAINING
    assert cp.schedule_pass() == 0
    [offline] = cp.node_action("offline", ["n1"])
    assert offline.state is NodeState.OFFLINE and n1.name == "n1"
    [task] = cp.list_tasks(1)  # its task was requeued without using a retry
    assert task.state.value == "Queued" and task.requeue_count == 0


def test_offlining_a_node_kills_the_attempts_it_gives_up_where_they_run(cp):
    """An on-prem node's agent lives on after an admin's offline: the attempts requeued
    elsewhere must not also run to their end there."""
    n1 = register(cp, "n1", cores=1)
    n2 = register(cp, "n2", cores=1)
    job = cp.submit({"name": "two", "tasks": [{"command": "a"}, {"command": "b"}]})
    cp.schedule_pass()
    [run] = n1.runs()
    [other] = n2.runs()
    n1.send(n1.started(run))
    cp.node_action("offline", ["n1"])
    [kill] = n1.assignments()
    assert isinstance(kill, CancelTask)
    assert (kill.task_id, kill.attempt, kill.incarnation) == (run.task_id, 0, n1.incarnation)
    assert n2.assignments() == []  # what runs elsewhere is left alone
    n1.send(n1.ended(run, exit_code=-15, canceled=True))  # the given-up attempt, killed
    task = cp.get_task(job.id, run.task_id)
    assert (task.state, task.attempt) == (TaskState.QUEUED, 1)
    assert cp.get_job(job.id).task_counts == {TaskState.QUEUED: 1, TaskState.DISPATCHING: 1}
    n2.send(n2.started(other), n2.ended(other, exit_code=0))
    n2.send(n2.heartbeat())
    cp.schedule_pass()
    [again] = n2.run_all()
    assert (again.task_id, again.attempt) == (run.task_id, 1)
    assert cp.get_job(job.id).state is JobState.FINISHED


@pytest.mark.parametrize("action", ["stop", "drain", "offline"])
def test_an_admin_action_that_races_a_heartbeat_is_done_from_a_fresh_read(
    cp, provider, monkeypatch, action
):
    """A probe: `hpc node stop --group AzureNodes` said "stale etag ... nothing was written"
    of VMs it had in fact stopped (a heartbeat wrote the node between the action's read and
    write), and the stop's reason and log entry were lost."""
    managed(cp)
    [node] = cp.add_nodes("AzureNodes", 1)
    provider.faults.never_joins.add(node.name)  # its "VM" runs; the double below is its agent
    cp.node_action("start", [node.name])
    assert AgentDouble(cp, node.name, cores=2, groups=("AzureNodes",)).register().accepted
    store, raced = cp.deps.store, []
    real_put = store.put_node

    def put_node(written):
        if not raced and written.name == node.name:
            raced.append(written.state)
            real_put(store.get_node(written.name))  # a heartbeat's write in between
        return real_put(written)

    monkeypatch.setattr(store, "put_node", put_node)
    done, already = cp.act_on_node(action, node.name, reason="probe1", by="admin")
    assert raced and already is None
    stored = store.get_node(node.name)
    assert stored.state is done[0].state is not NodeState.ONLINE
    assert "probe1" in (stored.state_reason or "")
    logged = [e for e in cp.autoscale_log() if e.get("node") == node.name]
    assert logged[-1]["action"] == action and "probe1" in logged[-1]["reason"]


def test_a_job_whose_every_started_task_is_requeued_is_queued_again_and_runs_anew(cp, clock):
    """A probe: ``hpc node offline`` of the node under a job's only task left the job Running
    with its task Queued, so ``hpc job list --state Queued`` missed it. Its start (and the
    jobRuntimeLimit that counts from it) begins again at the next run's first task."""
    register(cp, "n1", cores=1)
    job = cp.submit({"command": "x", "jobRuntimeLimit": 600})
    cp.schedule_pass()
    started = cp.get_job(job.id)
    assert started.state is JobState.RUNNING and started.start_time is not None
    clock.advance(300)
    cp.node_action("offline", ["n1"])
    queued = cp.get_job(job.id)
    assert (queued.state, queued.start_time) == (JobState.QUEUED, None)
    assert [j.id for j in cp.list_jobs(states=[JobState.QUEUED])] == [job.id]
    clock.advance(400)  # past 600 s from the first start, not from the second
    n2 = register(cp, "n2", cores=1)
    cp.schedule_pass()
    [run] = n2.runs()
    rerun = cp.get_job(job.id)
    assert rerun.state is JobState.RUNNING and rerun.start_time == clock()
    cp.reconcile()
    assert cp.get_job(job.id).state is JobState.RUNNING  # its limit counts from now


def test_a_job_with_a_task_that_ended_stays_running_when_the_others_are_requeued(cp):
    """Only a job none of whose tasks ran to an end goes back to Queued: one that made
    progress is still Running (HPC Pack's job: started, not ended)."""
    n1 = register(cp, "n1", cores=1)
    register(cp, "n2", cores=1)
    job = cp.submit({"name": "two", "tasks": [{"command": "a"}, {"command": "b"}]})
    cp.schedule_pass()
    [first] = n1.runs()
    n1.send(n1.started(first), n1.ended(first, exit_code=0))
    cp.node_action("offline", ["n2"])
    assert cp.get_job(job.id).state is JobState.RUNNING
    assert cp.get_job(job.id).task_counts == {TaskState.FINISHED: 1, TaskState.QUEUED: 1}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"maxx_nodes": 3}, "node group setting 'maxx_nodes' is unknown"),
        ({"max_nodes": -1}, "maxNodes must be a whole number from 0 to 100,000, got -1"),
        ({"min_nodes": 5, "max_nodes": 2}, "min nodes 5 is above max nodes 2"),
        (
            {"node_cores": "four"},
            'nodeCores must be a whole number from 1 to 1,000,000, got "four"',
        ),
    ],
)
def test_bad_group_settings_are_refused_saying_what_to_fix(cp, settings, message):
    with pytest.raises(InvalidRequest, match=message):
        cp.set_group("AzureNodes", provider="local", **settings)


def test_groups_are_created_once(cp):
    cp.create_group("Gpu", provider="local")
    with pytest.raises(Conflict, match="exists already"):
        cp.create_group("gpu")
    with pytest.raises(InvalidRequest, match="letters, digits"):
        cp.create_group("bad name")


def test_an_evicted_spot_node_has_its_tasks_requeued_by_the_autoscaler_run_that_finds_it(
    cp, provider, clock
):
    """Azure evicts a Spot VM without a goodbye: its agent dies with it. The autoscaler run
    that finds its VM deallocated takes it Offline and requeues its tasks at once, without
    waiting out the heartbeat timeout."""
    managed(cp)
    [node] = cp.add_nodes("AzureNodes", 1, spot=True)
    assert node.spot
    provider.faults.never_joins.add(node.name)  # its "VM" runs; the double below is its agent
    cp.node_action("start", [node.name])
    agent = AgentDouble(cp, node.name, cores=2, groups=("AzureNodes",))
    assert agent.register().accepted
    job = cp.submit({"command": "x", "nodeGroups": ["AzureNodes"], "sweep": "1-2"})
    assert cp.schedule_pass() == 2
    cp.apply_events([agent.started((t.job_id, t.id, t.attempt)) for t in cp.list_tasks(job.id)])
    assert {t.state for t in cp.list_tasks(job.id)} == {TaskState.RUNNING}

    provider.evict(node.name)
    assert provider.power_states()[node.name] in OFF_STATES
    cp.autoscale()  # the same instant: no heartbeat timeout has passed
    offline = [e for e in cp.autoscale_log() if e.get("action") == "offline"]
    assert [e["node"] for e in offline] == [node.name] and "evicted" in offline[0]["reason"]
    # the run decided again for the requeued tasks: the group's one VM is started again
    assert cp.store.get_node(node.name).state is NodeState.STARTING
    tasks = cp.list_tasks(job.id)
    assert [(t.state, t.attempt, t.node) for t in tasks] == [(TaskState.QUEUED, 1, None)] * 2
    assert all("evicted" in (t.error or "") for t in tasks)
    assert [t.requeue_count for t in tasks] == [0, 0]  # an eviction uses up no retry
    # every task it started is Queued again, so is the job, as Slurm's goes back to PENDING
    again = cp.get_job(job.id)
    assert (again.state, again.start_time) == (JobState.QUEUED, None)


def test_stopping_a_node_a_multi_node_task_holds_drains_it_even_if_it_is_not_the_first(
    cp, provider
):
    """The second node of a 2-node (MPI) task runs no process of it, but its cores are held:
    a stop drains it (no VM stop under a running task)."""
    managed(cp)
    nodes = cp.add_nodes("AzureNodes", 2)
    for n in nodes:
        provider.faults.never_joins.add(n.name)  # its "VM" runs; the doubles are the agents
    cp.node_action("start", [n.name for n in nodes])
    for n in nodes:
        assert AgentDouble(cp, n.name, cores=2, groups=("AzureNodes",)).register().accepted
    job = cp.submit({"command": "mpirun x", "nodeGroups": ["AzureNodes"], "nodes": 2, "cores": 2})
    assert cp.schedule_pass() == 1
    [task] = cp.list_tasks(job.id)
    second = task.hosts[1].node
    assert second != task.node
    [stopped] = cp.node_action("stop", [second])
    assert stopped.state is NodeState.DRAINING


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def offline_node(*, beat_ago=1.0, provider="onprem", reason="taken offline by an admin", **kw):
    fields = {
        "name": "n2",
        "groups": ["OnPremNodes"],
        "cores": 2,
        "provider": provider,
        "state": NodeState.OFFLINE,
        "state_reason": reason,
        "incarnation": 3,
        "last_heartbeat": None if beat_ago is None else NOW - timedelta(seconds=beat_ago),
    }
    return Node(**(fields | kw))


STILL_RUNS = (
    "node n2's agent still runs (last heard {} s ago): stop it there first (it sends its "
    "stop), then remove the node"
)


@pytest.mark.parametrize(
    ("stored", "refusal"),
    [
        (offline_node(), STILL_RUNS.format(1)),  # its agent runs on: removing orphans it
        (offline_node(held="offline", beat_ago=14.6), STILL_RUNS.format(15)),
        (offline_node(beat_ago=16), None),  # not heard within the heartbeat timeout
        (offline_node(beat_ago=None), None),
        (offline_node(reason=lifecycle.AGENT_STOPPED), None),  # its agent said it stops
        (offline_node(incarnation=0, beat_ago=None), None),
        (offline_node(provider="local"), None),  # a VM: deleted with the node
        (
            offline_node(state=NodeState.ONLINE),
            "node n2 is Online; take it offline or stop it first",
        ),
        # a VM stopping already is not told to stop (a probe was, after hpc node stop)
        (
            offline_node(state=NodeState.DRAINING, provider="local"),
            "node n2 is Draining; remove it once it is Offline (it stops once its tasks end, "
            "or now: hpc node offline n2, which requeues them)",
        ),
        (
            offline_node(state=NodeState.STOPPING, provider="local"),
            "node n2 is Stopping; remove it once it is Offline (its VM is being stopped)",
        ),
        (  # an admin's drain (held) is no stop: stop it, or take it offline
            offline_node(state=NodeState.DRAINING, provider="local", held="drain"),
            "node n2 is Draining; take it offline or stop it first",
        ),
        (  # an on-prem node's drain never stops it
            offline_node(state=NodeState.DRAINING),
            "node n2 is Draining; take it offline or stop it first",
        ),
    ],
)
def test_removal_refusal(stored, refusal):
    assert removal_refusal(stored, now=NOW, timeout=timedelta(seconds=15)) == refusal


def test_an_on_prem_node_is_removed_only_once_its_agent_stopped(cp, clock):
    """Removing it while its agent runs would orphan the agent (it runs on for a node that
    is gone, and comes back without its groups when it restarts)."""
    n2 = register(cp, "n2")
    n3 = register(cp, "n3")
    cp.node_action("offline", ["n2", "n3"])
    clock.advance(3)
    n2.send(n2.heartbeat())
    with pytest.raises(Conflict) as refused:
        cp.node_action("remove", ["n3", "n2"])  # every node is checked before any goes
    assert str(refused.value) == STILL_RUNS.replace("n2", "n3").format(3)
    assert {n.name for n in cp.store.list_nodes()} == {"n2", "n3"}
    n3.send(n3.stopping())  # stopped there: it says so
    assert cp.node_action("remove", ["n3"]) == ["n3"]
    clock.advance(11)  # n2's agent was not heard within the heartbeat timeout: gone
    assert cp.node_action("remove", ["n2"]) == ["n2"]
    assert cp.store.list_nodes() == []


def test_a_vm_booted_again_says_its_vm_started_not_that_its_agent_restarted(cp, provider, clock):
    """A probe read "agent restarted" on every VM the autoscaler had booted again."""
    managed(cp)
    [node] = cp.add_nodes("AzureNodes", 1)
    provider.faults.never_joins.add(node.name)  # its "VM" runs; the double below is its agent
    for _boot in range(2):
        cp.node_action("start", [node.name])
        clock.advance(5)  # each boot's agent is a new process, started later
        agent = AgentDouble(cp, node.name, cores=2, groups=("AzureNodes",))
        assert agent.register().accepted
        stored = cp.store.get_node(node.name)
        assert (stored.state, stored.state_reason) == (
            NodeState.ONLINE,
            "VM started: its agent registered",
        )
        cp.node_action("stop", [node.name])
        # its VM's process gone (under load it may take a moment): a start then is taken
        wait_until(lambda: provider.power_states()[node.name] is PowerState.DEALLOCATED, 20)
        cp.autoscale()  # its deallocation known done: Offline
        assert cp.store.get_node(node.name).state is NodeState.OFFLINE
