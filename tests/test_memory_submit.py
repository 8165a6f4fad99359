# ruff: noqa: F811 - pytest fixtures imported from other test modules
"""Submit's refusal of a memory request no node could run, cores and memory together: a
task's nodes must each have both its cores and its memory (a node of unknown memory may),
or a managed group it may use must be able to start such nodes (its node memory as the
autoscaler takes it). The refusal says what would be accepted."""

from __future__ import annotations

import pytest

from shared.domain.cluster import Node
from shared.errors import InvalidRequest
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_memory_edges import G, azure, join, vm


def refusal(cp, spec: dict) -> str:
    jobs = len(cp.list_jobs())
    with pytest.raises(InvalidRequest) as refused:
        cp.submit(spec if "tasks" in spec else {"command": "x", **spec})
    assert len(cp.list_jobs()) == jobs  # no job stored
    return str(refused.value)


def wide_and_deep(cp) -> None:
    """Node a has the cores, node b the memory: neither has both."""
    join(cp, "a", 16 * G, cores=8)
    join(cp, "b", 64 * G, cores=2)


def test_cores_on_one_node_and_memory_on_another_is_refused(cp) -> None:
    wide_and_deep(cp)
    assert refusal(cp, {"cores": 8, "minMemoryMb": "64G"}) == (
        "a task asks for 1 node with 8 cores and 64 GB each but the cluster has 0 such nodes; "
        "ask for at most 16 GB memory or 2 cores"
    )
    assert cp.submit({"command": "x", "cores": 8, "minMemoryMb": "16G"}).id == 1
    assert cp.submit({"command": "x", "cores": 2, "minMemoryMb": "64G"}).id == 2
    assert (
        cp.submit({"command": "x", "cores": {"min": 2, "max": 8}, "minMemoryMb": "64G"}).id == 3
    )  # its min


def test_more_nodes_of_that_memory_than_there_are_is_refused(cp) -> None:
    join(cp, "a", 64 * G)
    join(cp, "b", 16 * G)
    assert refusal(cp, {"nodes": 2, "minMemoryMb": "64G"}) == (
        "a task asks for 2 nodes with 1 core and 64 GB each but the cluster has 1 such node; "
        "ask for at most 16 GB memory or 1 node"
    )
    assert cp.submit({"command": "x", "nodes": 1, "minMemoryMb": "64G"}).id == 1
    assert cp.submit({"command": "x", "nodes": 2, "minMemoryMb": "16G"}).id == 2


def test_a_node_of_unknown_memory_counts_as_one_that_may_have_it(cp) -> None:
    join(cp, "a", 64 * G)
    join(cp, "b", None)  # an older agent: says none
    assert cp.submit({"command": "x", "nodes": 2, "minMemoryMb": "64G"}).id == 1
    join(cp, "c", None, cores=1)
    assert refusal(cp, {"nodes": 2, "cores": 2, "minMemoryMb": "128G"}).endswith(
        "has 1 such node; ask for at most 64 GB memory or 1 core or 1 node"
    )  # a and b may have 64 GB; b and c may have 128 GB


@pytest.mark.parametrize(
    ("settings", "accepted"),
    [
        ({"node_cores": 8}, True),  # its node memory unknown: a node started tells
        ({"node_cores": 8, "node_memory_mb": 64 * G}, True),
        ({"node_cores": 8, "node_memory_mb": 32 * G}, False),  # too little memory
        ({"node_cores": 4, "node_memory_mb": 128 * G}, False),  # too few cores
        ({"node_cores": 8, "max_nodes": 0}, False),  # starts none
    ],
)
def test_a_managed_group_may_start_nodes_with_both(cp, settings, accepted) -> None:
    wide_and_deep(cp)
    azure(cp, **settings)
    spec = {"cores": 8, "minMemoryMb": "64G"}
    if accepted:
        assert cp.submit({"command": "x", **spec}).id == 1
    else:
        assert refusal(cp, spec).startswith("a task asks for 1 node with 8 cores and 64 GB")


def test_the_refusal_names_what_a_managed_group_could_do(cp) -> None:
    wide_and_deep(cp)
    azure(cp, node_cores=8, node_memory_mb=32 * G)
    assert refusal(cp, {"cores": 8, "minMemoryMb": "64G"}) == (
        "a task asks for 1 node with 8 cores and 64 GB each but the cluster has 0 such nodes; "
        "ask for at most 32 GB memory or 2 cores "
        "(or bigger VMs, an admin's: hpc nodegroup set AzureNodes --size SIZE --node-memory 64G, then "
        "hpc node add --group AzureNodes)"
    )
    azure(cp, node_cores=4, node_memory_mb=128 * G)  # its nodes lack the cores: none of that
    assert refusal(cp, {"cores": 8, "minMemoryMb": "64G"}) == (
        "a task asks for 1 node with 8 cores and 64 GB each but the cluster has 0 such nodes; "
        "ask for at most 16 GB memory or 4 cores"
    )


def test_a_managed_groups_memory_is_the_autoscalers(cp) -> None:
    """The setting is the memory of nodes added after it, never of those the group has: a
    group whose only node has 16 GB starts no 64 GB node, whatever the setting says."""
    azure(cp, node_cores=2, node_memory_mb=64 * G)
    vm(cp, "azure-1", 16 * G)
    message = refusal(cp, {"minMemoryMb": "64G", "nodeGroup": "AzureNodes"})
    assert message.startswith(
        "a task asks for 64 GB memory per node but the largest node in node group(s) "
        "AzureNodes has 16 GB; ask for at most 16 GB (or bigger VMs, an admin's: hpc nodegroup set "
        "AzureNodes --size SIZE --node-memory 64G, then hpc node add --group AzureNodes)"
    )


def test_a_group_the_job_may_not_use_starts_nothing_for_it(cp) -> None:
    wide_and_deep(cp)
    azure(cp, node_cores=8)
    spec = {"cores": 8, "minMemoryMb": "64G", "nodeGroup": "OnPremNodes"}
    assert "in node group(s) OnPremNodes" not in refusal(cp, spec)  # "{where} has"
    assert "but node group(s) OnPremNodes has 0 such nodes" in refusal(cp, spec)


def test_each_task_is_checked_with_its_own_cores_and_memory(cp) -> None:
    wide_and_deep(cp)
    tasks = [
        {"command": "x", "cores": 8},
        {"command": "y", "cores": 2, "minMemoryMb": "64G"},
        {"command": "z", "cores": 8},  # the job's 20G: node a's 16 GB is too little
    ]
    assert refusal(cp, {"minMemoryMb": "20G", "tasks": tasks}) == (
        "a task asks for 1 node with 8 cores and 20 GB each but the cluster has 0 such nodes; "
        "ask for at most 16 GB memory or 2 cores"
    )
    assert cp.submit({"minMemoryMb": "16G", "tasks": tasks}).id == 1


def test_the_cores_refusals_are_as_before(cp) -> None:
    wide_and_deep(cp)
    assert refusal(cp, {"cores": 16, "minMemoryMb": "1G"}) == (
        "a task asks for 16 cores but the largest node in the cluster has 8; ask for at most 8"
    )
    assert refusal(cp, {"nodes": 2, "cores": 8, "minMemoryMb": "1G"}) == (
        "a task asks for 2 nodes with 8 cores each but the cluster has 1 such node; "
        "ask for at most 1 node"
    )
    assert refusal(cp, {"nodes": 3}) == (  # a probe read "with 1 cores each"
        "a task asks for 3 nodes with 1 core each but the cluster has 2 such nodes; "
        "ask for at most 2 nodes"
    )


def test_a_vm_never_registered_has_what_one_of_its_size_reported(cp) -> None:
    """A probe's 30 GB job was accepted because VMs never registered "may have" it, while
    a VM of their size had reported 23.5 GB: the autoscaler started none, and it waited."""
    azure(cp, node_cores=2)
    size, reported = "Standard_E2s_v5", 24064  # 23.5 GB
    told = Node(name="azure-1", groups=["AzureNodes"], provider="local", size=size)
    told.memory_mb, told.incarnation = reported, 1
    never = Node(name="azure-2", groups=["AzureNodes"], provider="local", size=size)
    for node in (told, never):
        cp.store.put_node(node)
    assert refusal(cp, {"minMemoryMb": "30G", "nodeGroup": "AzureNodes"}).startswith(
        "a task asks for 30 GB memory per node but the largest node in node group(s) "
        "AzureNodes has 23.5 GB; ask for at most 23.5 GB"
    )
    other = Node(name="azure-3", groups=["AzureNodes"], provider="local", size="Standard_E8s_v5")
    cp.store.put_node(other)  # another size, never registered: it may have it
    assert cp.submit({"command": "x", "minMemoryMb": "30G", "nodeGroup": "AzureNodes"}).id == 1


def test_a_task_that_opts_out_of_the_jobs_memory_is_checked_without_it(cp) -> None:
    """Submit read ``task or job``, so a task's ``"minMemoryMb": null`` (it runs anywhere)
    was refused for the job's memory that its expansion no longer asks."""
    join(cp, "a", 16 * G)
    spec = {"minMemoryMb": "1T", "tasks": [{"command": "x", "minMemoryMb": None}]}
    assert cp.submit(spec).id == 1
    assert refusal(cp, {**spec, "tasks": [{"command": "x"}]}).startswith(
        "a task asks for 1024 GB memory per node"
    )
