# ruff: noqa: F811 - pytest fixtures imported from other test modules
"""Memory as a node filter, at the edges of the control plane: the spec's ``minMemoryMb``
(either form, inherited, carried to every task of a sweep), submit's refusal of memory no
node could ever have, a node's memory from its agent's registration, and ``hpc node add``'s
nodes with their group's memory. The placement rule itself: the scheduler's tests."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest

from shared.domain.cluster import Node
from shared.domain.jobbuild import expand
from shared.domain.jobspec import JobSpec
from shared.domain.memory import parse_mb, shown
from shared.domain.messages import RegisterNode
from shared.errors import InvalidRequest
from shared.usecases import templates
from tests.agent_double import AgentDouble
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_dashboard_cells import run_js
from tests.test_nodes_admin import provider  # noqa: F401 - fixture

NOW = datetime(2026, 1, 1, tzinfo=UTC)
G = 1024


class MemoryAgent(AgentDouble):
    """An agent that reports its machine's memory (None: says none, as older agents)."""

    def __init__(self, *args, memory_mb: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.memory_mb = memory_mb

    def request(self) -> RegisterNode:
        return super().request().model_copy(update={"memory_mb": self.memory_mb})


def join(cp, name: str, memory_mb: int | None, **kwargs) -> MemoryAgent:
    agent = MemoryAgent(cp, name, memory_mb=memory_mb, **kwargs)
    assert agent.register().accepted
    return agent


def memory_of(cp, name: str) -> int | None:
    return cp.store.get_node(name).memory_mb


# --- the spec ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "mb"),
    [(4096, 4096), ("4096", 4096), ("4G", 4 * G), ("512M", 512), ("1.5T", 1536 * G),
     (" 2 GB ", 2 * G), ("8g", 8 * G), (None, None)],
)  # fmt: skip
def test_min_memory_is_mb_or_a_size(given, mb) -> None:
    spec = JobSpec.parse({"tasks": [{"command": "x", "minMemoryMb": given}]})
    assert spec.tasks[0].min_memory_mb == mb
    [task] = expand(spec, 1, now=NOW)
    assert task.min_memory_mb == mb


@pytest.mark.parametrize("given", ["4X", "G", "", "-1G", 4.5, 0, "0.4M", True, [4], {"mb": 4}])
def test_a_bad_min_memory_is_one_message_saying_what_is_accepted(given) -> None:
    with pytest.raises(InvalidRequest) as refused:
        JobSpec.parse({"tasks": [{"command": "x", "minMemoryMb": given}]})
    message = str(refused.value)
    assert message.startswith("invalid job spec: tasks.0.minMemoryMb: minMemoryMb is a whole ")
    assert "(4096) or a size (512M, 4G, 1.5T), 1 MB to 64 TB, got" in message
    assert message.count(";") == 0  # one error, not one per branch of a union


def test_more_memory_than_any_machine_is_refused() -> None:
    with pytest.raises(InvalidRequest, match='1 MB to 64 TB, got "65T"'):
        JobSpec.parse({"command": "x", "minMemoryMb": "65T"})


@pytest.mark.parametrize("name", ["memory", "mem", "minMemory", "min_memory", "MinMemory", "memMb"])
def test_a_memory_field_by_another_name_is_pointed_to_min_memory_mb(name) -> None:
    for spec in ({"command": "x", name: "4G"}, {"tasks": [{"command": "x", name: "4G"}]}):
        with pytest.raises(
            InvalidRequest, match=f"{name}: unknown field; did you mean minMemoryMb"
        ):
            JobSpec.parse(spec)


def test_the_jobs_min_memory_is_every_tasks_that_gives_none() -> None:
    spec = JobSpec.parse(
        {
            "minMemoryMb": "4G",
            "tasks": [
                {"name": "a", "command": "x"},
                {"name": "b", "command": "x", "minMemoryMb": 100},
                {"name": "c", "command": "x", "sweep": "1-3"},
                {"name": "d", "command": "x", "minMemoryMb": None},  # runs anywhere
            ],
        }
    )
    tasks = expand(spec, 1, now=NOW)
    assert [(t.name, t.min_memory_mb) for t in tasks] == [
        ("a", 4 * G), ("b", 100), ("c", 4 * G), ("c", 4 * G), ("c", 4 * G), ("d", None)
    ]  # fmt: skip
    one = expand(JobSpec.parse({"command": "x", "minMemoryMb": "2G", "cores": 2}), 1, now=NOW)
    assert [(t.cores, t.min_memory_mb) for t in one] == [(2, 2 * G)]


def test_a_sweeps_tasks_created_later_carry_the_memory_as_stored(cp) -> None:
    join(cp, "n1", 8 * G)
    job = cp.submit({"command": "echo $HPC_SWEEP_INDEX", "sweep": "1-50", "minMemoryMb": "6G"})
    listed = cp.list_tasks(job.id)  # the range's tasks, none created yet
    assert len(listed) == 50 and {t.min_memory_mb for t in listed} == {6 * G}
    cp.schedule_pass()  # those dispatched are created from the stored range's template
    created = cp.store.active_tasks(node="n1")
    assert created and {t.min_memory_mb for t in created} == {6 * G}


def test_a_template_keeps_the_memory_a_job_asks_for(cp) -> None:
    join(cp, "n1", 8 * G)
    templates.put(cp.deps, "Default", {"priority": "Lowest", "maxCores": 4})
    job = cp.submit({"tasks": [{"command": "x", "minMemoryMb": 2048}]})
    assert job.template == "Default" and cp.get_task(job.id, 1).min_memory_mb == 2048


# --- memory as shown ----------------------------------------------------------------------

SHOWN = [
    (512, "512 MB", "512 MB"),
    (1023, "1023 MB", "1023 MB"),  # under 1 GB: MB
    (1024, "1 GB", "1 GB"),  # whole GB
    (64 * G, "64 GB", "64 GB"),
    (1536, "1.5 GB", "1.5 GB"),
    (24105, "23.5 GB", "23.6 GB"),
    (24063, "23.4 GB", "23.5 GB"),  # 23.5G is 24064 MB: more than it has
    (24064, "23.5 GB", "23.5 GB"),
    (17407, "16.9 GB", "17407 MB"),  # 16.99 GB: not "17407 MB" (rounded to 17.0) any more
    (16385, "16385 MB", "16.1 GB"),  # its tenths end in .0: MB, never read as 16 GB
    (1025, "1025 MB", "1.1 GB"),
    (15974, "15.5 GB", "15.6 GB"),  # about what a 16 GiB VM's OS reports
]


@pytest.mark.parametrize(("mb", "down", "up"), SHOWN)
def test_memory_is_shown_with_its_tenths_rounded_down_or_for_a_request_up(mb, down, up) -> None:
    assert shown(mb) == down
    assert shown(mb, up=True) == up


def test_memory_shown_asked_for_fits_and_a_request_shown_is_no_less() -> None:
    for mb in range(1, 200_000):
        assert parse_mb(shown(mb)) <= mb <= parse_mb(shown(mb, up=True)), mb


@pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js")
def test_the_dashboards_memory_reads_as_the_clis_rounded_down() -> None:
    assert run_js([("memoryText", mb) for mb, _, _ in SHOWN]) == [d for _, d, _ in SHOWN]


# --- submit: memory no node could ever have ---------------------------------------------


def azure(cp, **settings) -> None:
    cp.set_group("AzureNodes", provider="local", **{"max_nodes": 4, **settings})


def vm(
    cp, name: str, memory_mb: int | None, *, joined: bool = False, size: str | None = None
) -> None:
    """A managed node of AzureNodes as the store holds it, with ``memory_mb`` (``joined``:
    its agent registered and reported it; else ``hpc node add`` gave it, or none)."""
    node = Node(
        name=name,
        groups=["AzureNodes"],
        provider="local",
        memory_mb=memory_mb,
        size=size,
        incarnation=1 if joined else 0,
    )
    cp.store.put_node(node)


@pytest.mark.parametrize(
    ("setup", "spec", "refusal"),
    [
        # on-prem: the nodes there are all there is (a bigger machine is not foreseen)
        (lambda cp: join(cp, "n1", 16 * G), {"minMemoryMb": "64G", "nodeGroup": "OnPremNodes"},
         "a task asks for 64 GB memory per node but the largest node in node group(s) "
         "OnPremNodes has 16 GB; ask for at most 16 GB"),
        (lambda cp: join(cp, "n1", 16 * G), {"minMemoryMb": "16G"}, None),  # exactly: it fits
        (lambda cp: (join(cp, "n1", 16 * G), join(cp, "n2", 64 * G)), {"minMemoryMb": "64G"},
         None),
        (lambda cp: (join(cp, "n1", 16 * G), join(cp, "n2", None)), {"minMemoryMb": "64G"},
         None),  # n2 said nothing (an older agent): its memory may be enough
        # a managed group may start nodes of its nodeMemoryMb, or unknown ones
        (lambda cp: (join(cp, "n1", 16 * G), azure(cp)), {"minMemoryMb": "64G"}, None),
        (lambda cp: (join(cp, "n1", 16 * G), azure(cp, node_memory_mb=128 * G)),
         {"minMemoryMb": "64G"}, None),
        (lambda cp: (join(cp, "n1", 16 * G), azure(cp, node_memory_mb=32 * G)),
         {"minMemoryMb": "64G"},
         "a task asks for 64 GB memory per node but the largest node in the cluster has 32 GB;"
         " ask for at most 32 GB (or bigger VMs, an admin's: hpc nodegroup set AzureNodes --size SIZE "
         "--node-memory 64G, then hpc node add --group AzureNodes)"),
        (lambda cp: (join(cp, "n1", 16 * G), azure(cp, max_nodes=0)), {"minMemoryMb": "64G"},
         "the largest node in the cluster has 16 GB; ask for at most 16 GB"),  # starts none
        (lambda cp: (azure(cp), vm(cp, "azure-1", 16 * G)),  # unset: its nodes' memory
         {"minMemoryMb": 1536 * 16, "nodeGroup": "AzureNodes"},
         "asks for 24 GB memory per node but the largest node in node group(s) AzureNodes has "
         "16 GB; ask for at most 16 GB (or bigger VMs, an admin's: hpc nodegroup set AzureNodes --size "
         "SIZE --node-memory 24G, then hpc node add --group AzureNodes)"),  # as the reason says
        (lambda cp: (azure(cp), vm(cp, "azure-1", None)),
         {"minMemoryMb": "1T", "nodeGroup": "AzureNodes"}, None),
        # a probe (hpc up): VMs of no size never registered are taken to have what the
        # group's registered ones have, as the autoscaler takes them (it starts none)
        (lambda cp: (azure(cp), vm(cp, "azure-1", 16 * G, joined=True), vm(cp, "azure-2", None)),
         {"minMemoryMb": "100G", "nodeGroup": "AzureNodes"},
         "the largest node in node group(s) AzureNodes has 16 GB"),
        # one of another VM size may have more
        (lambda cp: (azure(cp), vm(cp, "azure-1", 16 * G, joined=True),
                     vm(cp, "azure-2", None, size="Standard_E16s_v5")),
         {"minMemoryMb": "100G", "nodeGroup": "AzureNodes"}, None),
        # a group the job may not use starts nothing for it
        (lambda cp: (join(cp, "n1", 16 * G), azure(cp)),
         {"minMemoryMb": "17G", "nodeGroup": "OnPremNodes"},
         "a task asks for 17 GB memory per node but the largest node in node group(s) "
         "OnPremNodes has 16 GB; ask for at most 16 GB"),
        # a task of the job, not only the first; the job's own for a task that gives none
        (lambda cp: join(cp, "n1", 16 * G),
         {"tasks": [{"command": "x"}, {"command": "y", "minMemoryMb": "20G"}]},
         "asks for 20 GB memory per node"),
        (lambda cp: join(cp, "n1", 16 * G),
         {"minMemoryMb": "17G", "tasks": [{"command": "x", "minMemoryMb": 100}, {"command": "y"}]},
         "asks for 17 GB memory per node"),
    ],
)  # fmt: skip
def test_submit_refuses_only_memory_no_node_has_or_may_have(cp, setup, spec, refusal) -> None:
    setup(cp)
    spec = {"command": "x", **spec} if "tasks" not in spec else spec
    if refusal is None:
        assert cp.submit(spec).id == 1
        return
    with pytest.raises(InvalidRequest) as refused:
        cp.submit(spec)
    assert refusal in str(refused.value)
    if spec.get("nodeGroup") == "OnPremNodes":  # no managed group to point to
        assert str(refused.value).endswith(refusal)
    assert cp.list_jobs() == []  # and no job id was taken
    assert cp.submit({"command": "x"}).id == 1


def test_a_job_without_memory_is_taken_whatever_the_nodes_memory(cp) -> None:
    join(cp, "n1", 1)
    join(cp, "n2", None)
    assert cp.submit({"command": "x", "cores": 2}).id == 1


# --- registration -----------------------------------------------------------------------


def test_each_registration_stores_the_memory_its_agent_reports(cp, clock) -> None:
    join(cp, "n1", 16 * G)
    assert memory_of(cp, "n1") == 16 * G
    clock.advance(5)
    join(cp, "n1", 32 * G)  # the agent restarted on a machine given more memory
    assert memory_of(cp, "n1") == 32 * G
    clock.advance(5)
    join(cp, "n1", None)  # an agent that says none leaves it as it was
    assert memory_of(cp, "n1") == 32 * G
    join(cp, "n2", None)
    assert memory_of(cp, "n2") is None


def test_a_managed_nodes_memory_is_its_agents_word_unlike_its_cores(cp, provider) -> None:
    azure(cp, node_cores=2, node_memory_mb=8 * G)
    [node] = cp.add_nodes("AzureNodes", 1)
    assert (node.cores, node.memory_mb) == (2, 8 * G)
    assert memory_of(cp, node.name) == 8 * G  # before its agent ever registered
    join(cp, node.name, 7 * G, cores=16)  # what the VM really has
    stored = cp.store.get_node(node.name)
    assert (stored.cores, stored.memory_mb) == (2, 7 * G)


def test_node_add_gives_new_nodes_and_their_vms_the_groups_memory(cp, provider) -> None:
    azure(cp)
    [unknown] = cp.add_nodes("AzureNodes", 1)
    assert unknown.memory_mb is None and provider._vms[unknown.name].spec.memory_mb is None
    cp.set_group("AzureNodes", node_memory_mb=4 * G)
    added = cp.add_nodes("AzureNodes", 2, cores=4)
    assert [n.memory_mb for n in added] == [4 * G, 4 * G]
    assert [provider._vms[n.name].spec.memory_mb for n in added] == [4 * G, 4 * G]


def test_node_add_of_another_size_leaves_the_memory_to_its_agent(cp, provider) -> None:
    """The group's nodeMemoryMb is its size's: a VM of another size has its own."""
    azure(cp, node_memory_mb=16 * G, size="Standard_D4s_v5", max_nodes=10)
    [big] = cp.add_nodes("AzureNodes", 1, size="Standard_E16s_v5")
    assert big.memory_mb is None and memory_of(cp, big.name) is None
    assert provider._vms[big.name].spec.memory_mb is None  # a local VM's agent: its own
    [same] = cp.add_nodes("AzureNodes", 1, size="standard_d4s_v5")  # the group's, any case
    assert same.memory_mb == 16 * G
    [usual] = cp.add_nodes("AzureNodes", 1)
    assert usual.memory_mb == 16 * G
    cp.set_group("AzureNodes", size=None)  # the cluster's size: HPC_AZURE_VM_SIZE
    default = cp.deps.settings.azure_vm_size
    assert cp.add_nodes("AzureNodes", 1, size=default)[0].memory_mb == 16 * G
    assert cp.add_nodes("AzureNodes", 1, size="Standard_D4s_v5")[0].memory_mb is None


# --- the group setting ------------------------------------------------------------------


def test_node_memory_is_a_managed_groups_setting_in_mb_a_size_or_null(cp) -> None:
    azure(cp)
    assert cp.set_group("AzureNodes", node_memory_mb=16 * G).node_memory_mb == 16 * G
    assert cp.set_group("AzureNodes", node_memory_mb="32G").node_memory_mb == 32 * G
    assert cp.set_group("AzureNodes", node_memory_mb=None).node_memory_mb is None
    accepted = "a whole number of MB (4096) or a size (512M, 4G, 1.5T), 1 MB to 64 TB"
    refusals = ((0, "0"), ("lots", '"lots"'), (True, "true"), (1.5, "1.5"), ("65T", '"65T"'))
    for bad, as_sent in refusals:
        with pytest.raises(InvalidRequest) as refused:
            cp.set_group("AzureNodes", node_memory_mb=bad)
        assert str(refused.value) == f"nodeMemoryMb is {accepted}, got {as_sent}"
    assert cp.set_group("AzureNodes").node_memory_mb is None  # nothing refused was stored
    with pytest.raises(InvalidRequest, match="nodeMemoryMb applies only to managed groups"):
        cp.set_group("OnPremNodes", node_memory_mb=16 * G)
