"""Job counts as deltas (shared.domain.counts, Job.count / counts_only): pure, as tables."""

from __future__ import annotations

import pytest

from shared.domain.counts import CountsDelta
from shared.domain.models import Job, Step
from shared.domain.states import JobState, TaskState

Q, D, R, F, X, C = (
    TaskState.QUEUED,
    TaskState.DISPATCHING,
    TaskState.RUNNING,
    TaskState.FINISHED,
    TaskState.FAILED,
    TaskState.CANCELED,
)

# (moves: (old, new, n, name)), expected states delta, expected step delta of "s", reopened
MOVES = [
    ([(Q, D, 1, "")], {Q: -1, D: 1}, None, False),
    ([(R, F, 2, "s")], {R: -2, F: 2}, (-2, 0), False),
    ([(R, X, 1, "s"), (Q, C, 1, "s")], {R: -1, X: 1, Q: -1, C: 1}, (-2, 2), False),
    ([(X, Q, 1, "s")], {X: -1, Q: 1}, (1, -1), True),  # a rerun reopens
    ([(C, Q, 3, "")], {C: -3, Q: 3}, None, True),
    ([(F, F, 1, "s")], {F: 0}, (0, 0), False),
    ([(None, Q, 4, "s")], {Q: 4}, None, False),  # new tasks: no step move
]


@pytest.mark.parametrize(("moves", "states", "step", "reopened"), MOVES)
def test_count_records_the_delta_it_moves(moves, states, step, reopened) -> None:
    job = Job(id=1, task_counts={Q: 9, R: 9, X: 9, C: 9, F: 9}, steps={"s": Step(left=9)})
    job.stored()
    for old, new, n, name in moves:
        job.count(old, new, n, name=name)
    delta = job.counts_delta()
    assert delta.states == states
    assert delta.steps.get("s") == step
    assert delta.reopened is reopened


def test_a_delta_applied_to_a_stored_document_adds_up_and_drops_zeros() -> None:
    body = {"taskCounts": {"Queued": 2, "Running": 1}, "steps": {"s": {"left": 3, "failed": 0}}}
    one, two = CountsDelta(), CountsDelta()
    one.move(Q, D, 1, None)
    two.move(R, X, 1, "s")
    total = CountsDelta()
    for delta in (one, two):
        total.add(CountsDelta.from_json(delta.to_json()))  # as a tally round-trips
    assert total.apply(body) == {
        "taskCounts": {"Queued": 1, "Dispatching": 1, "Failed": 1},
        "steps": {"s": {"left": 2, "failed": 1}},
    }


@pytest.mark.parametrize(
    ("partial", "stored"),
    [
        (True, {"Dispatching": 1, "Running": -1, "Finished": 1}),  # a tally brings it back
        (False, {"Dispatching": 1, "Finished": 1}),  # what is read: nothing below zero
    ],
)
def test_a_partial_sum_keeps_counts_below_zero_for_the_tallies_it_has_not_absorbed(
    partial, stored
) -> None:
    closing = CountsDelta()
    closing.move(R, F, 1, None)  # the job's own write, beside a live tally D -1, R +1
    body = closing.apply({"taskCounts": {"Dispatching": 1}}, partial=partial)
    assert body["taskCounts"] == stored
    tally = CountsDelta()
    tally.move(D, R, 1, None)
    assert tally.apply(body)["taskCounts"] == (
        {"Finished": 1} if partial else {"Finished": 1, "Running": 1}
    )


# change to the loaded job, counts_only
FIELDS = [
    (lambda j: j.count(Q, D), True),
    (lambda j: None, True),
    (lambda j: j.move_to(JobState.RUNNING), False),
    (lambda j: setattr(j, "priority", 3000), False),
    (lambda j: setattr(j, "held", True), False),
    (lambda j: setattr(j, "error", "x"), False),
    (lambda j: j.count(X, Q), False),  # reopens: the etag must be checked
]


@pytest.mark.parametrize(("change", "counts_only"), FIELDS)
def test_counts_only_is_true_only_when_nothing_but_counts_moved(change, counts_only) -> None:
    job = Job(id=1, state=JobState.QUEUED, task_counts={Q: 2, X: 1})
    job.stored()
    change(job)
    assert job.counts_only() is counts_only


def test_a_job_the_store_never_loaded_is_never_counts_only() -> None:
    job = Job(id=1, etag="e")
    job.count(Q, D)
    assert not job.counts_only()
