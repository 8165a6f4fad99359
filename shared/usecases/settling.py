"""Settle a job from a fresh read: close it (Finished, Failed, Canceled) once every task ended.

Task ends commit their job's counts as deltas, without the job's etag (see the Store port's
``commit``), so two last task ends can commit side by side, each having read the other as
not ended, and neither settles the job from its own read. So a use case whose counts-only
commit ended tasks calls :func:`settle` afterwards: it re-reads the job (every committed
delta summed) and settles it if due, in a write under the job's etag (a Conflict is
retried from a fresh read). Whoever comes second finds the job already closed: it closes
once. The reconciler settles any job this missed (a crash between the two writes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from shared.domain import lifecycle
from shared.domain.models import Job, Task
from shared.errors import NotFound
from shared.usecases.deps import Deps

log = logging.getLogger(__name__)


def settle(deps: Deps, job_id: int) -> Job | None:
    """Close the job if all its tasks ended, from a fresh read; the job as read (None: it
    does not exist). A write that keeps conflicting is logged and left to the reconciler."""

    def attempt() -> Job | None:
        try:
            job = deps.store.get_job(job_id)
        except NotFound:
            return None
        if lifecycle.settle_job(job, deps.clock()):
            deps.store.commit(job=job)
        return job

    try:
        return deps.retry(attempt)
    except Exception:  # the tasks' commit stands; the reconciler's next run settles the job
        log.exception("settling job %d failed; the reconciler will", job_id)
        return None


def commit_settling(
    deps: Deps, job: Job, tasks: Sequence[Task], *, ended: bool, now: datetime
) -> None:
    """Commit the job (settled if due from this read) with its changed tasks; if some of
    them ended and this read did not settle it, :func:`settle` from a fresh read."""
    settled = lifecycle.settle_job(job, now)
    deps.store.commit(job=job, tasks=tasks)
    if ended and not settled:
        settle(deps, job.id)  # others' ends, committed beside ours, may have made it due
