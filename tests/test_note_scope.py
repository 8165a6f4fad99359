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


def test_a_task_shown_to_the_autoscaler_does_not_hear_the_ceilings_note(cp, provider, clock):
    """The probe's 13 one-core tasks for three Offline 2-core VMs; here the group's
    GrowThreshold of 7 holds the first 6 back (the probe's grow check did), which every
    waiting task hears, while the ceiling's note is the last 7's alone."""
    cp.set_group(AZ, provider="local", max_nodes=3, node_cores=2, grow_threshold=7)
    cp.add_nodes(AZ, 3)
    job = cp.submit({"command": "x", "nodeGroups": [AZ], "sweep": {"start": 1, "end": 12}})
    other = cp.submit({"command": "x", "nodeGroups": [AZ]})
    cp.autoscale()  # no node: 6 tasks below GrowThreshold 7; 7 tasks beyond the ceiling
    threshold = (
        "6 queued task(s) it could run, below GrowThreshold 7 "
        "(hpc nodegroup set AzureNodes --grow-threshold N)"
    )
    ceiling = (
        "7 queued tasks of jobs 1, 2 wait for running work: 0 of its nodes run work and its "
        "maxNodes is 3, so it cannot fit until some ends; no node is started for it"
    )
    said = cp.store.get_meta(STATE_KEY).data["said"][AZ]["notes"]
    assert said == [threshold, {"text": ceiling, "about": f"{job.id}:7-12 {other.id}:1"}]
    why = reasons(cp, job.id, other.id)
    heard = "no Online node in AzureNodes (3 Offline); the autoscaler 0 s ago: AzureNodes: "
    for i in range(1, 7):
        assert why[(job.id, i)] == heard + threshold
    for key in [(job.id, i) for i in range(7, 13)] + [(other.id, 1)]:
        assert why[key] == heard + threshold + "; AzureNodes: " + ceiling
    cp.set_group(AZ, grow_threshold=1)
    clock.advance(60)
    cp.autoscale()  # the next grow check: the first six tasks' three nodes start
    why = reasons(cp, job.id, other.id)
    assert why[(job.id, 1)] == "waiting for azure-1, azure-2, azure-3 to start in AzureNodes"
    beyond = (  # the ceiling's note, said again by this run, is the last 7's
        "waiting for azure-1, azure-2, azure-3 to start in AzureNodes; the autoscaler 0 s ago: "
        "AzureNodes: " + ceiling
    )
    assert why[(job.id, 12)] == beyond
    assert why[(other.id, 1)] == "1 earlier job of the same priority ahead; " + beyond
