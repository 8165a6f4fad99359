"""A task's own stdout / stderr files (``--stdout`` / ``--stderr``, Slurm's --output / --error): their paths.

The placeholders (%j, %t, %a, %%) and what is refused at submit (an unknown one, %a
outside a sweep) as a table; the job spec carries them; the control plane expands
them at dispatch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.domain.jobbuild import build
from shared.domain.jobspec import JobSpec
from shared.domain.outputpaths import OutputIds, check_output_path, expand_output_path
from shared.errors import InvalidRequest
from tests.test_control import Clock, make_cp, register

# --- expansion and validation: pure, as tables ----------------------------------------

IDS = OutputIds(job_id=42, task_id=7, sweep_index=3)


@pytest.mark.parametrize(
    ("path", "ids", "expanded"),
    [
        ("out.txt", IDS, "out.txt"),
        ("job%j.out", IDS, "job42.out"),
        ("%j-%t-%a.log", IDS, "42-7-3.log"),
        ("/abs/%j/%t.err", IDS, "/abs/42/7.err"),
        ("100%%.txt", IDS, "100%.txt"),
        ("%%j is %j", IDS, "%j is 42"),  # %% then j: a literal "%j"
        ("%%%j", IDS, "%42"),
        ("%j%j", IDS, "4242"),
        ("a%a", OutputIds(job_id=1, task_id=1, sweep_index=-5), "a-5"),
        ("a%a", OutputIds(job_id=1, task_id=1, sweep_index=0), "a0"),
        # refused at submit; left as written so that dispatch can never fail on it
        ("a%a", OutputIds(job_id=1, task_id=1), "a%a"),
        ("x%q", IDS, "x%q"),
        # Slurm's %A %x %u %N, which a probe's Slurm user reached for
        ("%A_%a.out", IDS, "42_3.out"),
        ("%x-%u@%N.log", OutputIds(1, 2, None, "sim", "alice", "azure-3"), "sim-alice@azure-3.log"),
    ],
)
def test_placeholders_expand(path: str, ids: OutputIds, expanded: str) -> None:
    assert expand_output_path(path, ids) == expanded


@pytest.mark.parametrize(
    ("path", "sweep"),
    [
        ("out.txt", False),
        ("%j.%t.out", False),
        ("100%%", False),
        ("%a.out", True),
        ("logs/%j/%a-%t.txt", True),
        ("%x-%A-%u-%N.txt", False),
    ],
)
def test_accepted_paths(path: str, sweep: bool) -> None:
    check_output_path(path, sweep=sweep)


@pytest.mark.parametrize(
    ("path", "sweep", "message"),
    [
        ("out-%z.txt", True, "unknown placeholder %z"),
        ("out-%n.txt", True, "unknown placeholder %n"),  # Slurm's relative node id: not ours
        ("out-%3a.txt", True, "unknown placeholder %3"),
        ("%a.out", False, "%a is the sweep index and this task is not a sweep"),
        ("out%", True, "ends with a lone %: write %% for a literal %"),
        ("  ", True, "the path is empty"),
        ("a\0b", True, "NUL"),
    ],
)
def test_refused_paths_say_what_to_fix(path: str, sweep: bool, message: str) -> None:
    with pytest.raises(ValueError) as e:
        check_output_path(path, sweep=sweep)
    assert message in str(e.value)


# --- the job spec ---------------------------------------------------------------------------


def test_spec_refuses_an_unknown_placeholder_naming_field_and_placeholder() -> None:
    with pytest.raises(InvalidRequest) as e:
        JobSpec.parse({"tasks": [{"command": "x", "stderr": "err-%y.txt"}]})
    assert "tasks.0.stderr" in str(e.value)
    assert "unknown placeholder %y" in str(e.value)
    assert e.value.status == 422


def test_spec_refuses_the_sweep_index_in_a_task_that_is_not_a_sweep() -> None:
    with pytest.raises(InvalidRequest, match=r"spec: stdout: .*%a is the sweep index"):
        JobSpec.parse({"command": "x", "stdout": "o-%a"})  # the one-task form: its field
    with pytest.raises(InvalidRequest, match=r"tasks\.0\.stdout: .*%a is the sweep index"):
        JobSpec.parse({"tasks": [{"command": "x", "stdout": "o-%a"}]})
    JobSpec.parse({"command": "x", "sweep": "1-3", "stdout": "o-%a"})  # a sweep has one


def test_top_level_stdout_and_stderr_belong_to_the_single_task() -> None:
    spec = JobSpec.parse({"command": "x", "stdout": "o-%j", "stderr": "e-%j"})
    assert (spec.tasks[0].stdout, spec.tasks[0].stderr) == ("o-%j", "e-%j")
    task = build(spec, 5, now=datetime(2026, 1, 1, tzinfo=UTC))[1][0]
    assert (task.stdout, task.stderr) == ("o-%j", "e-%j")  # stored unexpanded


# --- dispatch expands them ------------------------------------------------------------------


def test_dispatch_expands_the_placeholders_of_each_sweep_step(tmp_path: Path) -> None:
    cp = make_cp(tmp_path, Clock())
    node = register(cp, "n1", cores=4)
    job = cp.submit(
        {
            "tasks": [
                {"command": "true", "stdout": "out/%j-%t.txt", "stderr": "100%%"},
                {"command": "true", "sweep": "10-30:10", "stdout": "s-%a", "stderr": "s-%a"},
            ]
        }
    )
    with pytest.raises(InvalidRequest, match="not a sweep"):
        cp.submit({"command": "true", "stdout": "%a"})
    assert cp.schedule_pass() == 4
    runs = sorted(node.runs(), key=lambda r: r.task_id)
    assert [(r.task_id, r.stdout, r.stderr) for r in runs] == [
        (1, f"out/{job.id}-1.txt", "100%"),
        (2, "s-10", "s-10"),
        (3, "s-20", "s-20"),
        (4, "s-30", "s-30"),
    ]


def test_dispatch_expands_the_job_name_owner_and_node(tmp_path: Path) -> None:
    cp = make_cp(tmp_path, Clock())
    node = register(cp, "n1", cores=4)
    named = cp.submit({"name": "sim", "command": "true", "stdout": "%x-%u@%N-%A.out"})
    plain = cp.submit({"command": "true", "stdout": "%x.out"})
    assert cp.schedule_pass() == 2
    runs = sorted(node.runs(), key=lambda r: r.job_id)
    assert [r.stdout for r in runs] == [
        f"sim-{named.owner}@n1-{named.id}.out",
        f"job{plain.id}.out",  # unnamed: as the lists show it
    ]


def test_a_path_of_many_job_names_is_weighed_at_their_widest() -> None:
    """Each %x may stand for 256 characters: 2,000 of them in a 4,096-character path would
    make an assignment past Service Bus's bound, which the length alone would not show."""
    with pytest.raises(InvalidRequest, match="assignment message could reach"):
        JobSpec.parse({"command": "x", "stdout": "%x" * 2000})
    JobSpec.parse({"command": "x", "stdout": "%x" * 10})
