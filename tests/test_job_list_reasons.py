"""``hpc job list``: a Queued job says what its own settings hold it back by, as squeue's PD
(JobHeldUser / BeginTime / Dependency) does; a probe's held, ``--begin`` and dependent jobs
all read just Queued."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from hpc.render import job_state, left_canceled

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LISTED = {1: "Queued", 2: "Finished", 3: "Running"}


@pytest.mark.parametrize(
    ("job", "shown"),
    [
        ({"state": "Queued", "held": True}, "Queued (held)"),
        ({"state": "Queued", "held": True, "holdUntil": "2026-12-04T09:00:00Z"}, "Queued (held)"),
        ({"state": "Queued", "holdUntil": "2026-12-04T09:00:00Z"}, "Queued (until "),
        ({"state": "Queued", "holdUntil": "2026-12-03T11:00:00Z"}, "Queued"),  # passed
        ({"state": "Queued", "dependsOn": [1]}, "Queued (dependency)"),
        ({"state": "Queued", "dependsOn": [3, 2]}, "Queued (dependency)"),
        ({"state": "Queued", "dependsOn": [2]}, "Queued"),  # it Finished: waits for cores
        ({"state": "Queued", "dependsOn": [99]}, "Queued"),  # not listed: not known here
        ({"state": "Running", "held": True}, "Running"),  # what runs goes on
    ],
)  # fmt: skip
def test_a_queued_job_says_what_holds_it_back(job: dict[str, Any], shown: str) -> None:
    text = job_state(job, LISTED, now=NOW).plain
    assert text.startswith(shown) and (shown.endswith(" ") or text == shown), text


def test_a_requeue_names_no_dependent_job_the_same_command_requeues() -> None:
    """A probe's `hpc job requeue 8 9 10` told it to requeue 9 too, then did."""
    answer = {"dependentJobsCanceled": [9, 10, 11]}
    assert left_canceled(answer, 8, besides=[8, 9, 10]) == (
        "job 11, canceled because job 8 did not finish, stays Canceled: requeue it too: "
        "hpc job requeue 11"
    )
    assert left_canceled(answer, 8, besides=[8, 9, 10, 11]) is None
    assert "jobs 9, 10, 11" in (left_canceled(answer, 8) or "")
