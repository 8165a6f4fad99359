"""Fair share between users: at one priority, the queue serves first the users whose tasks
hold the fewest cores now. Pure.

Why: at one priority the queue was first come, first served. One user's 500-task sweep ran
before another user's job submitted 3 s later (a multi-user probe: that job waited 112 s).
Slurm orders pending work by a fair-share factor (a user's use against their share), and HPC
Pack's Balanced mode shares the cluster between jobs. This is the plainest such rule: equal
shares, on the cores each user's tasks hold as the scheduler pass begins. There is no
history: a user who ran much yesterday is not held back today.

- Priority still comes first (the job's, held to its template's ``maxPriority``).
- Within one user, the order is first come, first served, as before.

The order is fixed for one pass, which places its window in this order. The next pass
(after the next event) counts again, so users with queued work converge on equal shares of
the cores that free up.

``HPC_FAIR_SHARE=false`` turns it off: first come, first served across users (HPC Pack's
Queued mode).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from shared.domain.hosts import Holding, held
from shared.domain.models import Job, Task

OrderKey = tuple[int, int, datetime, int, int]


def in_use(active: Iterable[Task | Holding], owner_of: Mapping[int, str]) -> dict[str, int]:
    """Cores each user's active tasks hold, on every node they hold (by job owner; a task
    of a job not in ``owner_of`` counts for nobody)."""
    use: dict[str, int] = defaultdict(int)
    for task in active:
        owner = owner_of.get(task.job_id)
        if owner is not None:
            use[owner] += sum(seat.cores for seat in held(task))
    return dict(use)


def order(owner_of: Mapping[int, str], use: Mapping[str, int]) -> Callable[[Task], OrderKey]:
    """The scheduling order of queued tasks: priority (high first), then the cores their
    owner's tasks hold (fewest first), then submit time, job id, task id."""

    def key(task: Task) -> OrderKey:
        owner = owner_of.get(task.job_id)
        held_now = use.get(owner, 0) if owner is not None else 0
        return (-task.priority, held_now, task.submit_time, task.job_id, task.id)

    return key


def first_come(task: Task) -> OrderKey:
    """The order without fair share: priority, then submit time, job id, task id."""
    return (-task.priority, 0, task.submit_time, task.job_id, task.id)


def ahead(other: Job, job: Job, use: Mapping[str, int] | None) -> str | None:
    """Whether ``other``'s queued tasks come before ``job``'s (the same order, for whole
    jobs), and why: ``"priority"`` (higher), ``"earlier"`` (same priority, submitted
    first, its user holding no more cores), ``"share"`` (same priority, its user holding
    fewer cores); None if not ahead. ``use`` None: no fair share."""
    if other.priority != job.priority:
        return "priority" if other.priority > job.priority else None
    mine = 0 if use is None else use.get(job.owner, 0)
    theirs = 0 if use is None else use.get(other.owner, 0)
    if theirs != mine:
        return "share" if theirs < mine else None
    return "earlier" if (other.submit_time, other.id) < (job.submit_time, job.id) else None
