"""Why a task that waits for a managed group's nodes waits longer than a boot: the
autoscaler's memory and last word in its pending reason (the rule as a table, then through
the control plane with the local provider and a real autoscaler run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.growshrink import GroupMemory
from shared.domain.pending import pending_reason
from shared.domain.pending_scaling import GroupScaling, scaling_reason
from shared.domain.states import NodeState, TaskState
from tests.agent_double import AgentDouble
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_nodes_admin import managed, provider  # noqa: F401 - fixtures
from tests.test_pending import node, task

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AZ = "AzureNodes"


def memory(**fields):
    return GroupMemory(**fields)


@pytest.mark.parametrize(
    ("group", "named", "expected"),
    [
        (GroupScaling(AZ, managed=True), [AZ], None),  # never ran: its next run may start one
        (
            GroupScaling(AZ, managed=False),
            [AZ],
            "no autoscaler here starts AzureNodes's nodes: start them "
            "(hpc node start --group AzureNodes)",
        ),
        (
            GroupScaling(AZ, managed=True, autoscale=False),
            [AZ],
            "autoscaling is off for AzureNodes: turn it on (hpc nodegroup set AzureNodes "
            "--autoscale) or start its nodes (hpc node start --group AzureNodes)",
        ),
        (GroupScaling(AZ, managed=True, autoscale=False), [], None),  # not asked for
        (
            GroupScaling(
                AZ,
                managed=True,
                memory=memory(backoff_until=NOW + timedelta(seconds=90), last_failure="quota"),
            ),
            [AZ],
            "AzureNodes starts no node for 90 s more (backing off after: quota)",
        ),
        (  # a backoff that ran out holds nothing
            GroupScaling(AZ, managed=True, memory=memory(backoff_until=NOW, last_failure="q")),
            [AZ],
            None,
        ),
        (
            GroupScaling(
                AZ,
                managed=True,
                notes=("1 queued task(s) it could run, below GrowThreshold 3",),
                said_at=NOW - timedelta(seconds=4),
            ),
            [AZ],
            "the autoscaler 4 s ago: AzureNodes: 1 queued task(s) it could run, below "
            "GrowThreshold 3",
        ),
        (
            GroupScaling(
                AZ,
                managed=True,
                grow_interval_s=300,
                memory=memory(last_grow_check=NOW - timedelta(seconds=100)),
            ),
            [AZ],
            "the autoscaler considers growing AzureNodes every 300 s (GrowInterval): next in 200 s",
        ),
        (  # that check was quiet (no queued work): the next run checks again at once
            GroupScaling(
                AZ,
                managed=True,
                grow_interval_s=300,
                memory=memory(last_grow_check=NOW - timedelta(seconds=100), quiet=True),
            ),
            [AZ],
            None,
        ),
        (  # the check is due: the next run grows
            GroupScaling(
                AZ,
                managed=True,
                grow_interval_s=300,
                memory=memory(last_grow_check=NOW - timedelta(seconds=300)),
            ),
            [AZ],
            None,
        ),
    ],
)
def test_why_the_autoscaler_starts_no_node(group, named, expected):
    assert scaling_reason(group, NOW, named) == expected


def test_the_autoscalers_word_is_added_only_where_the_task_waits_for_nodes():
    off = {AZ: GroupScaling(AZ, managed=True, autoscale=False)}
    t = task(groups=(AZ,))
    offline = [node("z", groups=(AZ,), state=NodeState.OFFLINE)]
    assert pending_reason(t, offline, {}, (), off, NOW) == (
        "no Online node in AzureNodes (1 Offline); " + scaling_reason(off[AZ], NOW, [AZ])
    )
    starting = [node("z", groups=(AZ,), state=NodeState.STARTING)]
    assert pending_reason(t, starting, {}, (), off, NOW) == "waiting for z to start in AzureNodes"
    busy = [node("z", cores=1, groups=(AZ,))]
    assert pending_reason(t, busy, {"z": 1}, (), off, NOW).endswith("autoscaling is off for "
        "AzureNodes: turn it on (hpc nodegroup set AzureNodes --autoscale) or start its nodes "
        "(hpc node start --group AzureNodes)")  # fmt: skip
    assert pending_reason(t, [node("z", groups=(AZ,))], {}, (), off, NOW).startswith("next in")
    assert (
        pending_reason(t, offline, {}, (), off, None) == "no Online node in AzureNodes (1 Offline)"
    )


def test_a_note_said_before_a_node_of_its_group_changed_is_not_quoted():
    """A probe read "wants 991 nodes, starts 2 (maxNodes 2, 2 Offline...)" in a pending
    reason while both nodes were Online and busy: the note was older than their start."""
    said = {
        AZ: GroupScaling(
            AZ, managed=True, notes=("wants 9 nodes, starts 2 (2 Offline)",), said_at=NOW
        )
    }
    t = task(groups=(AZ,))
    before = node("z", cores=1, groups=(AZ,))
    before.state_time = NOW - timedelta(seconds=60)
    assert "2 Offline" in pending_reason(
        t, [before], {"z": 1}, (), said, NOW + timedelta(seconds=30)
    )
    after = node("z", cores=1, groups=(AZ,))
    after.state_time = NOW + timedelta(seconds=5)  # Online after the note
    reason = pending_reason(t, [after], {"z": 1}, (), said, NOW + timedelta(seconds=30))
    assert "2 Offline" not in reason and reason.startswith("waiting for")


def queued_reason(cp):
    [t] = [t for t in cp.store.queued_tasks(limit=10) if t.state is TaskState.QUEUED]
    return cp.pending_reasons([t])[(t.job_id, t.id)]


def test_a_task_below_the_grow_threshold_says_so(cp, provider, clock):
    managed(cp, grow_threshold=3)
    cp.add_nodes(AZ, 2)
    cp.submit({"command": "x", "nodeGroups": [AZ], "cores": 2})
    cp.autoscale()
    assert {n.state for n in cp.store.list_nodes()} == {NodeState.OFFLINE}
    assert queued_reason(cp) == (
        "no Online node in AzureNodes (2 Offline); the autoscaler 0 s ago: AzureNodes: "
        "1 queued task(s) it could run, below GrowThreshold 3 "
        "(hpc nodegroup set AzureNodes --grow-threshold N)"
    )
    cp.set_group(AZ, grow_threshold=1)  # what the reason says to change: it grows
    assert "GrowThreshold" not in queued_reason(cp)  # the note no longer holds
    assert queued_reason(cp) == (
        "no Online node in AzureNodes (2 Offline); the autoscaler starts nodes of AzureNodes "
        "for it at its next grow check, in 60 s (GrowInterval 60 s)"
    )
    clock.advance(60)  # at its next grow check (GrowInterval)
    cp.autoscale()
    assert "waiting for azure-1 to start" in queued_reason(cp)


def test_a_task_for_a_group_not_autoscaled_says_how_to_start_it(cp, provider):
    managed(cp, autoscale=False)
    cp.add_nodes(AZ, 1)
    cp.submit({"command": "x", "nodeGroups": [AZ], "cores": 2})
    cp.autoscale()
    assert "autoscaling is off for AzureNodes" in queued_reason(cp)


def test_a_task_after_a_quiet_grow_check_is_grown_for_at_the_next_run(cp, provider, clock):
    managed(cp, grow_interval_s=300)
    cp.add_nodes(AZ, 1)
    cp.autoscale()  # a quiet grow check: nothing queued
    clock.advance(120)
    cp.submit({"command": "x", "nodeGroups": [AZ], "cores": 2})
    assert queued_reason(cp) == (  # the next run grows
        "no Online node in AzureNodes (1 Offline); the autoscaler starts nodes of AzureNodes "
        "for it at its next run (a grow check is due)"
    )
    cp.autoscale()
    assert "waiting for azure-1 to start" in queued_reason(cp)


def test_a_wide_task_short_of_online_nodes_hears_the_autoscaler_and_the_nodes_coming():
    """A re-probe: an any-group 4-node task waiting for its one VM said only "needs 4 nodes
    ...; 3 Online node(s)", which read as a task that could never run."""
    off = {AZ: GroupScaling(AZ, managed=True, autoscale=False)}
    wide = task(groups=(AZ,)).model_copy(update={"nodes": 2})
    nodes = [node("z1", groups=(AZ,)), node("z2", groups=(AZ,), state=NodeState.STARTING)]
    reason = pending_reason(wide, nodes, {}, (), off, NOW)
    assert reason.startswith("needs 2 nodes with 1 core(s) each; AzureNodes has 1 Online ")
    assert "; z2 starting; " in reason and reason.endswith(scaling_reason(off[AZ], NOW, [AZ]))


# --- a group at its maxNodes says so, whatever the age of the autoscaler's note ----------

AT_MAX = (
    "AzureNodes is at its maxNodes 2 (2 nodes up): the autoscaler starts no more of its "
    "nodes; raise it (hpc nodegroup set AzureNodes --max N) or wait for its nodes"
)
CHECKED = memory(last_grow_check=NOW - timedelta(seconds=20))
NOTE = ("wants 1 node, starts 0 (maxNodes 2, 0 Offline, 10 starts left this run)",)


@pytest.mark.parametrize(
    ("group", "up", "changed_at", "expected"),
    [
        pytest.param(  # the probe: the note is older than a node's change, a check is due
            GroupScaling(AZ, True, max_nodes=2, memory=CHECKED, notes=NOTE, said_at=NOW),
            2,
            NOW + timedelta(seconds=1),
            AT_MAX,
            id="at-max-note-stale",
        ),
        pytest.param(
            GroupScaling(AZ, True, max_nodes=2, memory=CHECKED),
            2,
            None,
            AT_MAX,
            id="at-max-no-note",
        ),
        pytest.param(
            GroupScaling(AZ, True, max_nodes=2, notes=NOTE, said_at=NOW - timedelta(seconds=3)),
            2,
            NOW - timedelta(seconds=9),
            f"{AT_MAX}; the autoscaler 3 s ago: AzureNodes: {NOTE[0]}",
            id="at-max-note-fresh-quoted-too",
        ),
        pytest.param(
            GroupScaling(AZ, True, max_nodes=2, memory=CHECKED),
            3,
            None,
            AT_MAX.replace("at its", "over its").replace("(2 nodes up)", "(3 nodes up)"),
            id="over-max",
        ),
        pytest.param(
            GroupScaling(
                AZ, True, max_nodes=2, memory=memory(backoff_until=NOW + timedelta(seconds=90))
            ),
            2,
            None,
            AT_MAX,
            id="at-max-backing-off",
        ),
        pytest.param(
            GroupScaling(AZ, True, max_nodes=3, memory=CHECKED),
            2,
            None,
            "the autoscaler considers growing AzureNodes every 60 s (GrowInterval): next in 40 s",
            id="below-max",
        ),
        pytest.param(
            GroupScaling(AZ, True, memory=CHECKED),
            2,
            None,
            "the autoscaler considers growing AzureNodes every 60 s (GrowInterval): next in 40 s",
            id="max-unknown",
        ),
        pytest.param(
            GroupScaling(AZ, True, max_nodes=0),
            0,
            None,
            "the maxNodes of AzureNodes is 0, so the autoscaler starts none of its nodes: raise "
            "it (hpc nodegroup set AzureNodes --max N)",
            id="max-zero",
        ),
    ],
)
def test_a_group_at_its_max_nodes_says_so_whatever_its_notes_age(group, up, changed_at, expected):
    assert scaling_reason(group, NOW, [AZ], changed_at=changed_at, up=up) == expected


def test_a_task_waiting_for_a_group_at_its_max_hears_so_after_a_node_joined(cp, provider, clock):
    """The probe: the grow check said "wants 1 node, starts 0 (maxNodes 2 ...)"; a node
    joined after it, which made that note stale, and the reason read "the autoscaler
    considers growing AzureNodes every 60 s" though the group could not grow."""
    cp.set_group(AZ, provider="local", max_nodes=2, node_cores=2)
    vms = cp.add_nodes(AZ, 2)
    cp.node_action("start", [vm.name for vm in vms])
    assert AgentDouble(cp, vms[0].name, cores=2, groups=(AZ,)).register().accepted
    job = cp.submit({"command": "x", "nodeGroups": [AZ], "cores": 2, "sweep": "1-3"})
    assert cp.schedule_pass() == 1
    cp.autoscale()  # the grow check: task 2 counts on the Starting node; task 3 wants one more
    clock.advance(5)
    assert AgentDouble(cp, vms[1].name, cores=2, groups=(AZ,)).register().accepted
    assert cp.schedule_pass() == 1
    reason = cp.pending_reasons(cp.list_tasks(job.id))[(job.id, 3)]
    assert reason.endswith(AT_MAX)
    assert "considers growing" not in reason
