"""Job templates, the pure rule: defaults first, then limits; bad templates are refused."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.jobspec import JobSpec
from shared.domain.templates import JobTemplate, apply_template
from shared.errors import InvalidRequest

# --- the pure rule --------------------------------------------------------------------

SHORT = JobTemplate(
    name="Short",
    priority="BelowNormal",
    node_groups=["OnPremNodes"],
    runtime_limit=600,
    max_retries=1,
    max_priority="Normal",
    max_cores=4,
    allowed_node_groups=["OnPremNodes", "AzureNodes"],
    max_runtime_limit=3600,
    max_job_runtime_limit=86400,
)


def applied(job: dict[str, Any], template: JobTemplate | None = SHORT) -> JobSpec:
    base = {} if "tasks" in job else {"command": "x"}
    return apply_template(JobSpec.parse({**base, **job}), template)


@pytest.mark.parametrize(
    ("job", "field", "expected"),
    [
        # left out: the template's default
        ({}, "priority", 1000),
        ({}, "node_groups", ["OnPremNodes"]),
        ({}, "runtime_limit", 600),
        ({}, "max_retries", 1),
        ({}, "template", "Short"),
        # given: the job's own value, even when it equals the JobSpec default
        ({"priority": "Normal"}, "priority", 2000),
        ({"nodeGroup": "AzureNodes"}, "node_groups", ["AzureNodes"]),
        ({"nodeGroups": ["azurenodes"]}, "node_groups", ["azurenodes"]),
        ({"runtimeLimit": 3600}, "runtime_limit", 3600),
        ({"maxRetries": 3}, "max_retries", 3),
        # "any node" is narrowed to the template's default groups
        ({"nodeGroups": []}, "node_groups", ["OnPremNodes"]),
    ],
)
def test_template_fills_only_what_the_job_left_out(job, field, expected):
    assert getattr(applied(job), field) == expected


@pytest.mark.parametrize(
    ("template", "field", "expected"),
    [
        # a limit with no default is the default, so a job that says nothing passes
        (JobTemplate(name="T", max_priority="BelowNormal"), "priority", 1000),
        (JobTemplate(name="T", max_priority="Highest"), "priority", 2000),
        (JobTemplate(name="T", allowed_node_groups=["AzureNodes"]), "node_groups", ["AzureNodes"]),
        (JobTemplate(name="T", max_runtime_limit=60), "runtime_limit", 60),
        (JobTemplate(name="T", max_job_runtime_limit=600), "job_runtime_limit", 600),
        (JobTemplate(name="T", job_runtime_limit=60), "job_runtime_limit", 60),
        # no limit and no default: the JobSpec's own defaults
        (JobTemplate(name="T"), "priority", 2000),
        (JobTemplate(name="T"), "node_groups", []),
        (JobTemplate(name="T"), "runtime_limit", None),
        (JobTemplate(name="T"), "job_runtime_limit", None),
    ],
)
def test_a_limit_without_a_default_acts_as_the_default(template, field, expected):
    assert getattr(applied({}, template), field) == expected


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (
            {"priority": "Highest"},
            "template 'Short' allows priority at most 2000 (Normal); the job asks for 4000 (Highest)",
        ),
        (
            {"nodeGroups": ["OnPremNodes", "Gpu"]},
            "template 'Short' allows nodeGroups OnPremNodes, AzureNodes only; the job asks for Gpu",
        ),
        (
            {"cores": 8},
            "template 'Short' allows at most 4 cores per task (maxCores); tasks.0 asks for 8",
        ),
        (
            {"tasks": [{"command": "x"}, {"name": "big", "command": "y", "cores": 5}]},
            "tasks.1 (big) asks for 5",
        ),
        ({"tasks": [{"command": "x", "cores": {"min": 1, "max": 16}}]}, "tasks.0 asks for 16"),
        (
            {"tasks": [{"command": "x", "cores": 2, "nodes": 3}]},
            "tasks.0 asks for 6 (2 on each of 3 nodes)",
        ),
        (
            {"runtimeLimit": 7200},
            "template 'Short' allows runtimeLimit at most 3600 s (1:00:00) (maxRuntimeLimit); "
            "tasks.0 asks for 7200 s (2:00:00)",
        ),
        (
            {"tasks": [{"command": "x", "runtimeLimit": 3601}]},
            "tasks.0 asks for 3601 s (1:00:01)",
        ),
        ({"runtimeLimit": None}, "tasks.0 asks for no runtime limit"),
        (
            {"jobRuntimeLimit": 90000},
            "template 'Short' allows jobRuntimeLimit at most 86400 s (1-00:00:00) "
            "(maxJobRuntimeLimit); the job asks for 90000 s (1-01:00:00)",
        ),
        ({"jobRuntimeLimit": None}, "the job asks for no job runtime limit"),
        (  # found by a live probe: an exclusive task took a whole 2-core node under maxCores 1
            {"exclusive": True},
            "tasks.0 is exclusive, which takes its nodes' every core: leave exclusive out",
        ),
    ],
)
def test_a_job_beyond_a_limit_is_refused_naming_template_field_and_allowed_value(job, message):
    with pytest.raises(InvalidRequest) as caught:
        applied(job)
    assert message in str(caught.value)


def test_a_job_within_every_limit_passes_unchanged_in_what_it_gave():
    spec = applied(
        {"priority": 2000, "nodeGroups": ["AzureNodes"], "cores": 4, "runtimeLimit": 3600}
    )
    assert (spec.priority, spec.node_groups, spec.runtime_limit) == (2000, ["AzureNodes"], 3600)


def test_no_template_changes_nothing_and_records_none():
    spec = JobSpec.parse({"command": "x", "priority": "Highest", "template": "Gone"})
    out = apply_template(spec, None)
    assert out.template is None and out.priority == 4000 and spec.template == "Gone"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "bad name"}, "name: use letters, digits"),
        ({"name": "T", "maxCores": 0}, "maxCores: must be at least 1, got 0"),
        ({"name": "T", "priority": "Urgent"}, "priority 'Urgent' is not one of"),
        ({"name": "T", "maxCores": 2, "corse": 1}, "corse: unknown field"),
        (
            {"name": "T", "priority": 3000, "maxPriority": 2000},
            "default priority 3000 (AboveNormal) is above maxPriority 2000 (Normal)",
        ),
        (
            {"name": "T", "runtimeLimit": 90, "maxRuntimeLimit": 60},
            "default runtimeLimit 90 is above maxRuntimeLimit 60",
        ),
        (
            {"name": "T", "jobRuntimeLimit": 90, "maxJobRuntimeLimit": 60},
            "default jobRuntimeLimit 90 is above maxJobRuntimeLimit 60",
        ),
        (
            {"name": "T", "nodeGroups": ["Gpu"], "allowedNodeGroups": ["AzureNodes"]},
            "default nodeGroups Gpu are not in allowedNodeGroups AzureNodes",
        ),
    ],
)
def test_bad_templates_are_refused_saying_what_to_fix(data, message):
    with pytest.raises(InvalidRequest, match="invalid template: ") as caught:
        JobTemplate.parse(data)
    assert message in str(caught.value)


def test_template_json_is_camel_case_without_unset_fields():
    t = JobTemplate.parse({"name": "T", "maxPriority": "AboveNormal", "allowedNodeGroups": ["A"]})
    assert t.to_dict() == {
        "name": "T",
        "description": "",
        "maxPriority": 3000,
        "allowedNodeGroups": ["A"],
    }
