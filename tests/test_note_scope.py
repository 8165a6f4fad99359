"""An autoscaler note is quoted only by the waiting tasks it is about
(shared/domain/notescope.py): the scope as a table, the pending reason's choice, and the
probe that found it through the control plane (13 one-core tasks for three 2-core VMs, all
Offline, between two grow checks: task 1.1 read the ceiling's "no node is started for it"
meant for the 7 tasks beyond the group's maxNodes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.notescope import MAX_RANGES, covers, scope
from shared.domain.pending_scaling import GroupScaling, Said, scaling_reason
from shared.domain.states import TaskState
from shared.usecases.autoscale_memory import STATE_KEY
from tests.test_control import clock, cp  # noqa: F401 - fixtures
from tests.test_nodes_admin import provider  # noqa: F401 - fixture

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AZ = "AzureNodes"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], None),
        ([(1, 7)], "1:7"),
        ([(1, 7), (1, 8), (1, 9), (1, 10), (1, 11), (1, 12), (3, 1)], "1:7-12 3:1"),
        ([(5, 9), (5, 1), (5, 2), (5, 3)], "5:1-3,9"),  # any order
        ([(10, 1), (9, 1)], "9:1 10:1"),  # jobs by id
        ([(2, 4), (2, 4)], "2:4"),  # twice is once
        ([(1, i) for i in range(1, 2 * MAX_RANGES + 2, 2)], None),  # too many ranges
        (
            [(1, i) for i in range(1, 2 * MAX_RANGES, 2)],
            "1:" + ",".join(str(i) for i in range(1, 2 * MAX_RANGES, 2)),
        ),  # just enough
    ],
)
def test_a_scope_names_each_jobs_tasks_as_ranges(keys, expected):
    assert scope(keys) == expected


@pytest.mark.parametrize(
    ("text", "job", "task", "expected"),
    [
        (None, 1, 1, True),  # no scope: every task of the group
        ("1:7-12 3:1", 1, 7, True),
        ("1:7-12 3:1", 1, 12, True),
        ("1:7-12 3:1", 1, 6, False),
        ("1:7-12 3:1", 1, 13, False),
        ("1:7-12 3:1", 3, 1, True),
        ("1:7-12 3:1", 2, 8, False),  # another job
        ("5:1-3,9", 5, 9, True),
        ("5:1-3,9", 5, 4, False),
        ("12:1", 1, 1, False),  # job 12 is not job 1
        ("1:x-3", 1, 9, True),  # does not parse: never loses the note
    ],
)
def test_a_scope_covers_its_tasks_only(text, job, task, expected):
    assert covers(text, job, task) is expected


def test_every_scoped_task_is_covered_and_no_other():
    keys = {(1, 1), (1, 2), (1, 5), (2, 3), (2, 4), (7, 100)}
    text = scope(keys)
    for job in (1, 2, 3, 7):
        for task in range(0, 102):
            assert covers(text, job, task) is ((job, task) in keys)


HIDDEN = Said("7 queued tasks of jobs 1, 3 wait for running work", about="1:7-12 3:1")
GROUP = GroupScaling(AZ, managed=True, notes=(HIDDEN,), said_at=NOW - timedelta(seconds=5))


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (
            (1, 12),
            "the autoscaler 5 s ago: AzureNodes: 7 queued tasks of jobs 1, 3 wait for running work",
        ),
        (
            (3, 1),
            "the autoscaler 5 s ago: AzureNodes: 7 queued tasks of jobs 1, 3 wait for running work",
        ),
        ((1, 1), None),  # not about it: nothing holds it back, its next run may start one
        (
            None,
            "the autoscaler 5 s ago: AzureNodes: 7 queued tasks of jobs 1, 3 wait for running work",
        ),  # no task named: every note
    ],
)
def test_a_task_hears_only_the_notes_about_it(task, expected):
    assert scaling_reason(GROUP, NOW, [AZ], task=task) == expected


def test_a_plain_note_still_concerns_every_task():
    group = GroupScaling(AZ, managed=True, notes=("below GrowThreshold 3",), said_at=NOW)
    assert scaling_reason(group, NOW, [AZ], task=(9, 9)) == (
        "the autoscaler 0 s ago: AzureNodes: below GrowThreshold 3"
    )


def test_a_stored_note_reads_back_with_its_scope():
    assert Said.of("plain") == Said("plain")
    assert Said.of({"text": "t", "about": "1:2"}) == Said("t", "1:2")


def reasons(cp, *jobs):
    queued = [t for j in jobs for t in cp.list_tasks(j) if t.state is TaskState.QUEUED]
    return cp.pending_reasons(queued)


def test_the_probe_task_that_gets_a_node_hears_the_grow_check_not_the_ceiling(cp, provider, clock):
    cp.set_group(AZ, provider="local", max_nodes=3, node_cores=2)
    cp.add_nodes(AZ, 3)
    cp.autoscale()  # a grow check with nothing queued (as hpc up's first timer run)
    clock.advance(20)
    job = cp.submit({"command": "x", "nodeGroups": [AZ], "sweep": {"start": 1, "end": 12}})
    other = cp.submit({"command": "x", "nodeGroups": [AZ]})
    cp.autoscale()  # between grow checks: no node started yet; 7 tasks beyond the ceiling
    said = cp.store.get_meta(STATE_KEY).data["said"][AZ]["notes"]
    assert said == [{
        "text": "7 queued tasks of jobs 1, 2 wait for running work: 0 of its nodes run work "
        "and its maxNodes is 3, so it cannot fit until some ends; no node is started for it",
        "about": f"{job.id}:7-12 {other.id}:1",
    }]  # fmt: skip
    why = reasons(cp, job.id, other.id)
    first = why[(job.id, 1)]
    assert "wait for running work" not in first
    assert first.endswith(
        "the autoscaler considers growing AzureNodes every 60 s (GrowInterval): next in 40 s"
    )
    for key in [(job.id, i) for i in range(7, 13)] + [(other.id, 1)]:
        assert "no node is started for it" in why[key]
    clock.advance(40)
    cp.autoscale()  # the grow check: the first six tasks' three nodes start
    why = reasons(cp, job.id, other.id)
    assert why[(job.id, 1)] == "waiting for azure-1, azure-2, azure-3 to start in AzureNodes"
    assert why[(job.id, 12)].startswith("waiting for azure-1, azure-2, azure-3 to start")
