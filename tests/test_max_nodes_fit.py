"""A job wider than its groups' maxNodes let be up at once: refused at submit (as Slurm's
EnforcePartLimits), and one queued before maxNodes was lowered is told it waits for maxNodes
to be raised, not for running work (shared/usecases/submit.py, shared/domain/ceiling.py)."""

from __future__ import annotations

import pytest

from shared.domain.ceiling import Room, never_fits
from shared.domain.models import Task
from shared.errors import InvalidRequest
from tests.test_control import clock, cp, register  # noqa: F401 - fixtures
from tests.test_nodes_admin import managed, provider  # noqa: F401 - fixtures

AZ, ONPREM = "AzureNodes", "OnPremNodes"


def wide(nodes: int, groups=(AZ,), cores: int = 1) -> Task:
    return Task(job_id=1, id=1, command="x", nodes=nodes, cores=cores, node_groups=list(groups))


@pytest.mark.parametrize(
    ("task", "never"),
    [
        (wide(2), False),
        (wide(3), True),
        (wide(3, cores=4), False),  # no node of it could hold it: not this rule's
        (wide(5, groups=(AZ, "Gpu")), False),  # 2 + 4 in two grown groups
        (wide(7, groups=(AZ, "Gpu")), True),
        (wide(3, groups=()), False),  # any group: both count
    ],
)
def test_a_task_never_fits_when_wider_than_the_max_nodes_of_its_groups(task, never):
    rooms = {AZ: Room(node_cores=2, whole=2, max_nodes=2), "Gpu": Room(2, 4, max_nodes=4)}
    assert never_fits(task, rooms) is never


def test_a_job_wider_than_max_nodes_is_refused_saying_what_to_fix(cp, provider):
    managed(cp)
    cp.add_nodes(AZ, 3)
    cp.set_group(AZ, max_nodes=2)
    with pytest.raises(InvalidRequest) as refused:
        cp.submit({"command": "hostname", "nodeGroups": [AZ], "nodes": 3})
    assert str(refused.value) == (
        "a task asks for 3 nodes with 1 core each but node group(s) AzureNodes may run at most "
        "2 such nodes at once (maxNodes: AzureNodes's is 2); ask for at most 2 nodes, or raise "
        "maxNodes (hpc nodegroup set AzureNodes --max N)"
    )
    cp.submit({"command": "hostname", "nodeGroups": [AZ], "nodes": 2})  # within it


def test_nodes_of_other_groups_count_and_autoscale_off_lets_an_admin_start_them(cp, provider):
    managed(cp)
    cp.add_nodes(AZ, 3)
    cp.set_group(AZ, max_nodes=2)
    register(cp, "n1")  # an on-prem node: its job may use it beside 2 VMs
    cp.submit({"command": "x", "nodeGroups": [ONPREM, AZ], "nodes": 3})
    with pytest.raises(InvalidRequest, match="may run at most 3 such nodes"):
        cp.submit({"command": "x", "nodeGroups": [ONPREM, AZ], "nodes": 4})
    cp.set_group(AZ, autoscale=False)  # maxNodes binds no admin's start then
    cp.submit({"command": "x", "nodeGroups": [AZ], "nodes": 3})


def test_a_job_queued_before_max_nodes_was_lowered_waits_for_it_to_be_raised(cp, provider):
    """The probe: a 3-node job under maxNodes 2 read "waits for running work: 0 of its nodes
    run work and its maxNodes is 2" on an idle cluster."""
    managed(cp)
    cp.add_nodes(AZ, 3)
    job = cp.submit({"command": "hostname", "nodeGroups": [AZ], "nodes": 3})
    cp.set_group(AZ, max_nodes=2)
    cp.autoscale()
    [task] = cp.list_tasks(job.id)
    reason = cp.pending_reasons([task])[(job.id, 1)]
    assert reason.endswith(
        "AzureNodes: 1 queued task of job 1 needs 3 nodes at once, more than its maxNodes 2 "
        "allows: it cannot run until maxNodes is raised (hpc nodegroup set AzureNodes --max 3); "
        "no node is started for it"
    ), reason
    assert "running work" not in reason
    assert all(n.state.value == "Offline" for n in cp.store.list_nodes())
    cp.set_group(AZ, max_nodes=3)  # what it says: the job is not lost, its VMs start
    cp.autoscale()
    assert sum(n.state.value == "Starting" for n in cp.store.list_nodes()) == 3


def test_a_one_node_job_under_max_nodes_0_reads_one_node(cp, provider):
    """An admin probe read "needs 1 nodes at once" of a job queued before maxNodes 0."""
    managed(cp)
    cp.add_nodes(AZ, 1)
    job = cp.submit({"command": "hostname", "nodeGroups": [AZ]})
    cp.set_group(AZ, max_nodes=0)
    cp.autoscale()
    notes = [e["reason"] for e in cp.autoscale_log() if e.get("action") == "note"]
    assert any("needs 1 node at once, more than its maxNodes 0" in n for n in notes), notes
    assert not any("1 nodes" in n for n in notes)
    assert cp.get_job(job.id).state.value == "Queued"
