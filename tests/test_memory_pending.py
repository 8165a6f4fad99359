"""Why a task that asks for memory waits: no Online node of its groups has that much (the
largest's memory said), some nodes' memory is unknown (agents older than memory reporting),
or its managed group's nodes are known too small, so the autoscaler starts none (how to
change it said). Where a managed group could start a node big enough, the usual autoscaler
reason applies. Pure tables, then the reasons through the control plane."""

# ruff: noqa: F811 - pytest fixtures imported from tests/test_control.py and tests/test_nodes_admin.py

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.pending import pending_reason
from shared.domain.pending_scaling import GroupScaling
from shared.domain.states import NodeState, TaskState
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_nodes_admin import managed, provider  # noqa: F401 - fixtures
from tests.test_pending import node, task

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AZ, P = "AzureNodes", "OnPremNodes"
G = 1024


def mem(name, memory_gb, *, cores=4, groups=(P,), state=NodeState.ONLINE, inc=1):
    n = node(name, cores=cores, groups=groups, state=state, inc=inc)
    n.memory_mb = None if memory_gb is None else memory_gb * G
    return n


def asking(memory_gb, *, cores=1, groups=(P,), nodes=1):
    t = task(cores=cores, groups=groups)
    return t.model_copy(update={"min_memory_mb": memory_gb * G, "nodes": nodes})


LIST = " (hpc node list shows each node's memory)"
PASS = "; the next scheduler pass places it"


@pytest.mark.parametrize(
    ("t", "nodes", "used", "expected"),
    [
        (
            asking(64),
            [mem("a", 16), mem("b", 8)],
            {},
            "needs 64 GB memory per node; the largest Online node in OnPremNodes has 16 GB" + LIST,
        ),
        (
            asking(64),
            [mem("a", 16), mem("old", None)],
            {},
            "needs 64 GB memory per node; the largest Online node in OnPremNodes has 16 GB; "
            "node old's memory is unknown (its agent is older than memory reporting: upgrade "
            "it)" + LIST,
        ),
        (
            asking(2),
            [mem("old1", None), mem("old2", None)],
            {},
            "needs 2 GB memory per node; the memory of nodes old1, old2 is unknown (their "
            "agents are older than memory reporting: upgrade them)" + LIST,
        ),
        # a node with the memory: the usual reasons, among the nodes that have it
        (
            asking(16),
            [mem("a", 16), mem("b", 8)],
            {},
            "next in line: 1 core(s) free in OnPremNodes" + PASS,
        ),
        (
            asking(16),
            [mem("a", 16), mem("b", 64)],
            {"a": 4, "b": 4},
            "waiting for 1 free core(s) on one node with 16 GB memory in OnPremNodes (8 of 8 "
            "cores busy; at most 0 free on any node)",
        ),
        (
            asking(32, cores=8),
            [mem("a", 64, cores=4), mem("b", 16, cores=16)],
            {},
            "needs 8 cores on one node with 32 GB memory; the largest Online node with 32 GB "
            "memory in OnPremNodes has 4",
        ),
        (
            asking(32, nodes=2),
            [mem("a", 64), mem("b", 16)],
            {},
            "needs 2 nodes with 1 core(s) and 32 GB memory each; OnPremNodes has 1 Online "
            "node(s) with 1 or more cores and 32 GB or more memory",
        ),
        # none asked: unchanged, nodes of unknown memory too
        (task(), [mem("old", None)], {}, "next in line: 1 core(s) free in OnPremNodes" + PASS),
    ],
)
def test_a_memory_task_says_which_memory_it_lacks(t, nodes, used, expected):
    assert pending_reason(t, nodes, used) == expected


def scaling(memory_gb, **kw):
    memory_mb = None if memory_gb is None else memory_gb * G
    return {AZ: GroupScaling(AZ, managed=True, node_memory_mb=memory_mb, **kw)}


TOO_SMALL = (
    "AzureNodes's nodes have 16 GB: the autoscaler starts none for it (bigger VMs, an admin's: hpc "
    "nodegroup set AzureNodes --size VM --node-memory SIZE, then hpc node add --group "
    "AzureNodes)"
)


@pytest.mark.parametrize(
    ("nodes", "group", "expected"),
    [
        # its Online nodes are too small and so would the nodes it starts
        (
            [mem("z1", 16, groups=(AZ,))],
            scaling(16),
            "needs 64 GB memory per node; the largest Online node in AzureNodes has 16 GB"
            + LIST
            + "; "
            + TOO_SMALL,
        ),
        (
            [mem("z1", None, groups=(AZ,), state=NodeState.OFFLINE, inc=0)],
            scaling(16),
            "no Online node in AzureNodes (1 Offline); " + TOO_SMALL,
        ),
        # it could start one big enough (or of unknown size): the usual reason, none here
        (
            [mem("z1", 16, groups=(AZ,))],
            scaling(128),
            "needs 64 GB memory per node; the largest Online node in AzureNodes has 16 GB" + LIST,
        ),
        (
            [mem("z1", None, groups=(AZ,), state=NodeState.OFFLINE, inc=0)],
            scaling(None, autoscale=False),
            "no Online node in AzureNodes (1 Offline); autoscaling is off for AzureNodes: turn "
            "it on (hpc nodegroup set AzureNodes --autoscale) or start its nodes (hpc node "
            "start --group AzureNodes)",
        ),
        # a Starting node known too small is not waited for
        (
            [mem("z1", 16, groups=(AZ,), state=NodeState.STARTING)],
            scaling(16),
            "no Online node in AzureNodes (1 Starting); " + TOO_SMALL,
        ),
        (
            [mem("z1", None, groups=(AZ,), state=NodeState.STARTING, inc=0)],
            scaling(None),
            "waiting for z1 to start in AzureNodes",
        ),
        # nor a mute one (registered before without a memory), as the autoscaler
        (
            [mem("z1", None, groups=(AZ,), state=NodeState.STARTING, inc=1)],
            scaling(None),
            "no Online node in AzureNodes (1 Starting)",
        ),
    ],
)
def test_a_managed_group_known_too_small_says_so(nodes, group, expected):
    assert pending_reason(asking(64, groups=(AZ,)), nodes, {}, (), group, NOW) == expected


def test_a_task_asking_no_memory_is_not_told_of_the_groups_memory():
    nodes = [mem("z1", None, groups=(AZ,), state=NodeState.OFFLINE, inc=0)]
    assert pending_reason(task(groups=(AZ,)), nodes, {}, (), scaling(16), NOW) == (
        "no Online node in AzureNodes (1 Offline); the autoscaler starts nodes of AzureNodes "
        "for it at its next run (a grow check is due)"
    )


# ------------------------------------------------------------- through the control plane


def queued_asking(cp, memory_gb):
    """A queued task of AzureNodes, as read, asking ``memory_gb`` (the reasons are asked of
    the task given; the job spec's ``minMemoryMb`` is another part's)."""
    cp.submit({"command": "x", "nodeGroups": [AZ], "cores": 1})
    [t] = [t for t in cp.store.queued_tasks(limit=10) if t.state is TaskState.QUEUED]
    return t.model_copy(update={"min_memory_mb": memory_gb * G})


def test_the_reasons_read_the_groups_node_memory_by_the_autoscalers_rule(cp, provider):
    """The group sets no nodeMemoryMb; its one registered node said 16 GB: a 64 GB task is
    told the group's nodes are too small; a 8 GB one is not."""
    managed(cp)
    [vm] = cp.add_nodes(AZ, 1)
    vm = cp.store.get_node(vm.name)
    vm.memory_mb, vm.incarnation = 16 * G, 1
    cp.store.put_node(vm)
    big = queued_asking(cp, 64)
    reason = cp.pending_reasons([big])[(big.job_id, big.id)]
    assert reason.endswith(TOO_SMALL), reason
    small = big.model_copy(update={"min_memory_mb": 8 * G})
    assert "16 GB" not in cp.pending_reasons([small])[(small.job_id, small.id)]
