"""The job-level exclusive rule as a table: may a request of job J use a node, given which
jobs run there and which job holds it (shared.domain.jobexclusive)."""

from __future__ import annotations

import pytest

from shared.domain.hosts import Holding, Seat
from shared.domain.jobexclusive import bars, may_use, occupancy


@pytest.mark.parametrize(
    ("job", "exclusive", "running", "holder", "allowed"),
    [
        pytest.param(1, False, set(), None, True, id="normal-on-an-empty-node"),
        pytest.param(1, True, set(), None, True, id="exclusive-on-an-empty-node"),
        pytest.param(1, False, {2, 3}, None, True, id="normal-beside-normal-jobs"),
        pytest.param(1, False, {1}, None, True, id="normal-beside-its-own-tasks"),
        pytest.param(1, True, {1}, 1, True, id="exclusive-beside-its-own-tasks"),
        pytest.param(1, True, {2}, None, False, id="exclusive-never-beside-another-job"),
        pytest.param(1, True, {1, 2}, None, False, id="exclusive-not-beside-own-and-another"),
        pytest.param(1, False, {2}, 2, False, id="normal-never-on-a-node-an-exclusive-job-holds"),
        pytest.param(1, True, {2}, 2, False, id="exclusive-never-on-another-exclusive-jobs-node"),
        pytest.param(2, False, {2}, 2, True, id="the-holders-own-task-is-always-welcome"),
    ],
)
def test_may_use(job, exclusive, running, holder, allowed):
    assert may_use(job, exclusive, running, holder) is allowed


@pytest.mark.parametrize(
    ("job", "exclusive", "other", "other_exclusive", "barred"),
    [
        (1, False, 2, False, False),
        (1, True, 2, False, True),
        (1, False, 2, True, True),
        (1, True, 1, True, False),
        (1, False, 1, False, False),
    ],
)
def test_one_running_task_bars_a_request(job, exclusive, other, other_exclusive, barred):
    assert bars(job, exclusive, other, other_exclusive) is barred


def test_occupancy_counts_every_node_of_a_multi_node_task():
    seen = occupancy(
        [
            Holding(7, 1, (Seat("a", 4), Seat("b", 4)), job_exclusive=True),
            Holding(8, 1, (Seat("c", 1),)),
        ]
    )
    assert seen.holders == {"a": 7, "b": 7}
    assert seen.jobs == {"a": frozenset({7}), "b": frozenset({7}), "c": frozenset({8})}
    assert not seen.allows(8, False, "b")
    assert seen.allows(7, True, "b")
    assert not seen.allows(7, True, "c")
    assert seen.barred(9, True, ["a", "c", "d"]) == ["a", "c"]
