# ruff: noqa: F811 - pytest fixtures imported from other test modules
"""Memory per core (Slurm's --mem-per-cpu, and a template's default: DefMemPerCPU). A task
that asks for no memory holds its cores (a range's min) times the job's memoryPerCoreMb on
each node; a job gives that or minMemoryMb, not both; a template's memoryPerCoreMb is the
default of jobs that give neither, and a task's own minMemoryMb always wins."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.domain.jobspec import JobSpec, task_memory
from shared.domain.templates import JobTemplate, apply_template
from shared.errors import InvalidRequest
from shared.usecases import templates
from tests.cli_fixtures import StandIn, hpc
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_memory_edges import G, join

CASES = [
    # (the job as sent, the task's memory on each node)
    ({"command": "x"}, None),
    ({"command": "x", "cores": 4, "memoryPerCoreMb": "2G"}, 8 * G),
    ({"command": "x", "cores": {"min": 2, "max": 8}, "memoryPerCoreMb": 1000}, 2000),
    ({"command": "x", "cores": 4, "minMemoryMb": "3G"}, 3 * G),  # per node, the job's
    ({"memoryPerCoreMb": "1G", "tasks": [{"command": "x", "cores": 2, "minMemoryMb": 512}]}, 512),
    ({"memoryPerCoreMb": "1G", "tasks": [{"command": "x", "cores": 2, "minMemoryMb": None}]}, None),
    ({"memoryPerCoreMb": "1G", "tasks": [{"command": "x", "nodes": 3, "cores": 2}]}, 2 * G),
]  # fmt: skip


@pytest.mark.parametrize(("sent", "mb"), CASES)
def test_a_tasks_memory_is_its_own_else_the_jobs_else_its_cores_times_the_per_core(sent, mb):
    spec = JobSpec.model_validate(sent)
    assert task_memory(spec.tasks[0], spec) == mb


def test_a_job_gives_per_node_or_per_core_not_both():
    with pytest.raises(ValidationError, match="minMemoryMb .per node. or memoryPerCoreMb"):
        JobSpec.model_validate({"command": "x", "minMemoryMb": "1G", "memoryPerCoreMb": "1G"})


DEF = JobTemplate(name="Default", memory_per_core_mb=2 * G)


@pytest.mark.parametrize(
    ("sent", "per_core", "node"),
    [
        ({"command": "x"}, 2 * G, None),  # neither: the template's default
        ({"command": "x", "memoryPerCoreMb": 512}, 512, None),  # its own per core
        ({"tasks": [{"command": "x"}], "minMemoryMb": "1G"}, None, G),  # per node: no default
        ({"tasks": [{"command": "x"}], "minMemoryMb": None}, None, None),  # null: none asked
    ],
)  # fmt: skip
def test_a_templates_per_core_is_the_default_of_a_job_that_gives_neither(sent, per_core, node):
    spec = apply_template(JobSpec.model_validate(sent), DEF)
    assert (spec.memory_per_core_mb, spec.min_memory_mb) == (per_core, node)


def test_the_default_templates_per_core_reaches_the_tasks_and_the_submit_check(cp):
    join(cp, "n1", 8 * G, cores=8)
    templates.put(cp.deps, "Default", {"memoryPerCoreMb": "2G"})
    job = cp.submit({"tasks": [{"command": "x", "cores": 4}, {"command": "y", "cores": 1}]})
    assert [t.min_memory_mb for t in cp.list_tasks(job.id)] == [8 * G, 2 * G]
    own = cp.submit({"tasks": [{"command": "x", "cores": 8, "minMemoryMb": "1G"}]})
    assert [t.min_memory_mb for t in cp.list_tasks(own.id)] == [G]
    with pytest.raises(
        InvalidRequest,
        match=r"has 8 GB; ask for at most 8 GB \(its 8 core\(s\) x memoryPerCoreMb 2 GB; ask for less memory per core or fewer cores\)",
    ):
        cp.submit({"command": "x", "cores": 8})  # 8 x 2 GB: no node has it
    assert cp.schedule_pass() == 1  # the 4-core task holds all of n1's 8 GB: the rest wait


def test_the_cli_sends_memory_per_core_and_refuses_both_flags(api: StandIn) -> None:
    ok = hpc("job", "submit", "--cores", "4", "--mem-per-core", "2G", "--", "true")
    assert ok.exit_code == 0, ok.output
    [sent] = api.posted("/api/jobs")
    assert sent["memoryPerCoreMb"] == 2048 and "minMemoryMb" not in json.dumps(sent)
    both = hpc("job", "submit", "--min-memory", "1G", "--mem-per-cpu", "1G", "--", "true")
    assert both.exit_code == 2 and "not both" in both.stderr
    assert len(api.posted("/api/jobs")) == 1
