"""Replay a trace through the real scheduler on a virtual clock.

Each job asks for its logged processors and runtime limit (requested time), and runs for
its logged run time (a job that overruns its request runs in full, as the issue asks: the
logged run time is what happened). At every submit or end, the scheduler is asked what
starts, exactly as a scheduler pass in the cluster is. A job of P processors on nodes of
C cores asks for ceil(P / C) nodes of min(P, C) cores each.

Figures: mean wait, mean bounded slowdown (tau = 10 s: max(1, (wait + run) / max(run,
tau))), utilization (core-seconds used / cores x makespan) and makespan (first submit to
last end).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from shared.domain.scheduler import Busy, Decision, Policy, Request, Space, schedule
from shared.sim.swf import SwfJob

TAU_S = 10.0


@dataclass(frozen=True)
class Outcome:
    jobs: int
    mean_wait_s: float
    mean_bounded_slowdown: float
    utilization: float
    makespan_s: float
    policy: str
    nodes: int
    cores_per_node: int
    elapsed_s: float
    """Wall-clock time of the replay itself."""


@dataclass
class Running:
    """A job running on its nodes since ``start``."""

    job: SwfJob
    nodes: tuple[str, ...]
    cores: int
    start: float


def replay(
    jobs: Sequence[SwfJob], *, nodes: int = 100, cores_per_node: int = 1, policy: Policy = "easy"
) -> tuple[Outcome, dict[int, float]]:
    """The figures, and each job's start time (by job id)."""
    t0 = time.perf_counter()
    names = [f"n{i}" for i in range(nodes)]
    free = dict.fromkeys(names, cores_per_node)
    capacity = nodes * cores_per_node
    pending = sorted((j for j in jobs if j.procs <= capacity), key=lambda j: (j.submit, j.id))
    queue: list[SwfJob] = []
    running: dict[int, Running] = {}
    ends: list[tuple[float, int]] = []
    starts: dict[int, float] = {}
    i = 0
    now = pending[0].submit if pending else 0.0
    while i < len(pending) or ends:
        next_submit = pending[i].submit if i < len(pending) else math.inf
        next_end = ends[0][0] if ends else math.inf
        now = min(next_submit, next_end)
        while ends and ends[0][0] == now:
            _, job_id = heapq.heappop(ends)
            done = running.pop(job_id)
            for n in done.nodes:
                free[n] += done.cores
        while i < len(pending) and pending[i].submit == now:
            queue.append(pending[i])
            i += 1
        if not queue or not any(free.values()):
            continue
        decision = schedule(
            (_request(j, cores_per_node) for j in queue),
            [Space(n, (), free[n]) for n in names],
            [Busy(n, r.cores, r.start + r.job.limit) for r in running.values() for n in r.nodes],
            now=now,
            policy=policy,
        )
        queue = start_jobs(decision, queue, free, running, starts, ends, now, cores_per_node)
    return _figures(pending, starts, capacity, policy, nodes, cores_per_node, t0), starts


def start_jobs(
    decision: Decision,
    queue: list[SwfJob],
    free: dict[str, int],
    running: dict[int, Running],
    starts: dict[int, float],
    ends: list[tuple[float, int]],
    now: float,
    cores_per_node: int,
) -> list[SwfJob]:
    """Start what the scheduler placed: take its cores, schedule its end; the rest of the queue."""
    if not decision.starts:
        return queue
    by_id = {j.id: j for j in queue}
    for s in decision.starts:
        job = by_id[s.key]  # type: ignore[index]
        cores = min(job.procs, cores_per_node)
        for n in s.nodes:
            free[n] -= cores
        running[job.id] = Running(job, s.nodes, cores, now)
        starts[job.id] = now
        heapq.heappush(ends, (now + job.run, job.id))
    started = {s.key for s in decision.starts}
    return [j for j in queue if j.id not in started]


def _request(job: SwfJob, cores_per_node: int) -> Request:
    per_node = min(job.procs, cores_per_node)
    return Request(job.id, per_node, math.ceil(job.procs / per_node), limit_s=job.limit)


def _figures(
    jobs: Sequence[SwfJob],
    starts: dict[int, float],
    capacity: int,
    policy: str,
    nodes: int,
    cores_per_node: int,
    t0: float,
) -> Outcome:
    if not jobs:
        return Outcome(0, 0.0, 0.0, 0.0, 0.0, policy, nodes, cores_per_node, 0.0)
    waits = [starts[j.id] - j.submit for j in jobs]
    slowdowns = [
        max(1.0, (w + j.run) / max(j.run, TAU_S)) for j, w in zip(jobs, waits, strict=True)
    ]
    first = min(j.submit for j in jobs)
    last = max(starts[j.id] + j.run for j in jobs)
    makespan = last - first
    used = sum(j.run * j.procs for j in jobs)
    return Outcome(
        jobs=len(jobs),
        mean_wait_s=sum(waits) / len(waits),
        mean_bounded_slowdown=sum(slowdowns) / len(slowdowns),
        utilization=used / (capacity * makespan) if makespan > 0 else 0.0,
        makespan_s=makespan,
        policy=policy,
        nodes=nodes,
        cores_per_node=cores_per_node,
        elapsed_s=time.perf_counter() - t0,
    )
