"""What the cluster's timer tells a group's idle policy (shared/domain/jobevents.py): the
submits and, for ``forecast``, the ends of the group's jobs, in the simulator's order; and
which jobs it watches for their ends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.jobevents import JobEvent, ends, gone, tell
from shared.domain.models import Job
from shared.domain.policymemory import WATCH_KEPT
from shared.domain.states import JobState
from shared.domain.waitvalue import ValuePool

B = 180.0


# ------------------------------------------------------- what the timer tells


class Recorder:
    """A policy told users and ends (SessionAware), recording what it is told."""

    def __init__(self) -> None:
        self.told: list[tuple[str, float, int, str | None]] = []

    def arrived(self, now: float, nodes: int, user: str | None = None) -> None:
        self.told.append(("submit", now, nodes, user))

    def ended(self, now: float, nodes: int, user=None, ran_s=None) -> None:
        self.told.append(("end", now, nodes, user))


def test_ends_and_submits_are_told_in_time_order_ends_first_as_the_simulator():
    events = [
        JobEvent(20.0, 2, "a"),
        JobEvent(10.0, 0, "b"),  # not this group's demand
        JobEvent(20.0, 0, "c", ended=True),
        JobEvent(5.0, 0, "d", ended=True),  # before the last run's events: told at 8
    ]
    r = Recorder()
    assert tell(r, events, told=8.0) == 20.0  # type: ignore[arg-type]
    assert r.told == [("end", 8.0, 0, "d"), ("end", 20.0, 0, "c"), ("submit", 20.0, 2, "a")]


def test_a_policy_not_told_users_gets_the_submits_alone():
    pool = ValuePool(B, 10)
    tell(pool, [JobEvent(1.0, 2, "a"), JobEvent(2.0, 0, "a", ended=True), JobEvent(3.0, 0)])
    assert pool.widths.to_dict() == {"2": 1.0} and pool.forecast.at == 1.0


def _job(job_id: int, state: JobState, end: float | None = None, owner: str = "ann") -> Job:
    end_time = None if end is None else datetime.fromtimestamp(end, UTC)
    return Job(id=job_id, owner=owner, state=state, end_time=end_time)


@pytest.mark.parametrize(
    ("job", "told", "watched"),
    [
        (_job(1, JobState.FINISHED, 500.0), [JobEvent(500.0, 0, "ann", True)], ()),
        (_job(1, JobState.CANCELED), [JobEvent(900.0, 0, "ann", True)], ()),  # no end: now
        (_job(1, JobState.FINISHING), [], (1,)),  # about to end: watched on
        (_job(1, JobState.QUEUED), [], ()),  # left the queue window: watched when back
        (None, [], ()),  # deleted, or not read this run
    ],
)
def test_a_watched_job_that_left_the_queue_is_told_once_it_ended(job, told, watched):
    known = {} if job is None else {1: job}
    assert ends([1], (), live={7}, mine={7}, known=known, now=900.0) == (
        told,
        tuple(sorted((7, *watched))),
    )


def test_a_new_job_that_already_ended_is_told_and_live_ones_are_watched():
    known = {3: _job(3, JobState.FINISHED, 40.0, "bo"), 4: _job(4, JobState.RUNNING)}
    told, watch = ends([2], {3, 4}, live={2, 4, 5}, mine={5}, known=known, now=60.0)
    assert told == [JobEvent(40.0, 0, "bo", True)]
    assert watch == (2, 4, 5)  # 2 still live (elsewhere now), 4 submitted here, 5 runs here
    assert gone([(1, 2, 3), (3, 9)], live={2}) == {1, 3, 9}


def test_the_watch_keeps_the_newest_jobs():
    newest = set(range(WATCH_KEPT + 10))
    _, watch = ends((), (), live=newest, mine=newest, known={}, now=0.0)
    assert watch == tuple(range(10, WATCH_KEPT + 10))
    _, watch = ends(range(WATCH_KEPT + 10), (), live=set(), mine=set(range(5)), known={}, now=0.0)
    assert watch == tuple(range(5))
