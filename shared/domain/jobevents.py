"""What the cluster's timer tells a group's idle policy between two runs: the submits
counted toward the group and, for a policy told users and ends (``forecast``), the ends of
the group's jobs, in the simulator's order.

Pure (no clock, no I/O). The simulator (:mod:`shared.sim.elastic`) tells the policy each
event at its time, job ends before submits at the same second; the timer learns them a run
later and tells them the same way, in time order, before it asks for the plan.

Which ends: the timer remembers the group's jobs that were queued or running at its last
run (the ``watch``, :class:`shared.domain.policymemory.Forecast`); one of them no longer
queued or running that ended is told at its end time, as is a job submitted since the last
run that counted toward the group and has already ended. A watched job that left the queue
without ending (held, queued beyond the read window, waiting on a dependency) is dropped
and watched again when it comes back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from shared.domain.hosts import held
from shared.domain.models import Job, Task
from shared.domain.policymemory import WATCH_KEPT
from shared.domain.sessions import SessionAware
from shared.domain.states import JOB_TERMINAL, TASK_TERMINAL, JobState
from shared.domain.warmpool import IdleSizing


@runtime_checkable
class RunAware(Protocol):
    """A policy that learns from ended jobs' run times (``forecast``)."""

    def ran(self, user: str | None, limit_s: float, ran_s: float) -> None: ...


ENDING = frozenset({JobState.FINISHING, JobState.CANCELING})
"""States of a job about to end: watched on though no task is queued or running."""


@dataclass(frozen=True)
class JobEvent:
    """A job's submit (``nodes``: its demand on the group) or end (``ended``), epoch seconds."""

    at: float
    nodes: int
    user: str | None = None
    ended: bool = False
    limit_s: float | None = None
    """An end's runtime limit and run time, when known (a job of one task that ran): the
    end forecast learns from them (:meth:`shared.domain.forecastpool.ForecastPool.ran`)."""
    ran_s: float | None = None


def tell(sizing: IdleSizing, events: Iterable[JobEvent], told: float = 0.0) -> float:
    """Tell the policy the events; the time of the last one told. A policy not told users
    and ends gets the submits alone, as before (by time, then width); one that is
    (:class:`SessionAware`) gets both in time order, ends first at a tie (the simulator's
    order), none before ``told`` (the last event of an earlier run)."""
    if not isinstance(sizing, SessionAware):
        for e in sorted((e for e in events if not e.ended), key=lambda e: (e.at, e.nodes)):
            if e.nodes > 0:
                sizing.arrived(e.at, e.nodes)
        return told
    for e in sorted(events, key=lambda e: (e.at, not e.ended)):
        at = max(e.at, told)
        if e.ended:
            sizing.ended(at, e.nodes, e.user)
            if e.limit_s is not None and e.ran_s is not None and isinstance(sizing, RunAware):
                sizing.ran(e.user, e.limit_s, e.ran_s)
        elif e.nodes > 0:
            sizing.arrived(at, e.nodes, e.user)
        else:
            continue  # not this group's demand
        told = at
    return told


def ends(
    watch: Iterable[int],
    submitted: Collection[int],
    live: Collection[int],
    mine: Collection[int],
    known: Mapping[int, Job],
    now: float,
) -> tuple[list[JobEvent], tuple[int, ...]]:
    """The ends to tell a group and the jobs to watch next.

    ``watch``: the jobs watched since the last run; ``submitted``: jobs submitted since,
    whose submit counted toward the group; ``live``: jobs with a task queued or running now
    (any group); ``mine``: those whose tasks count toward this group; ``known``: the jobs
    read this run, by id (a watched job not among them is dropped, not told)."""
    out: list[JobEvent] = []
    keep = set(mine)
    for job_id in sorted({*watch, *submitted}):
        if job_id in live:
            keep.add(job_id)
            continue
        job = known.get(job_id)
        if job is None:
            continue
        if job.state in JOB_TERMINAL:
            end = job.end_time.timestamp() if job.end_time is not None else now
            out.append(JobEvent(end, 0, job.owner, True, *_run_of(job)))
        elif job.state in ENDING:
            keep.add(job_id)
    return out, tuple(sorted(keep)[-WATCH_KEPT:])


def _run_of(job: Job) -> tuple[float | None, float | None]:
    """An ended job's runtime limit and run time, for a job of one task that ran with a
    limit (a sweep's tasks' own run times are not on its record)."""
    if job.task_count != 1 or not job.runtime_limit or job.start_time is None:
        return None, None
    if job.end_time is None:
        return None, None
    return float(job.runtime_limit), (job.end_time - job.start_time).total_seconds()


def many_task(task: Task) -> bool:
    """A task of a job of several tasks (a sweep's, or any but the first): its run time is
    not on its job's record, so the timer reads the task when it ends."""
    return task.sweep_index is not None or task.id > 1


def many_running(tasks: Iterable[Task], members: Collection[str]) -> list[str]:
    """The keys of the running ``tasks`` of many-task jobs on ``members`` that have a limit:
    the ones the timer reads once they end (:func:`task_run`)."""
    group = set(members)
    keys = []
    for t in tasks:
        on = {h.node for h in held(t)}
        if many_task(t) and t.runtime_limit_s and t.start_time is not None and on & group:
            keys.append((t.job_id, t.id))
    return [f"{j}.{i}" for j, i in sorted(keys)]


def task_run(task: Task, owner: str | None) -> tuple[str | None, float, float] | None:
    """An ended task's ``(owner, runtime limit, run time)`` for the end forecast (None: it
    did not run to an end with a limit, e.g. it was requeued)."""
    if task.state not in TASK_TERMINAL or not task.runtime_limit_s:
        return None
    if task.start_time is None or task.end_time is None:
        return None
    return owner, float(task.runtime_limit_s), (task.end_time - task.start_time).total_seconds()


def gone(watches: Iterable[Sequence[int]], live: Collection[int]) -> set[int]:
    """The watched jobs no longer queued or running: those whose state this run reads."""
    return {i for w in watches for i in w if i not in live}
