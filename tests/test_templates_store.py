"""Job templates on the embedded store: stored, listed, replaced under an etag, and applied on submit."""

from __future__ import annotations

import pytest

from shared.errors import Conflict, InvalidRequest, NotFound
from shared.usecases import templates
from tests.test_control import Clock, make_cp, register

# --- storage and submit, on the embedded store -----------------------------------------


@pytest.fixture
def cp(tmp_path):
    return make_cp(tmp_path, Clock())


def test_templates_are_stored_listed_and_matched_case_insensitively(cp):
    stored, created = templates.put(cp.deps, "short", {"maxCores": 2})
    assert created and stored.template.name == "short" and stored.etag
    again, created = templates.put(cp.deps, "SHORT", {"maxCores": 3, "name": "Short"})
    assert not created
    templates.put(cp.deps, "alpha", {"priority": "Lowest"})
    assert [t.name for t in templates.list_templates(cp.deps)] == ["alpha", "Short"]
    got = templates.get(cp.deps, "sHoRt")
    assert got.template.max_cores == 3 and got.etag == again.etag


def test_a_put_with_a_stale_etag_is_refused_and_changes_nothing(cp):
    first, _ = templates.put(cp.deps, "T", {"maxCores": 2})
    templates.put(cp.deps, "T", {"maxCores": 3}, if_match=first.etag)
    with pytest.raises(Conflict, match="changed since it was read"):
        templates.put(cp.deps, "T", {"maxCores": 9}, if_match=first.etag)
    assert templates.get(cp.deps, "T").template.max_cores == 3


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("a/b", {}, "template name 'a/b': use letters, digits"),
        ("T", ["maxCores"], "the body is a JSON object of template fields"),
        ("T", {"name": "U"}, "name 'U' in the body differs from 'T' in the URL"),
        ("T", {"maxCores": "many"}, "invalid template: maxCores"),
    ],
)
def test_bad_puts_are_refused_and_store_nothing(cp, name, data, message):
    with pytest.raises(InvalidRequest, match=message):
        templates.put(cp.deps, name, data)
    assert templates.list_templates(cp.deps) == []


def test_deleted_templates_are_gone_and_can_be_created_again(cp):
    templates.put(cp.deps, "T", {"maxCores": 2})
    assert templates.delete(cp.deps, "t").name == "T"
    assert templates.list_templates(cp.deps) == []
    with pytest.raises(NotFound, match="template 't' does not exist; there are no templates"):
        templates.get(cp.deps, "t")
    with pytest.raises(NotFound):
        templates.delete(cp.deps, "T")
    _, created = templates.put(cp.deps, "T", {"maxCores": 4})
    assert created and templates.get(cp.deps, "T").template.max_cores == 4


def test_a_named_template_applies_on_submit_and_the_job_records_it(cp):
    register(cp, "n1", cores=8)
    templates.put(cp.deps, "Short", {"priority": "BelowNormal", "runtimeLimit": 60})
    job = cp.submit({"command": "x", "template": "short"})
    assert job.template == "Short" and job.priority == 1000
    assert cp.get_job(job.id).template == "Short"
    [task] = cp.list_tasks(job.id)
    assert task.runtime_limit_s == 60 and task.priority == 1000


def test_a_priority_raised_after_submit_is_held_to_the_templates_limit(cp):
    register(cp, "n1", cores=8)
    templates.put(cp.deps, "Low", {"maxPriority": "Normal"})
    job = cp.submit({"command": "x", "template": "Low", "priority": "BelowNormal"})
    with pytest.raises(InvalidRequest, match="template 'Low', which allows priority at most"):
        cp.set_priority(job.id, "Highest")
    assert cp.get_job(job.id).priority == 1000
    assert cp.set_priority(job.id, "Normal").priority == 2000


def test_a_priority_left_above_a_lowered_limit_may_still_move_down(cp):
    """A probe's owner could not lower a job the template's lowered maxPriority had left
    above it; an admin may set any priority (Slurm's operators do)."""
    register(cp, "n1", cores=8)
    templates.put(cp.deps, "Lim", {"maxPriority": "Highest"})
    job = cp.submit({"command": "x", "template": "Lim", "priority": "AboveNormal"})
    templates.put(cp.deps, "Lim", {"maxPriority": "BelowNormal"})
    assert cp.set_priority(job.id, "Normal").priority == 2000  # down, still above: taken
    with pytest.raises(InvalidRequest, match=r"at most 1000 \(BelowNormal\).*an admin may"):
        cp.set_priority(job.id, "AboveNormal")  # up again: refused
    assert cp.modify_job(job.id, {"priority": "Highest"}, admin=True).priority == 4000
    assert cp.modify_job(job.id, {"jobRuntimeLimit": 60}, admin=True).job_runtime_limit == 60


def test_a_deleted_templates_priority_limit_stays_with_its_jobs(cp):
    """Found by a probe: once its template was deleted, a user raised a job's priority past
    the template's maxPriority (deleting a template does not change jobs submitted)."""
    register(cp, "n1", cores=8)
    templates.put(cp.deps, "Lim", {"maxPriority": "Normal"})
    job = cp.submit({"command": "x", "template": "Lim", "priority": "BelowNormal"})
    templates.delete(cp.deps, "Lim")
    with pytest.raises(InvalidRequest, match="'Lim', which was deleted since; it allowed "
                       r"priority at most 2000 \(Normal\)"):  # fmt: skip
        cp.set_priority(job.id, "Highest")
    assert cp.get_job(job.id).priority == 1000
    assert cp.set_priority(job.id, "Normal").priority == 2000


def test_the_default_template_applies_only_to_jobs_that_name_none(cp):
    register(cp, "n1", cores=8)
    assert cp.submit({"command": "x"}).template is None  # no Default: no template
    templates.put(cp.deps, "Default", {"maxCores": 2})
    templates.put(cp.deps, "Wide", {"maxCores": 8})
    with pytest.raises(InvalidRequest, match="template 'Default' allows at most 2 cores"):
        cp.submit({"command": "x", "cores": 4})
    assert cp.submit({"command": "x", "cores": 4, "template": "Wide"}).template == "Wide"
    assert cp.submit({"command": "x"}).template == "Default"


def test_a_job_refused_by_its_template_or_naming_an_unknown_one_stores_nothing(cp):
    register(cp, "n1", cores=8)
    templates.put(cp.deps, "Small", {"maxCores": 1})
    with pytest.raises(InvalidRequest, match="template 'Small'"):
        cp.submit({"command": "x", "cores": 2, "template": "Small"})
    with pytest.raises(NotFound, match="template 'Nope' does not exist; known templates: Small"):
        cp.submit({"command": "x", "template": "Nope"})
    assert cp.list_jobs() == []
