"""The range's rules for a task canceled alone before the scheduler reached it
(:meth:`TaskRange.create_ahead`, :meth:`TaskRange.advance`): which ids are still to be
created, where the cursor stands, what is left and whether the range is open. Pure: a
table of (cursor, created ahead, what happens) -> (cursor, created ahead, ids to create)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.models import Task
from shared.domain.states import TaskState
from shared.domain.taskrange import TaskRange

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def six(cursor: int = 0, ahead: tuple[int, ...] = ()) -> TaskRange:
    """Tasks 11..16 of job 1 (sweep indexes 1..6)."""
    template = Task(job_id=1, id=11, command="run *", sweep_index=1, submit_time=T0)
    return TaskRange(
        job_id=1,
        first_id=11,
        count=6,
        start=1,
        template=template,
        name_prefix="s",
        cursor=cursor,
        created_ahead=list(ahead),
    )


@pytest.mark.parametrize(
    ("cursor", "ahead", "steps", "want_cursor", "want_ahead", "want_ids"),
    [
        # canceled ahead of the cursor: listed, skipped, never created from the cursor
        (0, (), ["c13"], 0, [13], [11, 12, 14, 15, 16]),
        (0, (), ["c16", "c13"], 0, [13, 16], [11, 12, 14, 15]),
        # canceled at the cursor: the cursor moves past it (nothing listed)
        (0, (), ["c11"], 1, [], [12, 13, 14, 15, 16]),
        # ... and past those canceled right after it
        (0, (12, 13), ["c11"], 3, [], [14, 15, 16]),
        # created from the cursor: it passes the canceled ones it reaches, dropping them
        (0, (12,), ["a"], 2, [], [13, 14, 15, 16]),
        (0, (12, 13, 15), ["a"], 3, [15], [14, 16]),
        (0, (12, 13, 15), ["a", "a"], 5, [], [16]),
        # the last one to create canceled: none left, the range is closed
        (4, (16,), ["c15"], 6, [], []),
        (0, (), ["c11", "c12", "c13", "c14", "c15", "c16"], 6, [], []),
    ],
)
def test_the_cursor_skips_the_tasks_canceled_ahead_of_it(
    cursor, ahead, steps, want_cursor, want_ahead, want_ids
):
    r = six(cursor, ahead)
    for step in steps:
        r.advance() if step == "a" else r.create_ahead(int(step[1:]))
    assert (r.cursor, r.created_ahead, list(r.unborn_ids())) == (want_cursor, want_ahead, want_ids)
    assert r.left == len(want_ids)
    assert r.open is bool(want_ids)
    assert [i for i in range(5, 25) if r.contains(i)] == want_ids
    if want_ids:
        assert want_ids[0] == r.first_id + r.cursor  # the cursor never rests on one created


@pytest.mark.parametrize(
    ("cursor", "ahead", "task_id"),
    [(0, (), 10), (0, (), 17), (2, (), 12), (0, (13,), 13)],
    ids=["before", "after", "created by dispatch", "created ahead already"],
)
def test_only_a_task_not_created_yet_can_be_created_ahead(cursor, ahead, task_id):
    r = six(cursor, ahead)
    with pytest.raises(ValueError, match="not one of range"):
        r.create_ahead(task_id)
    assert (r.cursor, r.created_ahead) == (cursor, list(ahead))


def test_unborn_ids_start_after_the_given_id_and_skip_those_created():
    r = six(1, (14,))
    assert list(r.unborn_ids(after=12)) == [13, 15, 16]
    assert list(r.unborn_ids(after=16)) == []


def test_the_list_is_replaced_not_changed_in_place():
    r = six(0, (12, 14))
    copy = r.model_copy()  # (a shallow copy shares the list)
    r.advance()
    r.create_ahead(16)
    assert copy.created_ahead == [12, 14] and r.created_ahead == [14, 16]


def test_a_job_cancel_shows_the_rest_canceled_not_those_created_ahead():
    r = six(1, (13,))
    r.canceled_time = T0
    assert r.left == 4  # 12, 14, 15, 16: what a job cancel counts Queued -> Canceled
    assert [r.task(i).state for i in r.unborn_ids()] == [TaskState.CANCELED] * 4
