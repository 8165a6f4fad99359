"""Node group and autoscaler defects a newcomer's probe found, on the use cases (embedded
store and bus, the local provider, agents played by tests/agent_double.py):

- ``hpc autoscale log --group Z`` matched every note with a z in its text (AzureNodes').
- A managed group with ``--min 1`` and no nodes logged "wants 1 nodes, starts 0 (...)" every
  run, with no hint that nodes had to be added; a job for it said to start agents, which a
  managed group refuses.
- ``provider: onprem`` was refused by create (and the API) while ``hpc nodegroup set`` took it.
- No way to delete a node group (a typo'd ``hpc agent run --group OnPremNode`` made one).
- ``hpc node stop`` of a node its group's minNodes needs was undone by the autoscaler within
  seconds, with nothing said.
- Requeuing a Finished task of a Finished job said only "job N is Finished".
"""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py

from __future__ import annotations

import pytest

from shared.domain.cluster import Meta
from shared.domain.states import JobState, NodeState
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.usecases import templates
from shared.usecases.autoscale_log import LOG_KEY
from shared.usecases.autoscale_memory import STATE_KEY
from tests.agent_double import AgentDouble
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixtures

N = NodeState


def burst(cp, name: str = "Burst", **settings):
    settings = {"max_nodes": 3, "node_cores": 2, **settings}
    return cp.create_group(name, provider="local", **settings)


def notes(cp, group: str | None = None) -> list[str]:
    return [e["reason"] for e in cp.autoscale_log(group=group) if e["action"] == "note"]


# --- 3: autoscale log --group filters by the entry's group ------------------------------


def test_the_log_of_a_group_lists_its_entries_only_not_every_note_naming_it(cp, provider):
    for name in ("Z", "Burst"):
        burst(cp, name)
    cp.store.put_meta(
        Meta(
            key=LOG_KEY,
            data={
                "entries": [
                    {"action": "note", "group": "AzureNodes", "reason": "AzureNodes: wants 2"},
                    {"action": "note", "group": "Burst", "reason": "Burst: has no nodes"},
                    {"action": "start", "group": "Z", "node": "z-1", "reason": "below min"},
                    # logged before notes carried their group: named first in the text
                    {"action": "note", "group": None, "reason": "Z: wants 1 nodes"},
                    {"action": "note", "group": None, "reason": "AzureNodes: Z-shaped"},
                ]
            },
        )
    )
    assert [e["reason"] for e in cp.autoscale_log(group="z")] == ["below min", "Z: wants 1 nodes"]
    assert [e["reason"] for e in cp.autoscale_log(group="BURST")] == ["Burst: has no nodes"]
    assert len(cp.autoscale_log(group="AzureNodes")) == 2
    with pytest.raises(NotFound):
        cp.autoscale_log(group="Nope")
    cp.delete_group("Burst")  # its history stays readable (a probe's was refused)
    assert [e["reason"] for e in cp.autoscale_log(group="burst")] == ["Burst: has no nodes"]


# --- 4 and 9: a managed group with no nodes says to add them -----------------------------


def test_a_group_below_its_min_with_no_nodes_says_to_add_them(cp, provider):
    burst(cp, min_nodes=1)
    cp.autoscale()
    [note] = notes(cp, "Burst")
    assert note.startswith("Burst: wants 1 node, starts 0: the group has no nodes to start")
    assert "add them with hpc node add --group Burst --count N" in note
    assert "1 nodes" not in note


def test_a_group_short_of_offline_nodes_says_how_many_to_add(cp, provider):
    burst(cp, min_nodes=3, max_nodes=4)
    cp.add_nodes("Burst", 1)
    cp.autoscale()
    [note] = notes(cp, "Burst")
    assert note.startswith("Burst: wants 3 nodes, starts 1 (maxNodes 4, 1 Offline, ")
    assert note.endswith("add some with hpc node add --group Burst --count 2")


def test_a_job_for_a_managed_group_with_no_nodes_says_to_add_them_not_to_start_agents(cp):
    cp.create_group("Burst", provider="local", max_nodes=3)
    register(cp, "n1")
    with pytest.raises(InvalidRequest) as refused:
        cp.submit({"command": "x", "nodeGroups": ["burst"]})
    message = str(refused.value)
    assert "Burst has no nodes yet" in message
    assert "hpc node add --group Burst --count N" in message
    assert "agent" not in message
    cp.create_group("Lab")
    with pytest.raises(InvalidRequest, match=r"start agents \(hpc up / hpc agent run --group Lab"):
        cp.submit({"command": "x", "nodeGroups": ["Lab"]})


# --- 5: provider onprem on create ----------------------------------------------------------


def test_create_takes_provider_onprem_as_set_does(cp, provider):
    group = cp.create_group("X2", provider="onprem")
    assert group.provider is None
    assert cp.set_group("X2", provider="OnPrem").provider is None
    with pytest.raises(InvalidRequest, match=r"give local, or onprem \(JSON null\) for on-prem"):
        cp.create_group("X3", provider="on-prem")


# --- 6: delete a node group ----------------------------------------------------------------


def test_a_group_with_nothing_in_it_is_deleted_whatever_the_case(cp):
    cp.create_group("OnPremNode")
    assert cp.delete_group("onpremnode") == "OnPremNode"
    assert [g.name for g in cp.store.list_groups()] == ["AzureNodes", "OnPremNodes"]
    with pytest.raises(NotFound, match="node group 'OnPremNode' does not exist"):
        cp.delete_group("OnPremNode")
    cp.create_group("onpremNODE")  # the name is free again


def test_a_group_with_nodes_is_not_deleted_and_the_refusal_names_them(cp):
    cp.create_group("Lab")
    for i in range(7):
        register(cp, f"n{i}", groups=("Lab",))
    with pytest.raises(Conflict) as refused:
        cp.delete_group("Lab")
    message = str(refused.value)
    assert "Lab has 7 node(s) (n0, n1, n2, n3, n4 and 2 more)" in message
    assert "hpc node set NAME --group G" in message and "hpc node remove NAME" in message
    assert refused.value.fields["nodes"] == [f"n{i}" for i in range(7)]
    assert "Lab" in [g.name for g in cp.store.list_groups()]


def test_a_group_a_template_names_is_not_deleted(cp):
    """A probe deleted a group its Default template allowed: every plain submit was then
    refused, and so was any change of that template."""
    cp.create_group("Tmp2")
    templates.put(cp.deps, "Default", {"allowedNodeGroups": ["tmp2", "OnPremNodes"]})
    with pytest.raises(Conflict, match="Tmp2 is named by template.s. Default") as refused:
        cp.delete_group("Tmp2")
    assert refused.value.fields["templates"] == ["Default"]
    templates.delete(cp.deps, "Default")
    assert cp.delete_group("Tmp2") == "Tmp2"


def test_a_group_queued_or_running_jobs_name_is_not_deleted(cp):
    cp.create_group("Lab")
    register(cp, "n1", groups=("Lab",))
    jobs = [cp.submit({"command": "x", "nodeGroups": ["Lab"]}) for _ in range(2)]
    cp.submit({"command": "y"})  # names no group: not in the way
    cp.node_action("offline", ["n1"])
    cp.store.delete_node(cp.store.get_node("n1"))
    with pytest.raises(Conflict) as refused:
        cp.delete_group("Lab")
    assert f"named by 2 Queued or Running job(s) ({jobs[0].id}, {jobs[1].id})" in str(refused.value)
    assert refused.value.fields["jobs"] == [j.id for j in jobs]
    for job in jobs:
        cp.cancel_job(job.id)
    assert cp.get_job(jobs[0].id).state is JobState.CANCELED
    assert cp.delete_group("Lab") == "Lab"


def test_the_default_groups_are_not_deleted(cp):
    for name in ("OnPremNodes", "azurenodes"):
        with pytest.raises(Conflict, match="one of the cluster's default groups"):
            cp.delete_group(name)


def test_the_autoscaler_forgets_a_deleted_group_and_runs_on(cp, provider):
    burst(cp, min_nodes=1)
    burst(cp, "Other", min_nodes=1)
    cp.autoscale()  # both remember a grow check and say they have no nodes
    memory = cp.store.get_meta(STATE_KEY).data
    assert {"Burst", "Other"} <= set(memory["groups"]) and "Burst" in memory["said"]
    assert cp.delete_group("Burst") == "Burst"
    memory = cp.store.get_meta(STATE_KEY).data
    assert "Burst" not in memory["groups"] and "Burst" not in memory["said"]
    assert "Other" in memory["groups"]
    cp.autoscale()
    burst(cp, "BURST")  # created again: a group of its own, nothing remembered
    cp.autoscale()
    assert "BURST" not in cp.store.get_meta(STATE_KEY).data["said"]  # min 0: nothing to say


def test_a_node_added_while_its_group_is_deleted_keeps_the_group(cp, provider, monkeypatch):
    """Found by a review: an add writes the node, not the group, so a delete that checked for
    nodes just before could delete the group under it (its VM then ruled by no group)."""
    burst(cp)
    real = cp.store.delete_group

    def add_first(group):  # the add lands between the delete's check and its write
        monkeypatch.setattr(cp.store, "delete_group", real)
        cp.add_nodes("Burst", 1)
        real(group)

    monkeypatch.setattr(cp.store, "delete_group", add_first)
    with pytest.raises(Conflict, match="got node\\(s\\) while it was being deleted"):
        cp.delete_group("Burst")
    group = next(g for g in cp.store.list_groups() if g.name == "Burst")
    assert (group.provider, group.max_nodes) == ("local", 3)  # its settings came back
    [node] = [n for n in cp.store.list_nodes() if "Burst" in n.groups]


def test_an_add_that_finds_its_group_deleted_meanwhile_fails_and_leaves_nothing(
    cp, provider, monkeypatch
):
    """The other order of the race above: the delete checked, deleted and listed the nodes
    before the add wrote its node. The delete was acknowledged, so the add loses: it deletes
    its node before any VM is made (a review: putting the group back undid an answered
    delete, maybe with settings an admin had changed)."""
    burst(cp)
    real = cp.store.put_node

    def delete_first(node):  # the whole delete lands between the add's read and its write
        monkeypatch.setattr(cp.store, "put_node", real)
        assert cp.delete_group("Burst") == "Burst"
        real(node)

    monkeypatch.setattr(cp.store, "put_node", delete_first)
    with pytest.raises(NotFound, match="was deleted while nodes were added to it: 0 nodes"):
        cp.add_nodes("Burst", 1)
    assert "Burst" not in {g.name for g in cp.store.list_groups()}
    assert not [n for n in cp.store.list_nodes() if "Burst" in n.groups]
    assert provider.power_states() == {}  # no VM was made (it is created after the check)


# --- 7: an admin's stop the autoscaler would undo says so --------------------------------


def online(cp, name: str) -> None:
    node = cp.store.get_node(name)
    node.state = N.ONLINE
    cp.store.put_node(node)


def test_stopping_a_node_the_groups_min_needs_warns_that_the_autoscaler_restarts_it(cp, provider):
    burst(cp, min_nodes=1)
    [b1, b2] = cp.add_nodes("Burst", 2)
    online(cp, b1.name)
    online(cp, b2.name)
    first = cp.node_action("stop", [b1.name])
    assert cp.stop_warnings(first) == []  # b2 still keeps the floor
    second = cp.node_action("stop", [b2.name])
    [warning] = cp.stop_warnings(second)
    assert warning.startswith(
        "burst-2: the autoscaler will start it again to keep Burst's minNodes 1 (0 nodes up "
        "without it)"
    )
    assert "hpc node offline burst-2" in warning and "hpc nodegroup set Burst --min 0" in warning
    b1_node = cp.store.get_node(b1.name)
    b1_node.state = N.OFFLINE  # its VM stopped: the autoscaler may start either
    cp.store.put_node(b1_node)
    [either] = cp.stop_warnings([cp.store.get_node(b2.name)])
    assert "start one of burst-2, burst-1 again" in either  # either may be started:
    assert "hold them with hpc node offline burst-2 burst-1" in either  # hold both


def test_a_busy_node_stopped_draining_counts_as_down_for_the_warning(cp, provider):
    """An admin probe: ``hpc node stop burst-3 burst-4`` of two busy VMs (Draining, to stop
    once empty) printed no warning, and the floor then started a VM the admin had stopped."""
    burst(cp, min_nodes=1)
    [b1, b2] = cp.add_nodes("Burst", 2)
    online(cp, b1.name)
    draining = cp.store.get_node(b2.name)
    draining.state = N.DRAINING  # a busy VM's stop: Draining, not held
    cp.store.put_node(draining)
    [warning] = cp.stop_warnings(cp.node_action("stop", [b1.name]))
    assert warning.startswith("burst-1: the autoscaler will start it again to keep Burst's")
    assert "(0 nodes up without it)" in warning
    # an admin's drain holds it up (Drained): it keeps the floor
    cp.store.put_node(cp.store.get_node(b2.name).model_copy(update={"held": "drain"}))
    online(cp, b1.name)
    assert cp.stop_warnings(cp.node_action("stop", [b1.name])) == []


def test_no_warning_when_the_autoscaler_leaves_the_group_alone(cp, provider):
    burst(cp, min_nodes=1, autoscale=False)
    [b1] = cp.add_nodes("Burst", 1)
    online(cp, b1.name)
    assert cp.stop_warnings(cp.node_action("stop", [b1.name])) == []
    burst(cp, "Floorless")
    [f1] = cp.add_nodes("Floorless", 1)
    online(cp, f1.name)
    assert cp.stop_warnings(cp.node_action("stop", [f1.name])) == []


def test_the_autoscaler_starts_a_stopped_node_for_min_but_never_a_held_one(cp, provider):
    """The server side as the README says: a stop is undone for minNodes; an offline holds."""
    burst(cp, min_nodes=1)
    [b1] = cp.add_nodes("Burst", 1)
    cp.node_action("offline", [b1.name])
    cp.autoscale()
    assert cp.store.get_node(b1.name).state is N.OFFLINE
    assert any("1 held by an admin" in n for n in notes(cp, "Burst"))


# --- 8: requeue of a Finished job's task names the task's state ---------------------------


def test_requeue_of_a_finished_jobs_task_says_only_failed_or_canceled_tasks_requeue(cp):
    n1 = register(cp, "n1", cores=1)
    job = cp.submit({"command": "x"})
    cp.schedule_pass()
    n1.run_all()
    assert cp.get_job(job.id).state is JobState.FINISHED
    with pytest.raises(Conflict) as refused:
        cp.requeue_task(job.id, 1)
    assert str(refused.value) == (
        f"task {job.id}.1 is Finished (its job {job.id} is Finished); only a Failed or "
        "Canceled task can be requeued"
    )


def test_a_waiting_tasks_reason_keeps_the_autoscalers_word_until_its_next_grow_check(
    cp, provider, clock
):
    """The live probe: a task for a group at its max read "the autoscaler considers growing
    AzureNodes every 60 s: next in 38 s" for ever; the runs between grow checks (every 5 s)
    said nothing and wiped what the check had said (only the log kept "starts 0")."""
    burst(cp, max_nodes=1, grow_interval_s=60)
    [vm] = cp.add_nodes("Burst", 1)
    cp.node_action("start", [vm.name])
    assert AgentDouble(cp, vm.name, cores=2, groups=("Burst",)).register().accepted
    job = cp.submit({"command": "x", "nodeGroups": ["Burst"], "cores": 2, "sweep": "1-2"})
    assert cp.schedule_pass() == 1  # task 1 holds the one node; task 2 waits for another

    def reason() -> str:
        return cp.pending_reasons(cp.list_tasks(job.id))[(job.id, 2)]

    # task 2 cannot fit under maxNodes 1 beside task 1: it waits for running work (and
    # the autoscaler says so every run, shared.domain.ceiling), not for a grow
    waits = "Burst: 1 queued task of job 1 waits for running work: 1 of its nodes run work"
    cp.autoscale()
    first = reason()
    assert waits in first
    clock.advance(5)
    cp.autoscale()  # between checks: decides no growth, and keeps what it said
    assert waits in reason()
    cp.set_group("Burst", max_nodes=2)
    clock.advance(60)
    cp.autoscale()  # the next check says anew: room under the max, but no node to start
    again = reason()
    assert first != again and "add some with hpc node add --group Burst --count 1" in again
    clock.advance(5)
    cp.autoscale()  # between checks: the grow check's word is kept
    assert "add some with hpc node add --group Burst --count 1" in reason()


def test_the_floor_starts_the_longest_offline_vm_not_the_one_an_admin_just_stopped(
    cp, provider, clock
):
    """A probe: ``hpc node stop`` of a group's only VM up, and the minNodes floor started
    that very VM again while another had been Offline all along. Offline VMs start the
    longest Offline first (then by name)."""
    burst(cp, min_nodes=1)
    [b1, b2] = cp.add_nodes("Burst", 2)
    online(cp, b1.name)
    clock.advance(600)
    cp.node_action("stop", [b1.name])
    clock.advance(5)  # its agent said it stops (lifecycle.stopping) before the timer ran
    stopped = cp.store.get_node(b1.name)
    stopped.move_to(N.OFFLINE, reason="agent stopped", now=clock())
    cp.store.put_node(stopped)
    for _ in range(3):
        clock.advance(30)
        cp.autoscale()
    assert cp.store.get_node(b1.name).state is N.OFFLINE
    assert cp.store.get_node(b2.name).state is N.STARTING
    [start] = [e for e in cp.autoscale_log(group="Burst") if e["action"] == "start"]
    assert start["node"] == b2.name and "below its minNodes 1" in start["reason"]


def test_an_admins_actions_on_vms_are_in_the_autoscale_log(cp, provider):
    """An admin probe: `hpc node start azure-1` left no entry; looking back, the log showed
    only the autoscaler stopping the VM as idle, not who had started it."""
    burst(cp)
    [b1] = cp.add_nodes("Burst", 1)
    register(cp, "n1")  # an on-prem node: not the autoscaler's, not logged
    cp.act_on_node("start", b1.name, by="alice")
    cp.act_on_node("drain", "n1", reason="drained by alice: disk", by="alice")
    cp.act_on_node("start", b1.name, by="alice")  # already Starting: nothing done, no entry
    entries = [(e["action"], e["node"], e["group"], e["reason"]) for e in cp.autoscale_log()]
    assert entries == [("start", b1.name, "Burst", "started by alice")]
    assert cp.autoscale_log(group="burst") == cp.autoscale_log()


def test_the_floor_warning_says_how_many_the_autoscaler_starts(cp, provider):
    """A third probe: minNodes 3, one node left up: "will start one of ..." where two start."""
    burst(cp, min_nodes=3, max_nodes=4)
    nodes = cp.add_nodes("Burst", 4)
    for n in nodes[:3]:
        online(cp, n.name)
    cp.node_action("stop", [nodes[0].name])
    [warning] = cp.stop_warnings(cp.node_action("stop", [nodes[1].name]))
    assert "will start 2 of burst-2, burst-4 again" in warning, warning  # burst-1: Stopping
    assert "(1 node up without it)" in warning


def test_the_autoscale_log_is_in_time_order_whoever_wrote_last(cp):
    """A run's entries carry its start time; an admin's action logged while it ran was
    written first (a probe's log read 18:19:17, 18:19:17, 18:19:18, 18:19:17)."""
    from shared.usecases.autoscale_log import _append, read_log

    def entry(t: str, action: str) -> dict:
        return {"time": t, "action": action, "node": "azure-1", "group": "AzureNodes",
                "reason": action}  # fmt: skip

    _append(cp.deps, [entry("2026-12-03T18:19:17+00:00", "start")])
    _append(cp.deps, [entry("2026-12-03T18:19:18+00:00", "drain")])  # the admin's, meanwhile
    _append(cp.deps, [entry("2026-12-03T18:19:17+00:00", "stop")])  # the run's, written last
    assert [e["action"] for e in read_log(cp.deps)] == ["start", "stop", "drain"]
