"""Replay a trace on autoscaled nodes: the real scheduler and the real autoscaler on a
virtual clock.

Nodes (at most ``nodes``, ``cores_per_node`` cores each) start Offline, as the VMs of a
managed group (``AzureNodes``) do. At every event (a submit, a job's end, a node coming
up) and at every moment the policy said it would act next (an idle time running out, the
warm pool shrinking), the scheduler (:func:`shared.domain.scheduler.schedule`, EASY by
default) places the queue on the Online nodes, then :func:`shared.domain.autoscaler.autoscale`
gets the cluster as ``Node`` and ``Task`` records, with the scheduler's reservation read as
the cluster's timer reads it (:mod:`shared.sim.hold`), and its orders are carried out: a node
ordered started is Starting and becomes Online ``boot_delay_s`` later; a node ordered
stopped is Offline at once. Node-hours count from the start order to the stop order. Those
wake-ups replace a fixed timer: the autoscaler runs exactly when something can change,
which is what a timer of infinitely fine period would do, at a fraction of the runs.

Idle policies (:class:`IdlePolicy`, the rules in :mod:`shared.domain.warmpool`):

- ``fixed:S``: start nodes on demand, reuse idle ones, stop a node idle for S seconds
  (the autoscaler's own rule, ShrinkIdleTimes = S, ShrinkInterval 1 s, no scale-down delay).
- ``adaptive`` (``adaptive:S``): ``min_nodes`` = nodes in use + nodes the queue waits for +
  a warm pool (2 x the node demand expected within one boot delay, from a 1 h weighted
  arrival rate); the autoscaler starts nodes to fill the pool ahead of demand, and stops
  nodes beyond it after S seconds idle (default 60).
- ``value`` (``value:W``, the default): a pool of the size whose spared waits (jobs
  expected per second that fit in it x boot delay x W node-seconds) most exceed its idle
  node-seconds, from a job rate and a width histogram (:mod:`shared.domain.waitvalue`);
  nodes are started only for the pool at W / its start margin (a start bills its boot
  first; 1.35 for a 3 min boot).
- ``keep`` (``keep:S``): ``adaptive``'s pool, but only kept from nodes already up
  (released by ended jobs), never started for; nodes beyond it stop after S seconds
  (default 0).
- ``anticipate`` (``anticipate:S``): ``keep``, and while the forecast expects at least one
  node per boot delay, nodes started ahead up to half the demand expected within one boot
  delay (a confident forecast: a node started ahead then idles briefly before it is used).
- ``ski`` (``ski:W``): ``keep``'s pool, and nodes beyond it stop after the ski-rental keep
  time of the group's last idle gaps (:mod:`shared.domain.skirental`; buy = boot delay x
  (1 + W) node-seconds). The fleet reports each gap (:attr:`shared.sim.fleet.Fleet.gaps`).
- ``session`` (``session:W``): a pool of x1 the expected demand, and each ended job's
  nodes kept for its user's next job for a ski-rental keep time learnt from that user's
  think times after jobs of the same run-time band (:mod:`shared.domain.sessions`; the
  trace's user ids, SWF field 12).

The oracle is the trace's core-hours over cores per node: nodes that are up exactly while
they run work. Each job's figures (wait, bounded slowdown with tau 10 s) are as in
:mod:`shared.sim.replay`. The replay ends at the last job's end; nodes still up are
stopped then (their idle tail is not counted, for every policy alike).

Shortcuts for speed (a KTH-SP2 year in well under a minute, instead of 5-12), none
changing a decision (``whole_view=True`` turns them off; a test compares the two): the
nodes are indexed by state, so an event costs what it touches; the autoscaler sees the
queue's tasks only until their cores exceed the free and Offline cores (more waiting work
could not start more nodes), only as many Offline nodes as it could start (they are
alike), and no node that no rule can act on in this run (see :func:`shared.sim.fleet.visible`).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from shared.domain.autoscaler import ClusterView, autoscale
from shared.domain.growshrink import AutoscalerPolicy, AutoscalerState, GroupPolicy, NodeMemory
from shared.domain.idlepolicy import IdlePolicy, parse_idle_policy
from shared.domain.jumps import Boots, Coming
from shared.domain.likelyends import REWEIGH_S
from shared.domain.models import Task
from shared.domain.releases import LimitAware
from shared.domain.reservedhold import unless_hidden
from shared.domain.scheduler import Busy, Policy, schedule
from shared.domain.sessions import SessionAware
from shared.domain.states import NodeState
from shared.sim.fleet import GROUP, Fleet, dt, ts, visible
from shared.sim.hold import reserved
from shared.sim.outcome import ElasticOutcome, figures
from shared.sim.queueview import EndForecast, deferred, fits_ceiling, job_nodes
from shared.sim.replay import Running, _request, start_jobs
from shared.sim.swf import SwfJob

__all__ = ["ElasticOutcome", "IdlePolicy", "elastic", "frontier", "parse_idle_policy"]

FRONTIER_S: tuple[int, ...] = (60, 120, 300, 600, 900, 1800)
"""The fixed idle times whose figures frame a policy's (1, 2, 5, 10, 15 and 30 minutes)."""
_OFFLINE = NodeState.OFFLINE


def elastic(
    jobs: Sequence[SwfJob],
    *,
    idle: IdlePolicy,
    nodes: int = 100,
    cores_per_node: int = 1,
    boot_delay_s: float = 180.0,
    policy: Policy = "easy",
    whole_view: bool = False,
    timer_s: float = 0.0,
    scale_down_delay_s: float = 0.0,
    jumps: bool = True,
) -> tuple[ElasticOutcome, dict[int, float]]:
    """The figures, and each job's start time (by job id). ``whole_view``: no shortcut
    (the autoscaler runs at every event and sees every node and queued task), the
    reference the shortcuts are tested against. ``timer_s`` > 0: the autoscaler runs only
    at multiples of it (a timer function's schedule; the scheduler still runs at every
    event, as its queue trigger does), at the first after anything changed.
    ``scale_down_delay_s``: ``HPC_SCALE_DOWN_DELAY_S`` (no stop that soon after the group
    grew). ``jumps``: the scheduler is told of the Starting nodes, as the cluster's is
    (:mod:`shared.domain.jumps`); False: plain EASY."""
    t0 = time.perf_counter()
    cpn = cores_per_node
    fleet = Fleet(nodes, cpn)
    free, recs = fleet.free, fleet.recs
    capacity = nodes * cpn
    pending = sorted((j for j in jobs if j.procs <= capacity), key=lambda j: (j.submit, j.id))
    queue: list[SwfJob] = []
    running: dict[int, Running] = {}
    busy: dict[int, list[Busy]] = {}
    """What each running job holds until its projected end, for EASY's reservation."""
    ends: list[tuple[float, int]] = []
    boots: list[tuple[float, str]] = []
    starts: dict[int, float] = {}
    tasks_of: dict[int, list[Task]] = {}
    asks: dict[int, Task] = {}
    """Each queued job as one task on its nodes, for the ceiling's rule."""
    group = GroupPolicy(
        node_cores=cpn,
        max_nodes=nodes,
        grow_interval=timedelta(0),
        shrink_interval=timedelta(seconds=1),
    )
    base = AutoscalerPolicy(
        groups={GROUP: group},
        deployment_timeout=timedelta(seconds=boot_delay_s + 3600),
        scale_down_delay=timedelta(seconds=scale_down_delay_s),
        max_starts_per_run=nodes,
        max_stops_per_run=nodes,
        remember_covered=False,  # read by pending reasons only
    )
    policies: dict[tuple[int, int, int], AutoscalerPolicy] = {}
    sizing = idle.build(boot_delay_s, nodes)
    sessions = sizing if isinstance(sizing, SessionAware) else None
    """A policy told whose job arrives and ends (``session``)."""
    limits = sizing if isinstance(sizing, LimitAware) else None
    """A policy told each job's start, limit and end (``forecast``)."""
    forecast = sizing if isinstance(sizing, EndForecast) else None
    """A policy that forecasts the running jobs' ends (``forecast``)."""
    groups_memory = AutoscalerState().groups
    memory: dict[str, NodeMemory] = {}
    """The autoscaler's memory of each node (the caller keeps it, as the timer's store does)."""
    peak = runs = 0
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
            del busy[job_id]
            if limits is not None:
                limits.job_ended(job_id, now)
            fleet.released(done.nodes, done.cores, now)
            if sessions is not None:
                sessions.ended(now, job_nodes(done.job, cpn), _user(done.job), now - done.start)
        while boots and boots[0][0] == now:
            _, name = heapq.heappop(boots)
            if fleet.starting.get(name) == now:  # not the boot of an earlier start
                fleet.boot(name, now)
        while i < len(pending) and pending[i].submit == now:
            job = pending[i]
            queue.append(job)
            if sessions is not None:
                sessions.arrived(now, job_nodes(job, cpn), _user(job))
            else:
                sizing.arrived(now, job_nodes(job, cpn))
            i += 1
        if queue and fleet.open:
            coming = [Coming(n, (), cpn, at) for n, at in fleet.starting.items()]
            decision = schedule(
                (replace(_request(j, cpn), queued_at=j.submit) for j in queue),
                [fleet.space(n) for n in fleet.online],
                [b for held in busy.values() for b in held],
                now=now,
                policy=policy,
                boots=Boots(coming, boot_delay_s) if jumps and coming else None,
            )
            queue = start_jobs(decision, queue, free, running, starts, ends, now, cpn)
            for s in decision.starts:
                fleet.took(s.nodes, now)
                r = running[s.key]  # type: ignore[index]
                busy[r.job.id] = [Busy(n, r.cores, r.start + r.job.limit) for n in r.nodes]
                if limits is not None:
                    limits.job_started(r.job.id, now, len(r.nodes), r.job.limit, _user(r.job))
        if not (i < len(pending) or running or queue):
            break
        for gap in fleet.gaps:
            sizing.idle_gap(gap)
        fleet.gaps.clear()
        if timer_s > 0 and _tick(now, timer_s) != now:  # the timer acts at its next tick
            wake = min(wake, _tick(now, timer_s))
            continue
        shown, unfit = fits_ceiling(queue, fleet, nodes, cpn, asks)
        defer = deferred(shown, fleet, cpn, forecast, now)
        held_back = sum(defer.values())
        waiting = sum(job_nodes(j, cpn) for j in shown) - held_back
        counts = (now, len(fleet.held), waiting, len(fleet.up_since))
        plan = forecast.plan(*counts, held_back) if forecast else sizing.plan(*counts)
        # the autoscaler's run
        if whole_view:
            up = [*fleet.starting, *fleet.online]
            kept: list[str] = []
        else:
            up, kept = visible(fleet, memory, bool(queue), now, plan.idle_s)
        hidden = len(fleet.up_since) - len(up)
        room = sum(free[n] for n in up) + len(fleet.offline) * cpn
        # the scheduler's reservation, as the cluster's timer reads it (shared.sim.hold)
        hold = reserved(queue, fleet, [b for h in busy.values() for b in h], now, policy, cpn)
        hold = unless_hidden(hold, unfit)
        queued: list[Task] = []
        seen = 0
        held_in = hold is None  # the window reaches the reserved job (the cluster's does)
        for job in shown:
            if seen > room and held_in and not whole_view:
                break
            tasks = tasks_of.get(job.id)
            if tasks is None:
                per = min(job.procs, cpn)
                limit = math.ceil(job.limit)  # the cluster's tasks carry their runtime limit
                tasks = [
                    Task(job_id=job.id, id=k + 1, command="", cores=per, runtime_limit_s=limit)
                    for k in range(math.ceil(job.procs / per))
                ]
                tasks_of[job.id] = tasks
            queued.extend(tasks[: len(tasks) - defer.get(job.id, 0)])
            seen += job.procs
            held_in = held_in or (hold is not None and job.id == hold.task[0])
        used = {n: cpn - free[n] for n in up if free[n] < cpn}
        if whole_view:
            startable = nodes
        elif cpn == 1:  # each free core takes one queued task: the rest is what may start
            startable = max(
                len(queued) - sum(free[n] for n in up), plan.min_nodes - hidden - len(up)
            )
        else:
            startable = max(len(queued), plan.min_nodes - hidden - len(up))
        # the hidden nodes (see _visible) lower min and max nodes by as many
        key = (max(0, plan.min_nodes - hidden), nodes - hidden, plan.idle_s)
        policy_now = policies.get(key)
        if policy_now is None:
            gp = replace(group, min_nodes=key[0], max_nodes=key[1], shrink_idle_times=key[2])
            policy_now = policies[key] = replace(base, groups={GROUP: gp})
        # Offline nodes are alike: the autoscaler sees as many as it could start
        view = [recs[n] for n in up] + [recs[n] for n in fleet.offline[: max(0, startable)]]
        verdict = autoscale(
            ClusterView(view, queued, used, reserved=hold),
            policy_now,
            AutoscalerState(groups_memory, memory),
            dt(now),
        )
        runs += 1
        groups_memory = verdict.state.groups
        memory = {n: memory[n] for n in kept if n in memory}
        memory.update(verdict.state.nodes)
        for order in verdict.orders:
            name = order.node
            if order.action == "start" and recs[name].state is _OFFLINE:
                fleet.start(name, now, now + boot_delay_s)
                heapq.heappush(boots, (now + boot_delay_s, name))
            elif order.action in ("stop", "offline") and recs[name].state is not _OFFLINE:
                fleet.stop(name, now)
            elif order.action == "drain":
                raise RuntimeError(f"the autoscaler drained {name}: the replay has no drains")
        peak = max(peak, len(fleet.up_since))
        # when the policy acts next with no event: an idle time running out, the plan changing
        wake = sizing.changes_at(now)
        for name, m in memory.items():
            if m.idle_since is not None and name in fleet.online:
                expiry = ts(m.idle_since) + plan.idle_s
                if now < expiry < wake:
                    wake = expiry
        grew = groups_memory[GROUP].last_scale_up if GROUP in groups_memory else None
        if grew is not None and fleet.idle_at:  # an idle node the scale-down delay kept
            lifted = ts(grew) + scale_down_delay_s
            if now < lifted < wake:
                wake = lifted
        if held_back:  # weighed again soon: a release that did not come starts its boots
            wake = min(wake, now + REWEIGH_S)
        if timer_s > 0 and wake < math.inf:
            wake = max(_tick(wake, timer_s), now + timer_s)
    for name in list(fleet.up_since):
        fleet.node_seconds += now - fleet.up_since.pop(name)
    return figures(
        pending,
        starts,
        idle,
        fleet.node_seconds,
        fleet.starts,
        peak,
        runs,
        nodes,
        cpn,
        boot_delay_s,
        t0,
        timer_s,
        scale_down_delay_s,
    ), starts


def _tick(t: float, period: float) -> float:
    """The timer's first tick at or after ``t``."""
    return math.ceil(t / period) * period


def _user(job: SwfJob) -> str | None:
    return str(job.user) if job.user >= 0 else None


def frontier(
    jobs: Sequence[SwfJob],
    *,
    nodes: int = 100,
    cores_per_node: int = 1,
    boot_delay_s: float = 180.0,
    policy: Policy = "easy",
    idle_times: Sequence[int] = FRONTIER_S,
    timer_s: float = 0.0,
    scale_down_delay_s: float = 0.0,
    jumps: bool = True,
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
            timer_s=timer_s,
            scale_down_delay_s=scale_down_delay_s,
            jumps=jumps,
        )[0]
        for s in idle_times
    ]
