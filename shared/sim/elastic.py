"""Replay a trace on autoscaled nodes: the real scheduler and the real autoscaler on a
virtual clock.

Nodes (at most ``nodes``, ``cores_per_node`` cores each) start Offline, as the VMs of a
managed group (``AzureNodes``) do. At every event (a submit, a job's end, a node coming
up) and at every moment the policy said it would act next (an idle time running out, the
warm pool shrinking), the scheduler (:func:`shared.domain.scheduler.schedule`, EASY by
default) places the queue on the Online nodes, then :func:`shared.domain.autoscaler.autoscale`
gets the cluster as ``Node`` and ``Task`` records and its orders are carried out: a node
ordered started is Starting and becomes Online ``boot_delay_s`` later; a node ordered
stopped is Offline at once. Node-hours count from the start order to the stop order. Those
wake-ups replace a fixed timer: the autoscaler runs exactly when something can change,
which is what a timer of infinitely fine period would do, at a fraction of the runs.

Idle policies (:class:`IdlePolicy`):

- ``fixed:S``: start nodes on demand, reuse idle ones, stop a node idle for S seconds
  (the autoscaler's own rule, ShrinkIdleTimes = S, ShrinkInterval 1 s, no scale-down delay).
- ``adaptive`` (``adaptive:S``): nodes beyond a warm pool stop after S seconds idle
  (default 60); the pool (:mod:`shared.domain.warmpool`) is the node demand expected within
  one boot delay (x2 headroom) from an exponentially weighted arrival rate (time constant
  1 h). It is given to the autoscaler as the group's ``min_nodes`` on each run (nodes in
  use + nodes the queue waits for + pool), so the autoscaler starts nodes ahead of demand
  and keeps the pool idle.

The oracle is the trace's core-hours over cores per node: nodes that are up exactly while
they run work. Each job's figures (wait, bounded slowdown with tau 10 s) are as in
:mod:`shared.sim.replay`. The replay ends at the last job's end; nodes still up are
stopped then (their idle tail is not counted, for every policy alike).

Two shortcuts for speed, neither changing a decision on nodes of one core: the autoscaler
sees the queue's tasks only until their cores exceed the free and Offline cores (more
waiting work could not start more nodes), and only as many Offline nodes as it could
start (they are alike).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from shared.domain.autoscaler import ClusterView, autoscale
from shared.domain.growshrink import AutoscalerPolicy, AutoscalerState, GroupPolicy
from shared.domain.models import Node, Task
from shared.domain.scheduler import Busy, Policy, Space, schedule
from shared.domain.states import NodeState
from shared.domain.warmpool import DemandForecast, WarmPool, min_nodes
from shared.sim.replay import TAU_S, Running, _request, start_jobs
from shared.sim.swf import SwfJob

GROUP = "AzureNodes"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FRONTIER_S: tuple[int, ...] = (60, 300, 900, 1800)
"""The fixed idle times whose figures frame a policy's (1, 5, 15 and 30 minutes)."""
ADAPTIVE_IDLE_S = 60


@dataclass(frozen=True)
class IdlePolicy:
    kind: Literal["fixed", "adaptive"]
    idle_s: int
    """fixed: the idle time before a stop; adaptive: that of nodes beyond the warm pool."""
    headroom: float = 2.0
    tau_s: float = 3600.0

    @property
    def name(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.idle_s}"
        return "adaptive" if self.idle_s == ADAPTIVE_IDLE_S else f"adaptive:{self.idle_s}"


def parse_idle_policy(text: str) -> IdlePolicy:
    """``fixed:300`` (seconds), ``adaptive`` or ``adaptive:60``; ValueError otherwise."""
    kind, _, arg = text.strip().partition(":")
    if kind == "fixed" and arg:
        seconds = _seconds(arg, text)
        return IdlePolicy("fixed", seconds)
    if kind == "adaptive":
        return IdlePolicy("adaptive", _seconds(arg, text) if arg else ADAPTIVE_IDLE_S)
    raise ValueError(f"idle policy must be fixed:SECONDS or adaptive[:SECONDS], got {text!r}")


def _seconds(arg: str, text: str) -> int:
    try:
        seconds = int(arg)
    except ValueError:
        raise ValueError(f"idle policy {text!r}: {arg!r} is not whole seconds") from None
    if seconds < 0:
        raise ValueError(f"idle policy {text!r}: seconds must be >= 0")
    return seconds


@dataclass(frozen=True)
class ElasticOutcome:
    idle_policy: str
    jobs: int
    node_hours: float
    oracle_node_hours: float
    """The trace's core-hours / cores per node."""
    ratio: float
    """node_hours / oracle_node_hours."""
    mean_wait_s: float
    mean_bounded_slowdown: float
    node_starts: int
    peak_nodes: int
    """Most nodes up (Starting or Online) at once."""
    nodes: int
    cores_per_node: int
    boot_delay_s: float
    autoscaler_runs: int
    elapsed_s: float
    """Wall-clock time of the replay itself."""


def _dt(t: float) -> datetime:
    return EPOCH + timedelta(seconds=t)


def _ts(d: datetime) -> float:
    return (d - EPOCH).total_seconds()


def elastic(
    jobs: Sequence[SwfJob],
    *,
    idle: IdlePolicy,
    nodes: int = 100,
    cores_per_node: int = 1,
    boot_delay_s: float = 180.0,
    policy: Policy = "easy",
) -> tuple[ElasticOutcome, dict[int, float]]:
    """The figures, and each job's start time (by job id)."""
    t0 = time.perf_counter()
    cpn = cores_per_node
    names = [f"n{i:04d}" for i in range(nodes)]
    recs = {
        n: Node(name=n, groups=[GROUP], cores=cpn, provider="local", state_time=EPOCH)
        for n in names
    }
    free = dict.fromkeys(names, cpn)
    capacity = nodes * cpn
    pending = sorted((j for j in jobs if j.procs <= capacity), key=lambda j: (j.submit, j.id))
    queue: list[SwfJob] = []
    running: dict[int, Running] = {}
    ends: list[tuple[float, int]] = []
    boots: list[tuple[float, str]] = []
    up_since: dict[str, float] = {}
    starts: dict[int, float] = {}
    tasks_of: dict[int, list[Task]] = {}
    group = GroupPolicy(
        node_cores=cpn,
        max_nodes=nodes,
        grow_interval=timedelta(0),
        shrink_interval=timedelta(seconds=1),
        shrink_idle_times=idle.idle_s,
    )
    base = AutoscalerPolicy(
        groups={GROUP: group},
        deployment_timeout=timedelta(seconds=boot_delay_s + 3600),
        scale_down_delay=timedelta(0),
        max_starts_per_run=nodes,
        max_stops_per_run=nodes,
    )
    forecast = DemandForecast(tau_s=idle.tau_s)
    pool = WarmPool(boot_delay_s, headroom=idle.headroom, max_pool=nodes)
    state = AutoscalerState()
    node_seconds = 0.0
    node_starts = peak = runs = 0
    wake = math.inf
    i = 0
    now = pending[0].submit if pending else 0.0
    while i < len(pending) or running or queue:
        now = min(
            pending[i].submit if i < len(pending) else math.inf,
            ends[0][0] if ends else math.inf,
            boots[0][0] if boots else math.inf,
            wake,
        )
        if now == math.inf:
            raise RuntimeError(f"stuck: {len(queue)} jobs queued and nothing will change")
        while ends and ends[0][0] == now:
            _, job_id = heapq.heappop(ends)
            done = running.pop(job_id)
            for n in done.nodes:
                free[n] += done.cores
        while boots and boots[0][0] == now:
            _, name = heapq.heappop(boots)
            if recs[name].state is NodeState.STARTING:
                recs[name].state = NodeState.ONLINE
                recs[name].state_time = _dt(now)
        while i < len(pending) and pending[i].submit == now:
            job = pending[i]
            queue.append(job)
            forecast.observe(now, math.ceil(job.procs / min(job.procs, cpn)))
            i += 1
        online = [n for n in names if recs[n].state is NodeState.ONLINE]
        if queue and any(free[n] > 0 for n in online):
            decision = schedule(
                (_request(j, cpn) for j in queue),
                [Space(n, (), free[n]) for n in online],
                [
                    Busy(n, r.cores, r.start + r.job.limit)
                    for r in running.values()
                    for n in r.nodes
                ],
                now=now,
                policy=policy,
            )
            queue = start_jobs(decision, queue, free, running, starts, ends, now, cpn)
        if not (i < len(pending) or running or queue):
            break
        # the autoscaler's run
        up = [n for n in names if recs[n].state is not NodeState.OFFLINE]
        offline = [n for n in names if recs[n].state is NodeState.OFFLINE]
        room = sum(free[n] for n in up) + len(offline) * cpn
        queued: list[Task] = []
        seen = 0
        for job in queue:
            if seen > room:
                break
            tasks = tasks_of.get(job.id)
            if tasks is None:
                per = min(job.procs, cpn)
                tasks = [
                    Task(job_id=job.id, id=k + 1, command="", cores=per)
                    for k in range(math.ceil(job.procs / per))
                ]
                tasks_of[job.id] = tasks
            queued.extend(tasks)
            seen += job.procs
        used = {n: cpn - free[n] for n in names if free[n] < cpn}
        policy_now = base
        startable = len(queued)
        if idle.kind == "adaptive":
            in_use = sum(1 for n in names if free[n] < cpn)
            waiting = sum(math.ceil(j.procs / min(j.procs, cpn)) for j in queue)
            floor = min_nodes(in_use, waiting, pool.size(forecast.rate_at(now)), nodes)
            policy_now = replace(base, groups={GROUP: replace(group, min_nodes=floor)})
            startable = max(startable, floor - len(up))
        # Offline nodes are alike: the autoscaler sees as many as it could start
        view = [recs[n] for n in up] + [recs[n] for n in offline[:startable]]
        verdict = autoscale(ClusterView(view, queued, used), policy_now, state, _dt(now))
        runs += 1
        state = verdict.state
        for order in verdict.orders:
            rec = recs[order.node]
            if order.action == "start" and rec.state is NodeState.OFFLINE:
                rec.state, rec.state_time = NodeState.STARTING, _dt(now)
                up_since[rec.name] = now
                heapq.heappush(boots, (now + boot_delay_s, rec.name))
                node_starts += 1
            elif order.action == "drain":
                rec.state, rec.state_time = NodeState.DRAINING, _dt(now)
            elif order.action in ("stop", "offline") and rec.state is not NodeState.OFFLINE:
                node_seconds += now - up_since.pop(rec.name)
                rec.state, rec.state_time = NodeState.OFFLINE, _dt(now)
        peak = max(peak, len(up_since))
        # when the policy acts next with no event: an idle time running out, the pool shrinking
        wake = math.inf
        limit = idle.idle_s
        for name, memory in state.nodes.items():
            if memory.idle_since is not None and recs[name].state is NodeState.ONLINE:
                expiry = _ts(memory.idle_since) + limit
                if expiry > now:
                    wake = min(wake, expiry)
        if idle.kind == "adaptive":
            shrink = pool.shrinks_at(forecast, now)
            if shrink > now:
                wake = min(wake, shrink)
    for name in list(up_since):
        node_seconds += now - up_since.pop(name)
    return _figures(
        pending, starts, idle, node_seconds, node_starts, peak, runs, nodes, cpn, boot_delay_s, t0
    ), starts


def _figures(
    jobs: Sequence[SwfJob],
    starts: dict[int, float],
    idle: IdlePolicy,
    node_seconds: float,
    node_starts: int,
    peak: int,
    runs: int,
    nodes: int,
    cpn: int,
    boot_delay_s: float,
    t0: float,
) -> ElasticOutcome:
    waits = [starts[j.id] - j.submit for j in jobs]
    slowdowns = [
        max(1.0, (w + j.run) / max(j.run, TAU_S)) for j, w in zip(jobs, waits, strict=True)
    ]
    oracle = sum(j.run * j.procs for j in jobs) / cpn / 3600
    hours = node_seconds / 3600
    return ElasticOutcome(
        idle_policy=idle.name,
        jobs=len(jobs),
        node_hours=hours,
        oracle_node_hours=oracle,
        ratio=hours / oracle if oracle > 0 else 0.0,
        mean_wait_s=sum(waits) / len(waits) if waits else 0.0,
        mean_bounded_slowdown=sum(slowdowns) / len(slowdowns) if slowdowns else 0.0,
        node_starts=node_starts,
        peak_nodes=peak,
        nodes=nodes,
        cores_per_node=cpn,
        boot_delay_s=boot_delay_s,
        autoscaler_runs=runs,
        elapsed_s=time.perf_counter() - t0,
    )


def frontier(
    jobs: Sequence[SwfJob],
    *,
    nodes: int = 100,
    cores_per_node: int = 1,
    boot_delay_s: float = 180.0,
    policy: Policy = "easy",
    idle_times: Sequence[int] = FRONTIER_S,
) -> list[ElasticOutcome]:
    """The fixed-idle policies' figures, one per idle time."""
    return [
        elastic(
            jobs,
            idle=IdlePolicy("fixed", s),
            nodes=nodes,
            cores_per_node=cores_per_node,
            boot_delay_s=boot_delay_s,
            policy=policy,
        )[0]
        for s in idle_times
    ]
