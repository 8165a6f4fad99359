"""Runtime limits and valid exit codes: the spec, the rule, the agent that enforces them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain import lifecycle
from shared.domain.cluster import Node
from shared.domain.durations import format_duration, parse_duration
from shared.domain.jobbuild import expand
from shared.domain.jobspec import JobSpec
from shared.domain.models import Task
from shared.domain.protocol import AGENT_PROTOCOL
from shared.domain.scheduler import plan
from shared.domain.states import NodeState, TaskState
from shared.errors import InvalidRequest
from tests.agent_fixtures import (  # noqa: F401 - fixtures
    agent,
    bus,
    cp,
    output,
    run_task,
    start_agent,
)
from tests.test_control import (
    clock,  # noqa: F401 - fixture
    register,
    sweep,
)
from tests.test_control import cp as control_plane  # noqa: F401 - fixture

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("1:30", 90), ("2:00:00", 7200), ("1:02:00:00", 93600), ("0:0:1", 1)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1:xx", "-5", "1:2:3:4:5", "0", "400:00:00:00"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(120, "0:02:00"), (3661, "1:01:01"), (90061, "1-01:01:01")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_spec_limits_apply_to_every_task_and_a_task_may_override_them():
    spec = JobSpec.parse(
        {
            "runtimeLimit": 120,
            "validExitCodes": [0, 3],
            "tasks": [{"command": "a"}, {"command": "b", "runtimeLimit": 5, "validExitCodes": [7]}],
        }
    )
    tasks = expand(spec, 1, now=T0)
    assert [(t.runtime_limit_s, t.valid_exit_codes) for t in tasks] == [
        (120, [0, 3]),
        (5, [7]),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"runtimeLimit": 0},
        {"runtimeLimit": "1 hour"},  # (1h is taken: units, largest first)
        {"validExitCodes": []},
        {"validExitCodes": [999]},
    ],
)
def test_bad_limits_are_refused_naming_the_field(bad):
    with pytest.raises(InvalidRequest) as err:
        JobSpec.parse({"command": "x", **bad})
    assert next(iter(bad)) in str(err.value)


@pytest.mark.parametrize(
    ("code", "valid", "expected"),
    [(0, None, TaskState.FINISHED), (3, None, TaskState.FAILED), (3, [0, 3], TaskState.FINISHED),
     (0, [3], TaskState.FAILED), (None, [0], TaskState.FAILED)],
)  # fmt: skip
def test_valid_exit_codes_decide_success(code, valid, expected):
    assert lifecycle.outcome(code, canceled=False, error=None, valid=valid) is expected


def test_a_job_with_valid_exit_codes_finishes_on_them(control_plane):
    n1 = register(control_plane, "n1", cores=2)
    job = control_plane.submit({**sweep(2), "validExitCodes": [0, 3]})
    control_plane.schedule_pass()
    runs = n1.runs()
    assert all(r.runtime_limit_s is None for r in runs)
    n1.send(*[n1.ended(r, exit_code=3) for r in runs])
    assert control_plane.get_job(job.id).state.value == "Finished"


def test_runtime_limit_travels_with_the_assignment(control_plane):
    n1 = register(control_plane, "n1", cores=2)
    control_plane.submit({"command": "x", "runtimeLimit": 120})
    control_plane.schedule_pass()
    [run] = n1.runs()
    assert run.runtime_limit_s == 120


def test_the_agent_kills_a_task_past_its_runtime_limit(agent, cp):
    cp.send(run_task(1, "sleep 30", runtime_limit_s=1))
    pid = cp.started(1).pid
    ended = cp.ended(1, timeout=10)
    assert ended.error == "runtime limit 0:00:01 exceeded"
    assert lifecycle.outcome(ended.exit_code, canceled=False, error=ended.error) is TaskState.FAILED
    from tests.helpers import process_alive

    assert not process_alive(pid)


def node(name, cores=4):
    state = NodeState.ONLINE
    return Node(name=name, cores=cores, groups=["G"], state=state, agent_protocol=AGENT_PROTOCOL)


def task(tid, cores=1, limit=None, node_name=None, started=None):
    t = Task(job_id=1, id=tid, command="x", cores=cores, runtime_limit_s=limit, submit_time=T0)
    if node_name:
        t.state, t.node, t.dispatch_time, t.start_time = (
            TaskState.RUNNING,
            node_name,
            started,
            started,
        )
    return t


def test_the_cluster_reserves_for_a_wide_task_when_runtime_limits_are_known():
    # a (4 cores) runs a 2-core task until T0+100 s. Queue: a 4-core task (waits: reserved at
    # T0+100), then two 1-core tasks: one of 50 s ends before the reservation and runs; one
    # of 500 s would delay it and waits.
    running = task(9, cores=2, limit=100, node_name="a", started=T0)
    queued = [task(1, cores=4, limit=10), task(2, limit=50), task(3, limit=500)]
    placements = plan(queued, [node("a")], {"a": 2}, running=[running], now=T0)
    assert [p.task_id for p in placements] == [2]
    # Without a limit on what runs nothing can be projected, yet a stays reserved for the
    # wide task (HPC Pack: a missing runtime is infinite, no backfill past a blocked job):
    # neither 1-core task takes its cores, whatever its own limit.
    unknown = task(9, cores=2, node_name="a", started=T0)
    placements = plan(queued, [node("a")], {"a": 2}, running=[unknown], now=T0)
    assert placements == []


def test_a_limit_may_be_given_as_text_in_the_clis_forms():
    """A user probe: ``"runtimeLimit": "2:00:00"`` in a job file was refused, though the
    CLI's --runtime-limit takes that form (HPC Pack's job files give RunTime as text)."""
    spec = JobSpec.parse(
        {"tasks": [{"command": "x", "runtimeLimit": "1:30"}], "runtimeLimit": "2:00:00",
         "jobRuntimeLimit": "1-00:00:00"}
    )  # fmt: skip
    assert (spec.runtime_limit, spec.job_runtime_limit) == (7200, 86400)
    assert spec.tasks[0].runtime_limit == 90
    with pytest.raises(InvalidRequest, match="runtimeLimit: '2 hours' is not"):
        JobSpec.parse({"command": "x", "runtimeLimit": "2 hours"})
