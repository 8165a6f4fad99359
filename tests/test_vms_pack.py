"""VMs pack (best fit), on-prem nodes spread: the probe behind it, end to end through the
use cases (embedded store and bus, the local provider, agents played by AgentDouble).

A job of 1-, 1-, 1- and 4-core tasks for 4-core VMs, every VM Offline: the autoscaler
counts 2 VMs (the 1-core tasks share one); the scheduler spread the 1-core tasks 2 + 1
over the two, the 4-core task waited, and a third VM was started a timer run later.
"""

from __future__ import annotations

from shared.domain.states import NodeState, TaskState
from tests.agent_double import AgentDouble
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixtures


def test_one_core_tasks_pack_onto_one_vm_and_the_four_core_task_takes_the_other(
    cp,  # noqa: F811
    provider,  # noqa: F811
):
    cp.set_group("AzureNodes", provider="local", max_nodes=4, node_cores=4)
    cp.add_nodes("AzureNodes", 4)
    tasks = [{"command": "x", "cores": c} for c in (1, 1, 1, 4)]
    job = cp.submit({"name": "mixed", "nodeGroups": ["AzureNodes"], "tasks": tasks})
    cp.autoscale()
    starting = [n for n in cp.store.list_nodes() if n.state is NodeState.STARTING]
    assert len(starting) == 2  # the autoscaler's count: 1 + 1 + 1 on one VM, 4 on another
    for n in starting:
        provider.faults.never_joins.add(n.name)  # its "VM" runs; the double is its agent
        assert AgentDouble(cp, n.name, cores=4, groups=("AzureNodes",)).register().accepted
    assert cp.schedule_pass() == 4  # all four placed now: none waits for a third VM
    placed = {t.id: t.node for t in cp.list_tasks(job.id)}
    assert placed[1] == placed[2] == placed[3] != placed[4]
    cp.autoscale()
    assert sum(n.state is not NodeState.OFFLINE for n in cp.store.list_nodes()) == 2


def test_on_prem_nodes_still_spread(cp):  # noqa: F811
    """Machines already paid for: each task gets the most free one (Slurm's CR_LLN)."""
    register(cp, "p1", cores=4)
    register(cp, "p2", cores=4)
    job = cp.submit({"command": "x", "sweep": "1-2"})
    assert cp.schedule_pass() == 2
    assert {t.node for t in cp.list_tasks(job.id)} == {"p1", "p2"}
    assert {t.state for t in cp.list_tasks(job.id)} == {TaskState.DISPATCHING}
