"""Give up attempts whose node was lost: requeue them as new attempts (or fail them past
their job's retry limit), one job's tasks per transaction with the job's counters."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from shared.domain import lifecycle
from shared.domain.models import Task
from shared.domain.states import JobState
from shared.errors import NotFound
from shared.usecases.deps import Deps, chunks
from shared.usecases.settling import commit_settling

Reason = Callable[[Task], str]


def lose_attempts(
    deps: Deps,
    tasks: Iterable[Task],
    reason: Reason,
    *,
    count: bool,
    may_run_until: datetime | None = None,
) -> bool:
    """Requeue each of ``tasks`` (as read: its attempt is what is given up; a task that moved
    on since is left alone). True if any changed. ``may_run_until``: the attempts may still
    run until then (their agent has yet to kill them): the new ones wait for it or for the
    old ones' ends (:func:`shared.domain.lifecycle.held_by_lost`)."""
    by_job: dict[int, list[Task]] = defaultdict(list)
    for task in tasks:
        by_job[task.job_id].append(task)
    changed = False
    for job_id, job_tasks in by_job.items():
        for chunk in chunks(job_tasks):
            wanted = {t.id: (t.attempt, reason(t)) for t in chunk}
            changed |= deps.retry(_lose_chunk, deps, job_id, wanted, count, may_run_until)
    return changed


def _lose_chunk(
    deps: Deps,
    job_id: int,
    wanted: dict[int, tuple[int, str]],
    count: bool,
    may_run_until: datetime | None,
) -> bool:
    try:
        job = deps.store.get_job(job_id)
    except NotFound:
        return False
    now = deps.clock()
    changed = []
    ended = False
    for task in deps.store.get_tasks(job_id, wanted):
        attempt, why = wanted[task.id]
        if task.attempt != attempt:
            continue
        change = lifecycle.lose_attempt(
            task,
            max_retries=job.max_retries,
            canceling=job.state is JobState.CANCELING,
            reason=why,
            count=count,
            now=now,
            may_run_until=may_run_until,
            priority=job.priority,
        )
        if change is not None:
            job.count(change.old, change.new, name=task.name)
            changed.append(task)
            ended |= change.ended
    if not changed:
        return False
    commit_settling(deps, job, changed, ended=ended, now=now)
    return True


def release_given_up(deps: Deps, vm: str) -> None:
    """``vm``'s deallocation is known done: the attempts given up with it (an admin's
    offline, ``Node.given_up``) run no more, so their tasks' next attempts start now rather
    than after the heartbeat timeout (a probe's waited 90 s behind a VM already off)."""
    try:
        keys = deps.store.get_node(vm).given_up
    except NotFound:
        return
    if not keys:
        return
    for job_id, task_id in keys:
        deps.retry(_release, deps, job_id, task_id, vm)

    def forget() -> None:
        node = deps.store.get_node(vm)
        node.given_up = []
        deps.store.put_node(node)

    deps.retry(forget)
    deps.kick()


def _release(deps: Deps, job_id: int, task_id: int, vm: str) -> None:
    try:
        task = deps.store.get_task(job_id, task_id)
    except NotFound:
        return
    if lifecycle.machine_gone(task, vm):
        deps.store.commit(tasks=[task])
