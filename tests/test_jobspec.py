"""Job spec validation and sweep expansion."""

from datetime import UTC, datetime

import pytest

from shared.domain.jobbuild import build, expand
from shared.domain.jobspec import JobSpec, Sweep
from shared.errors import InvalidRequest

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_sweep_expands_to_one_task_per_index():
    spec = JobSpec.parse({"tasks": [{"command": "echo $HPC_SWEEP_INDEX", "sweep": "1-20"}]})
    tasks = expand(spec, 7, now=NOW)
    assert [t.sweep_index for t in tasks] == list(range(1, 21))
    assert [t.id for t in tasks] == list(range(1, 21))
    assert [t.name for t in tasks][:2] == ["job7[1]", "job7[2]"]


def test_a_sweep_is_built_as_one_range_not_its_tasks():
    spec = JobSpec.parse(
        {
            "name": "s",
            "tasks": [
                {"command": "prep"},
                {"command": "run *", "sweep": "0-999999:1"},
                {"command": "sum", "name": "sum"},
                {"command": "b *", "sweep": "10-30:10", "name": "b"},
            ],
        }
    )
    job, tasks, ranges = build(spec, 7, now=NOW)
    assert [t.id for t in tasks] == [1, 1_000_002]
    assert [(r.first_id, r.count, r.start, r.step) for r in ranges] == [
        (2, 1_000_000, 0, 1),
        (1_000_003, 3, 10, 10),
    ]
    assert job.task_count == 1_000_005 and job.task_counts == {"Queued": 1_000_005}
    last = ranges[0].task(1_000_001)
    assert (last.id, last.sweep_index, last.name, last.command) == (
        1_000_001,
        999_999,
        "s[999999]",
        "run *",
    )
    assert [ranges[1].task(i).name for i in (1_000_003, 1_000_005)] == ["b", "b"]
    assert ranges[1].task(1_000_005).sweep_index == 30


def test_a_range_task_outside_it_is_refused():
    _, _, ranges = build(JobSpec.parse({"command": "x", "sweep": "1-3"}), 1, now=NOW)
    with pytest.raises(ValueError, match="not in range"):
        ranges[0].task(4)


def test_sweep_with_step():
    assert list(Sweep.parse("0-10:5").indices()) == [0, 5, 10]


@pytest.mark.parametrize("bad", ["20-1", "1-", "a-b", "1-10:0", "1..10"])
def test_bad_sweep_ranges_are_refused_with_the_expected_form(bad):
    with pytest.raises(InvalidRequest, match="sweep"):
        JobSpec.parse({"tasks": [{"command": "x", "sweep": bad}]})


def test_empty_command_is_refused():
    with pytest.raises(InvalidRequest, match="command is empty"):
        JobSpec.parse({"tasks": [{"command": "  "}]})


def test_missing_tasks_is_refused():
    with pytest.raises(InvalidRequest, match="tasks"):
        JobSpec.parse({"name": "x"})


def test_unknown_fields_are_refused_so_typos_do_not_pass_silently():
    with pytest.raises(InvalidRequest, match="corse"):
        JobSpec.parse({"tasks": [{"command": "x", "corse": 2}]})


def test_priority_by_name_or_number():
    assert JobSpec.parse({"command": "x", "priority": "Highest"}).priority == 4000
    assert JobSpec.parse({"command": "x", "priority": 10}).priority == 10
    with pytest.raises(InvalidRequest, match="priority"):
        JobSpec.parse({"command": "x", "priority": "Urgent"})
    with pytest.raises(InvalidRequest, match="0-4000"):
        JobSpec.parse({"command": "x", "priority": 5000})


def test_shorthand_one_task_job_and_single_node_group():
    spec = JobSpec.parse({"command": "hostname", "cores": 2, "nodeGroup": "AzureNodes"})
    assert spec.node_groups == ["AzureNodes"]
    assert spec.tasks[0].cores == 2


def test_hpc_variables_cannot_be_overridden():
    with pytest.raises(InvalidRequest, match="HPC_JOB_ID"):
        JobSpec.parse({"command": "x", "env": {"HPC_JOB_ID": "1"}})


def test_the_readme_job_spec_example_is_valid():
    import json
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```json\n(.*?)```", readme, re.S)
    assert block, "README has a json job spec example"
    spec = JobSpec.parse(json.loads(block.group(1)))
    assert spec.task_count() == 100 and spec.node_groups == ["OnPremNodes"]
