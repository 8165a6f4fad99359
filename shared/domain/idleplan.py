"""A node group's idle policy in the cluster: what the timer tells a warm-pool policy
(:mod:`shared.domain.warmpool`), and how its :class:`Plan` becomes the group's parameters
for one autoscaler run, with the reasons said in the policy's words.

Pure (no clock, no I/O); the memory stored between runs is :mod:`shared.domain.policymemory`,
what the timer tells the policy :mod:`shared.domain.jobevents`, and the glue that reads
the jobs and keeps the memory :mod:`shared.usecases.idle_policy`. The simulator (:mod:`shared.sim.elastic`) asks the same
policy objects the same question (``plan(now, in_use, waiting, up)``) and maps the answer
the same way (``min_nodes`` floor; idle time = ShrinkIdleTimes x a 1 s ShrinkInterval), so
its figures describe what the cluster's timer does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from shared.domain.autoscaler import Decision, Order
from shared.domain.cluster import Node
from shared.domain.deferral import Deferred
from shared.domain.demand import may_run_in, nodes_for, reach
from shared.domain.firstfit import place_queue
from shared.domain.forecastpool import ForecastPool
from shared.domain.growshrink import GroupPolicy, fits_node
from shared.domain.jobevents import JobEvent, tell
from shared.domain.jobexclusive import Occupancy
from shared.domain.likelyends import Release
from shared.domain.memoryfit import free_mb
from shared.domain.models import Task
from shared.domain.policymemory import Forecast
from shared.domain.releases import RunningLimit
from shared.domain.states import NodeState, TaskState
from shared.domain.waitvalue import ValuePool, WidthMix
from shared.domain.warmpool import AdaptivePool, IdleSizing, Plan

# ------------------------------------------------------------------------ load


@dataclass(frozen=True)
class Load:
    """A group's nodes as the policy counts them (the simulator's three numbers)."""

    in_use: int
    """Nodes up that hold work (Online, Draining, Unreachable with active tasks)."""
    waiting: int
    """Nodes of the group the queue waits for (work that fits on no Online node's free cores)."""
    up: int
    """Nodes Starting or Online, and those in use."""
    leaving: int = 0
    """Other nodes the autoscaler counts as up (Stopping, idle Draining): added to the floor
    so that they do not make it stop a node the pool keeps."""


def overflow(
    queued: Sequence[Task],
    nodes: Sequence[Node],
    used: Mapping[str, int],
    managed: set[str],
    occupied: Occupancy | None = None,
    held_mb: Mapping[str, int] | None = None,
    pool: Collection[str] = (),
) -> list[Task]:
    """Queued tasks that fit on no Online node's free cores, placed in queue order as the
    scheduler's next pass would: on-prem (unmanaged) nodes first (most free first), then VMs
    (best fit); the nodes named in ``pool`` are not placed on (see :func:`idle_vms`). A
    multi-node task that may burst takes the Online nodes that can hold it and overflows only
    the nodes it lacks (as in the autoscaler's grow; its groups' reach is read from
    ``nodes``, each managed node in its first group), so the floor it raises is the
    overflow's alone.
    ``occupied``: which jobs use each node (job-level exclusive, as the scheduler);
    ``held_mb``: the memory active tasks hold on each (consumable memory: memoryfit)."""
    free = {
        n.name: n.cores - used.get(n.name, 0)
        for n in nodes
        if n.state is NodeState.ONLINE and n.name not in pool
    }
    placing = sorted((n for n in free if free[n] > 0), key=lambda n: (n in managed, n))
    groups_of = {n.name: set(n.groups) for n in nodes if n.name in free}
    protocol = {n.name: n.agent_protocol for n in nodes if n.name in free}
    memory = None  # each Online node's free memory, if a task asks for some
    if any(t.min_memory_mb is not None for t in queued):
        held = held_mb or {}
        memory = {
            n.name: free_mb(n.memory_mb, held.get(n.name, 0)) for n in nodes if n.name in free
        }
    size = {n.name: n.cores for n in nodes if n.name in free}
    spill = None
    if any(t.nodes > 1 for t in queued):
        group_of = {n.name: n.groups[0] if n.name in managed and n.groups else None for n in nodes}
        cores: dict[str, int] = {}
        for n in nodes:
            if (g := group_of[n.name]) is not None:
                cores[g] = max(cores.get(g, 0), n.cores)
        most = {g: GroupPolicy(node_cores=c, max_nodes=len(group_of)) for g, c in cores.items()}
        spill = reach(nodes, group_of, most).holds
    tiers = {n: 1 for n in free if n in managed}  # on-prem first (the scheduler's tiers)
    return place_queue(
        queued, placing, free, size, groups_of, tiers=tiers, protocol=protocol, memory=memory,
        spill=spill, occupied=occupied,
    )[0]  # fmt: skip


def idle_vms(
    nodes: Sequence[Node], used: Mapping[str, int], groups: Collection[str]
) -> dict[str, set[str]]:
    """Each of ``groups``' Online nodes with no work (a node in its first such group): their
    warm pools. See :func:`pool_bound`."""
    pools: dict[str, set[str]] = {}
    for n in nodes:
        group = next((g for g in n.groups if g in groups), None)
        if group is not None and n.state is NodeState.ONLINE and used.get(n.name, 0) == 0:
            pools.setdefault(group, set()).add(n.name)
    return pools


def pool_bound(
    queued: Sequence[Task],
    plain: Sequence[Task],
    pools: Mapping[str, set[str]],
    place: Callable[[Collection[str]], Sequence[Task]],
) -> dict[tuple[int, int], str]:
    """Queued tasks that fit only on an idle VM of a group with an idle policy, and that
    group (the first by name whose idle VMs can take it): an idle policy counts such work as
    waiting for the group, in its floor and as a submit, so that its plan keeps a pool beyond
    it, as the replay counts its whole queue once its scheduler has placed what it can
    (:mod:`shared.sim.elastic`). Counted as the pool, the idle VMs a wide job holds while the
    rest of its width boots left no pool for the jobs that came meanwhile, and a job about to
    start on one was not told as a submit (0.02% of the oracle's node-hours above the
    replay's curve on KTH-SP2, docs/simulator.md). ``plain``: :func:`overflow`'s answer with
    no pool; ``place(pool)``: its answer with the nodes ``pool`` kept out."""
    if not pools:
        return {}
    everyone = set().union(*pools.values())
    known = {(t.job_id, t.id) for t in plain}
    extra = {(t.job_id, t.id) for t in place(everyone)} - known
    bound: dict[tuple[int, int], str] = {}
    for group in sorted(pools):
        if not extra - bound.keys():
            break
        left = {(t.job_id, t.id) for t in place(everyone - pools[group])}
        bound.update(dict.fromkeys(extra - left - bound.keys(), group))
    return bound


def owner_group(
    task: Task, groups: Mapping[str, GroupPolicy], excluded: Collection[str]
) -> str | None:
    """The one managed group whose growth a queued task counts toward: the first by name it
    may run on and fits (cores, memory: :func:`fits_node`; the order the autoscaler's grow
    takes), so that a task two groups may run does not raise both floors; None: no managed
    group can run it."""
    for g in sorted(groups):
        if may_run_in(task, g) and g not in excluded and fits_node(task, groups[g]):
            return g
    return None


@dataclass(frozen=True)
class Attribution:
    """Which managed group each task's demand counts toward, from where it is: a task
    dispatched or ended on a node counts toward that node's group (an on-prem node's:
    none); a queued task that overflows the Online nodes toward its :func:`owner_group`;
    a queued task that fits on an Online node's free cores now toward none (the scheduler's
    next pass places it, most often on-prem); a task read without either (a stand-in)
    toward its owner group."""

    group_of: Mapping[str, str]
    """Managed node -> its group."""
    overflow: Mapping[tuple[int, int], str | None]
    """Overflowing queued task (job id, task id) -> its owner group."""
    fits: frozenset[tuple[int, int]]
    """Queued tasks that fit on an Online node's free cores."""
    groups: Mapping[str, GroupPolicy]
    excluded: frozenset[str] = frozenset()

    def group(self, task: Task) -> str | None:
        key = (task.job_id, task.id)
        if key in self.overflow:
            return self.overflow[key]
        if key in self.fits:
            return None
        if task.node is not None and task.state is not TaskState.QUEUED:
            return self.group_of.get(task.node)
        return owner_group(task, self.groups, self.excluded)

    def of(self, tasks: Sequence[Task], group: str) -> list[Task]:
        """The tasks whose demand counts toward ``group``."""
        return [t for t in tasks if self.group(t) == group]


def attribution(
    queued: Sequence[Task],
    waiting: Sequence[Task],
    nodes: Sequence[Node],
    groups: Mapping[str, GroupPolicy],
    excluded: Collection[str] = (),
    bound: Mapping[tuple[int, int], str] | None = None,
) -> Attribution:
    """The :class:`Attribution` of this run: ``waiting`` is :func:`overflow`'s answer for
    ``queued``; each node's group is its first managed one; ``bound``: queued tasks that
    would take a group's idle VM, and that group (:func:`pool_bound`)."""
    skip = frozenset(excluded)
    group_of = {
        n.name: g
        for n in nodes
        if (g := next((x for x in n.groups if x in groups and x not in skip), None)) is not None
    }
    over: dict[tuple[int, int], str | None] = {
        (t.job_id, t.id): owner_group(t, groups, skip) for t in waiting
    }
    over.update(bound or {})
    fits = frozenset((t.job_id, t.id) for t in queued) - over.keys()
    return Attribution(group_of, over, fits, groups, skip)


def demand(tasks: Sequence[Task], group: str, gp: GroupPolicy) -> int:
    """Nodes of the group these tasks need (those that may run there), at most its max."""
    mine = [t for t in tasks if may_run_in(t, group)]
    return min(gp.max_nodes, nodes_for([t for t in mine if fits_node(t, gp)], gp))


def group_load(
    members: Sequence[Node], used: Mapping[str, int], waiting_tasks: Sequence[Task], group: str,
    gp: GroupPolicy,
) -> Load:  # fmt: skip
    """The counts of one group's ``members`` (the nodes the autoscaler manages in it)."""
    in_use = up = leaving = 0
    for n in members:
        busy = used.get(n.name, 0) > 0
        if n.state is NodeState.OFFLINE:
            continue
        if busy and n.state is not NodeState.STARTING:
            in_use += 1
            up += 1
        elif n.state in (NodeState.ONLINE, NodeState.STARTING):
            up += 1
        else:
            leaving += 1
    return Load(in_use, demand(waiting_tasks, group, gp), up, leaving)


# ------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class GroupPlan:
    """A group's plan for this run, and the figures that explain it."""

    policy: str
    """Its ``idlePolicy`` text (e.g. ``keep``)."""
    plan: Plan
    load: Load
    expected: float
    """Demand expected within one boot delay (the forecast's rate x the delay)."""
    boot_delay_s: float
    unit: str = "nodes"
    """What ``expected`` counts: nodes, or jobs (``value``)."""
    deferred: Deferred = field(default_factory=Deferred)
    """Queued tasks left out this run: their boots wait for running work's likely ends."""

    @property
    def pool(self) -> int:
        """Nodes the plan keeps beyond those in use and those the queue waits for."""
        return max(0, self.plan.min_nodes - self.load.in_use - self.load.waiting)

    def unserved(self, queue_starts: int) -> int:
        """Nodes the queue waits for that neither the nodes up and not in use nor this run's
        starts for queued work (``queue_starts``) cover: the first floor starts are theirs
        (a run between grow checks starts for waiting work only through the floor)."""
        spare = max(0, self.load.up - self.load.in_use)
        return max(0, self.load.waiting - spare - queue_starts)

    def why(self) -> str:
        return (
            f"{self.policy}: {self.load.in_use} in use + {self.load.waiting} for queued work "
            f"+ a warm pool of {self.pool} for the {self.expected:.2g} {self.unit} expected "
            f"within {self.boot_delay_s:g} s"
        )


def plan_group(
    sizing: IdleSizing,
    memory: Forecast,
    events: Sequence[JobEvent],
    now: float,
    load: Load,
    *,
    policy: str,
    boot_delay_s: float,
    limits: Sequence[RunningLimit] = (),
    defer: Callable[[list[Release], float], Deferred] | None = None,
    runs: Sequence[tuple[str | None, float, float]] = (),
) -> tuple[GroupPlan, Forecast]:
    """Restore the policy's forecast, tell it the events (submits; and ends for a policy
    told them: :func:`shared.domain.jobevents.tell`), ask for the plan at ``now`` (epoch
    seconds); the plan and the memory to store (``forecast``'s watch is the caller's).
    ``limits``: what the group's running tasks' limits free (:func:`releases.running_limits`),
    told to ``forecast`` afresh each run (they are facts of now, not memory). ``defer``:
    the group's queued work's deferral for the running tasks' likely ends and the policy's
    wait weight (:func:`shared.domain.deferral.defer`); its boots are no waiting work.
    ``runs``: ended tasks' ``(owner, limit, run time)`` for ``forecast``'s end forecast."""
    if isinstance(sizing, ForecastPool):
        sizing.restore(memory.forecast)
        for user, limit_s, ran_s in runs:
            sizing.ran(user, limit_s, ran_s)
        for r in limits:
            sizing.job_started(r.key, r.start, r.nodes, r.limit_s, r.user)
        told = tell(sizing, events, memory.told)
        deferred = defer(sizing.likely_ends(now), sizing.wait_weight) if defer else Deferred()
        load = replace(load, waiting=max(0, load.waiting - deferred.boots))
        plan = sizing.plan(now, load.in_use, load.waiting, load.up, deferred.boots)
        expected = sizing.rate(now, False) * boot_delay_s
        kept = replace(memory, forecast=sizing.to_dict(), told=told)
        return GroupPlan(policy, plan, load, expected, boot_delay_s, "jobs", deferred), kept
    forecast = sizing.forecast if isinstance(sizing, AdaptivePool | ValuePool) else None
    if forecast is not None:
        forecast.rate, forecast.at = memory.rate, memory.at
    if isinstance(sizing, ValuePool):
        sizing.widths = WidthMix.from_dict(memory.widths)
    tell(sizing, events)
    plan = sizing.plan(now, load.in_use, load.waiting, load.up)
    # Another policy's memory stays as it was (``forecast``'s learnt weeks above all): a group
    # switched away and back, or off a run, takes it up again (a probe saw it erased).
    if forecast is None:
        return GroupPlan(policy, plan, load, 0.0, boot_delay_s), memory
    expected = forecast.rate_at(now) * boot_delay_s
    value = sizing.widths.to_dict() if isinstance(sizing, ValuePool) else None
    kept = replace(memory, rate=forecast.rate, at=forecast.at, widths=value or {})
    unit = "nodes" if value is None else "jobs"  # value's forecast counts submits
    return GroupPlan(policy, plan, load, expected, boot_delay_s, unit), kept


def run_policy(gp: GroupPolicy, plan: GroupPlan) -> GroupPolicy:
    """The group's parameters for this one run: the plan's floor (never below the group's
    own ``min_nodes``) and idle time (ShrinkIdleTimes seconds at a 1 s ShrinkInterval, as
    the simulator sets them), and no scale-down delay unless the group sets its own (the
    plan weighs each stop against the boot it costs)."""
    floor = min(gp.max_nodes, plan.plan.min_nodes + plan.load.leaving)
    return replace(
        gp,
        min_nodes=max(gp.min_nodes, floor),
        shrink_interval=timedelta(seconds=1),
        shrink_idle_times=max(0, math.ceil(plan.plan.idle_s)),
        scale_down_delay=timedelta(0) if gp.scale_down_delay is None else gp.scale_down_delay,
    )


# --------------------------------------------------------------------- reasons


def explain(
    decision: Decision,
    plans: Mapping[str, GroupPlan],
    members: Mapping[str, Sequence[Node]],
    used: Mapping[str, int],
    run_min: Mapping[str, int],
) -> tuple[Decision, dict[str, int]]:
    """The decision with the policy groups' idle stops and floor starts said in the policy's
    words (``run_min``: the min_nodes each group ran with), and per group the idle nodes the
    pool keeps after it (for a "kept" entry)."""
    orders: list[Order] = []
    floor = {g: f"{g} is below its minNodes {run_min.get(g)}" for g in plans}
    queue_starts: dict[str, int] = {}
    for o in decision.orders:
        if o.group in plans and o.action == "start" and o.reason != floor[o.group]:
            queue_starts[o.group] = queue_starts.get(o.group, 0) + 1
    unserved = {g: p.unserved(queue_starts.get(g, 0)) for g, p in plans.items()}
    for o in decision.orders:
        p = plans.get(o.group)
        if p is not None and o.action == "stop" and o.reason.startswith("idle for "):
            head = o.reason.split(" (", 1)[0]
            o = replace(o, reason=f"stopped: {head}, beyond the warm pool ({p.why()})")
        elif p is not None and o.action == "start" and o.reason == floor[o.group]:
            purpose = "queued work" if unserved[o.group] > 0 else "the warm pool"
            unserved[o.group] -= 1
            o = replace(o, reason=f"started for {purpose} ({p.why()})")
        orders.append(o)
    ordered = {o.node for o in decision.orders}
    kept: dict[str, int] = {}
    for group, p in plans.items():
        idle = sum(
            1
            for n in members.get(group, ())
            if n.state is NodeState.ONLINE and used.get(n.name, 0) == 0 and n.name not in ordered
        )
        # the queue takes the nodes up first (an idle VM queued work is bound for: pool_bound)
        beyond_queue = max(0, p.load.up - p.load.in_use - p.load.waiting)
        kept[group] = min(idle, p.pool, beyond_queue)
    return replace(decision, orders=orders), kept


def kept_note(plan: GroupPlan, kept: int) -> str:
    return (
        f"kept {kept} idle node{'s' if kept != 1 else ''}: warm pool for the "
        f"{plan.expected:.2g} {plan.unit} expected within {plan.boot_delay_s:g} s "
        f"({plan.policy})"
    )
