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

The window is merged user by user (:class:`FairMerge`): the next task is the first of the
user whose cores held, plus the cores of their tasks already taken into this window, are
fewest. So two users holding nothing take turns, and a user who held nothing does not take
every core a pass finds free. (A probe: with one order for the whole pass, a user holding
none whose tasks need 2 cores each waited 38 s behind two users of 1-core tasks, who each
fell to 0 in turn as their last task on a node ended, and then took both freed cores.) A
wide task first in line gets EASY's reservation, as ever. Between users holding as many
cores, the wider task goes first: the narrow user's task that just ended had left that user
at 0 again, tied with the wide user, and won the tie by its earlier submit every time (the
same probe, replayed: carol still waited after 30 ends); taken, the wide task raises its
user's count, so the narrow user is next.

``HPC_FAIR_SHARE=false`` turns it off: first come, first served across users (HPC Pack's
Queued mode).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from shared.domain.hosts import Holding, held
from shared.domain.models import Job, Task

OrderKey = tuple[int, datetime, int, int]
FairRank = tuple[int, int, int, datetime, int, int]


def in_use(active: Iterable[Task | Holding], owner_of: Mapping[int, str]) -> dict[str, int]:
    """Cores each user's active tasks hold, on every node they hold (by job owner; a task
    of a job not in ``owner_of`` counts for nobody)."""
    use: dict[str, int] = defaultdict(int)
    for task in active:
        owner = owner_of.get(task.job_id)
        if owner is not None:
            use[owner] += sum(seat.cores for seat in held(task))
    return dict(use)


def first_come(task: Task) -> OrderKey:
    """The order without fair share, and within one user: priority, then submit time, job
    id, task id."""
    return (-task.priority, task.submit_time, task.job_id, task.id)


def asks(task: Task) -> int:
    """The cores a queued task holds once it starts (at its least, on all its nodes)."""
    return task.cores * task.nodes


class FairMerge:
    """Queued tasks in fair order: priority first; then the user whose cores held (``use``)
    plus the cores of the tasks the caller took so far (:meth:`took`) are fewest; at a tie,
    the wider task first; then first come. ``per_user``: each user's tasks in
    :func:`first_come` order (lazy streams welcome).

    The next task is chosen when the caller asks for it, after it said whether it took the
    last one: a task the caller passes over (its job cannot start now) counts for nobody."""

    def __init__(self, per_user: Mapping[str, Iterable[Task]], use: Mapping[str, int]) -> None:
        self._use = dict(use)
        self._streams = {user: iter(tasks) for user, tasks in per_user.items()}
        self._heads: list[tuple[FairRank, str]] = []
        self._head: dict[str, Task] = {}
        for user in self._streams:
            self._push(user)

    def _push(self, user: str) -> None:
        task = next(self._streams[user], None)
        if task is not None:
            self._head[user] = task
            held = self._use.get(user, 0)
            rank = (-task.priority, held, -asks(task), *first_come(task)[1:])
            heapq.heappush(self._heads, (rank, user))

    def took(self, task: Task, user: str) -> None:
        """The caller took ``task`` (of ``user``) into the window: its cores count."""
        self._use[user] = self._use.get(user, 0) + asks(task)

    def __iter__(self) -> Iterator[tuple[Task, str]]:
        while self._heads:
            _, user = heapq.heappop(self._heads)
            yield self._head.pop(user), user
            self._push(user)  # its next task, ranked with what the caller took meanwhile


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
