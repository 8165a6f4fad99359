"""The node groups' idle policies in the autoscaler's timer run (``NodeGroup.idle_policy``).

A group with ``idlePolicy`` ``fixed`` (the default) runs as it always did: nothing here
reads or changes anything for it. For ``keep``, ``anticipate`` (and the simulator's other
texts a group takes, :func:`shared.domain.idlepolicy.group_idle_policy`) each run:

1. reads the jobs submitted since the last run (ids above the last one counted, newest
   first, one page of :data:`JOB_PAGE` at a time, at most :data:`ARRIVAL_PAGES` pages) and
   tells the group's policy object each one's node demand on the group, at its submit time:
   only the tasks that ran or run on its nodes or overflow to it
   (:class:`shared.domain.idleplan.Attribution`), so that work the on-prem nodes take keeps
   no Azure node warm, and a task two managed groups may run counts toward one of them
   (as it does for queued work, which raises one group's floor, not both). For
   ``forecast``, told users and ends as the simulator tells them
   (:mod:`shared.domain.jobevents`), each submit also names its owner (``Job.owner``), and
   the group's jobs that were queued or running at the last run and have ended since are
   told at their end times (read from the pages of new jobs already read, else one read
   each, at most :data:`ENDS_READ`), as are new jobs that already ended, all in time order;
   and the run times of its running tasks of many-task jobs seen at the last run that have
   ended since (each read once, at most :data:`TASK_ENDS_READ`), for its end forecast;
2. asks it for the plan (:mod:`shared.domain.idleplan`): the group's min_nodes floor and
   idle time for this run only (the stored group is not rewritten);
3. after the pure autoscaler decided, says its stops and starts in the policy's words, and
   logs the idle nodes the warm pool keeps when that number changes.

The policy's memory (per group its forecast's rate and time; ``forecast``'s whole learnt
state and the jobs it watches, :mod:`shared.domain.policymemory`) and the last job counted
are kept in the autoscaler's own Meta document (:data:`MEMORY_FIELD`), so they survive a
restart of the control plane. A job whose add became visible after a higher id was
counted is not counted (a rare race: the forecast is an estimate).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from shared.domain import deferral
from shared.domain.autoscaler import Decision
from shared.domain.autoscaler_io import Note
from shared.domain.cluster import Node, NodeGroup
from shared.domain.growshrink import AutoscalerPolicy, AutoscalerState
from shared.domain.idleplan import (
    GroupPlan,
    attribution,
    demand,
    explain,
    group_load,
    idle_vms,
    kept_note,
    overflow,
    plan_group,
    pool_bound,
    run_policy,
)
from shared.domain.idlepolicy import IdlePolicy, group_idle_policy
from shared.domain.jobevents import JobEvent, ends, gone, many_running, task_run
from shared.domain.jobexclusive import occupancy
from shared.domain.memoryfit import held_memory
from shared.domain.models import Job, Task
from shared.domain.policymemory import RUNNING_KEPT, Forecast, PolicyMemory
from shared.domain.releases import running_limits
from shared.domain.states import NodeState
from shared.errors import InvalidRequest, NotFound
from shared.usecases.deps import JOB_PAGE, Deps

log = logging.getLogger(__name__)

MEMORY_FIELD = "idlePolicies"
"""The key of the idle policies' memory in the autoscaler's Meta document."""
ARRIVAL_PAGES = 5
"""Pages of new jobs one run reads at most; older new jobs beyond them are not counted."""
TASKS_READ = 1000
"""Tasks read for a new job that is neither queued nor running any more (it ended fast)."""
FALLBACK_JOBS = 200
"""New jobs per run whose tasks may be read that way; the rest count one core per task."""
ENDS_READ = 200
TASK_ENDS_READ = 200
"""Ended tasks of many-task jobs (sweeps) per run read one by one for their run times
(``forecast``'s end forecast); the others are not learnt from."""
"""Watched jobs (``forecast``) per run read one by one for their end, when the pages of
new jobs did not hold them (a long job); the others are not told."""


def check_group(group: NodeGroup) -> None:
    """Refuse a group whose idle-policy settings the timer could not run (HTTP 422)."""
    try:
        group_idle_policy(group.idle_policy)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if not group.boot_delay_s > 0:
        raise InvalidRequest(
            f"bootDelayS must be more than 0 seconds (the VMs' boot time), got {group.boot_delay_s}"
        )


@dataclass
class PolicyRun:
    """One run's plans: the autoscaler policy to run with, and what explains it."""

    policy: AutoscalerPolicy
    plans: dict[str, GroupPlan] = field(default_factory=dict)
    memory: PolicyMemory | None = None
    """None: no group has a policy (nothing of it is stored)."""
    members: dict[str, list[Node]] = field(default_factory=dict)

    @property
    def deferred(self) -> set[tuple[int, int]]:
        """Queued tasks not shown to the autoscaler: their boots wait for likely ends."""
        return {k for p in self.plans.values() for k in p.deferred.keys}

    def deferral_notes(self) -> list[Note]:
        """Why no node is started for them (what their pending reasons quote)."""
        notes = (p.deferred.note(g, p.boot_delay_s) for g, p in sorted(self.plans.items()))
        return [n for n in notes if n is not None]


def prepare(
    deps: Deps,
    groups: Sequence[NodeGroup],
    policy: AutoscalerPolicy,
    nodes: Sequence[Node],
    queued: Sequence[Task],
    active: Sequence[Task],
    used: Mapping[str, int],
    stored: Mapping[str, Any] | None,
    now: datetime,
    shown: Sequence[Task] | None = None,
) -> PolicyRun:
    """The plans of the groups with an idle policy, and ``policy`` with them applied.
    ``shown``: the queued tasks the autoscaler is shown (None: all of ``queued``); the others
    wait for running work under a ceiling (:mod:`shared.domain.ceiling`): they are no waiting
    work for a group's floor, though their jobs' submits and ends are told as any."""
    chosen: dict[str, tuple[NodeGroup, IdlePolicy]] = {}
    for g in groups:
        idle = _parsed(g)
        if (
            idle is not None
            and g.name in policy.groups
            and g.name not in policy.exclude_node_groups
        ):
            chosen[g.name] = (g, idle)
    if not chosen:
        return PolicyRun(policy)
    memory = PolicyMemory.from_dict(stored)
    jobs, last_job, known = _new_jobs(deps, memory.last_job)
    members: dict[str, list[Node]] = {}
    for n in nodes:
        group = next((g for g in n.groups if g in policy.groups), None)
        if group in chosen:
            members.setdefault(group, []).append(n)
    managed = {n.name for n in nodes if any(g in policy.groups for g in n.groups)}
    occupied, held_mb = occupancy(active), held_memory(active)

    waits = queued if shown is None else shown

    def place(pool: Collection[str] = ()) -> list[Task]:
        return overflow(waits, nodes, used, managed, occupied, held_mb, pool=pool)

    waiting = place()
    # queued work that would take a planned group's idle VM waits for that group
    bound = pool_bound(waits, waiting, idle_vms(nodes, used, chosen), place)
    waiting += [t for t in waits if (t.job_id, t.id) in bound]
    order = {(t.job_id, t.id): i for i, t in enumerate(waits)}
    where = attribution(
        waits, waiting, nodes, policy.groups, policy.exclude_node_groups, bound=bound
    )
    tasks_of = _tasks_of_new(deps, jobs, [*queued, *active])
    live = {t.job_id for t in [*queued, *active]}
    told_ends = [n for n, (_, idle) in chosen.items() if idle.kind == "forecast"]
    if told_ends:  # the watched jobs that left the queue: read their ends
        watches = (memory.groups.get(n, Forecast()).watch for n in told_ends)
        known = _read_ended(deps, gone(watches, live), known)
    t = now.timestamp()
    plans: dict[str, GroupPlan] = {}
    forecasts: dict[str, Forecast] = {}
    run_groups = dict(policy.groups)
    for name, (g, idle) in chosen.items():
        gp = policy.groups[name]
        before = memory.groups.get(name, Forecast())
        events = [
            JobEvent(j.submit_time.timestamp(), demand(where.of(tasks_of[j.id], name), name, gp),
                     j.owner)
            for j in jobs
        ]  # fmt: skip
        watch = before.watch
        if idle.kind == "forecast":
            mine = {x.job_id for x in where.of([*queued, *active], name)}
            submitted = {j.id for j, e in zip(jobs, events, strict=True) if e.nodes > 0}
            ended, watch = ends(before.watch, submitted, live, mine, known, t)
            events += ended
        mine_waiting = sorted(where.of(waiting, name), key=lambda x: order[(x.job_id, x.id)])
        load = group_load(members.get(name, []), used, mine_waiting, name, gp)
        owners = {**before.owners, **{j.id: j.owner for j in jobs}}
        names = {n.name for n in members.get(name, [])}
        sweeping, runs = [], []
        if idle.kind == "forecast":  # (a group switched away keeps its memory: not read)
            sweeping = many_running(active, names)
            runs = _task_runs(deps, before.running, sweeping, owners)
        # idle Online and Starting nodes take queued work before any node started now
        defer = partial(deferral.defer, mine_waiting, name, gp, load.up - load.in_use)
        plans[name], forecasts[name] = plan_group(
            idle.build(g.boot_delay_s, gp.max_nodes),
            before,
            events,
            t,
            load,
            policy=g.idle_policy.strip(),
            boot_delay_s=g.boot_delay_s,
            limits=running_limits(active, names, owners),
            defer=defer if idle.kind == "forecast" else None,
            runs=runs,
        )
        if idle.kind == "forecast":
            kept_owners = {i: owners[i] for i in watch if i in owners}
            running = tuple(sweeping[-RUNNING_KEPT:])
            forecasts[name] = replace(
                forecasts[name], watch=watch, owners=kept_owners, running=running
            )
        run_groups[name] = run_policy(gp, plans[name])
    return PolicyRun(
        replace(policy, groups=run_groups),
        plans,
        # groups without a policy this run keep what they learnt (a switch away and back)
        PolicyMemory(last_job, {**_kept(memory, groups), **forecasts}),
        members,
    )


def _kept(memory: PolicyMemory, groups: Sequence[NodeGroup]) -> dict[str, Forecast]:
    """The stored memory of the groups that still exist (a deleted group's is dropped)."""
    names = {g.name for g in groups}
    return {name: f for name, f in memory.groups.items() if name in names}


def finish(
    run: PolicyRun, decision: Decision, used: Mapping[str, int], now: datetime
) -> tuple[Decision, list[dict[str, Any]], dict[str, Any] | None]:
    """The decision in the policies' words, the log entries to add (kept idle nodes, when
    their number changed), and the memory to store (None: none)."""
    if run.memory is None:
        return decision, [], None
    run_min = {g: gp.min_nodes for g, gp in run.policy.groups.items()}
    decision, kept = explain(decision, run.plans, run.members, used, run_min)
    entries = []
    groups = dict(run.memory.groups)
    for name, plan in run.plans.items():
        before = groups[name].kept
        if kept[name] != before and kept[name] > 0:
            entries.append(_entry(now, "keep", None, name, kept_note(plan, kept[name])))
        groups[name] = replace(groups[name], kept=kept[name])
    return decision, entries, replace(run.memory, groups=groups).to_dict()


def boot_entries(
    state: AutoscalerState,
    nodes: Sequence[Node],
    policy: AutoscalerPolicy,
    boot_delays: Mapping[str, float],
) -> list[dict[str, Any]]:
    """Measured boots: a node the autoscaler started that is Online now, Starting -> Online
    in how many seconds (beside the group's ``bootDelayS``, the forecast's horizon)."""
    out = []
    for n in nodes:
        ordered = state.nodes.get(n.name)
        if n.state is not NodeState.ONLINE or ordered is None or ordered.start_ordered_at is None:
            continue
        group = next((g for g in n.groups if g in policy.groups), None)
        if group is None:
            continue
        took = max(0.0, (n.state_time - ordered.start_ordered_at).total_seconds())
        said = boot_delays.get(group)
        # (the delay the group's idle policy plans with, not a limit: a probe read "in 1.6 s
        # (its group's bootDelayS is 180 s)" as a contradiction)
        tail = (
            f" (its idle policy plans with a boot delay of {said:g} s: hpc nodegroup set "
            f"{group} --boot-delay S)"
            if said is not None
            else ""
        )
        out.append(
            _entry(
                n.state_time,
                "booted",
                n.name,
                group,
                f"Starting -> Online in {_seconds(took)} s{tail}",
            )
        )
    return out


def _seconds(took: float) -> str:
    """A boot of seconds (a local VM's) read as 1.4, not as 0 beside a bootDelayS of 180."""
    return f"{took:.1f}" if took < 10 else f"{took:.0f}"


def _entry(
    time: datetime, action: str, node: str | None, group: str | None, reason: str
) -> dict[str, Any]:
    return {"time": time.isoformat(), "action": action, "node": node, "group": group,
            "reason": reason}  # fmt: skip


def _parsed(group: NodeGroup) -> IdlePolicy | None:
    try:
        return group_idle_policy(group.idle_policy)
    except ValueError as exc:  # stored before the check existed: run it as fixed, say why
        log.warning("node group %s: %s; its idle policy runs as fixed", group.name, exc)
        return None


def _new_jobs(deps: Deps, last: int | None) -> tuple[list[Job], int, dict[int, Job]]:
    """Jobs with ids above ``last``, oldest first, the new last id, and every job the pages
    read held (by id: the ends of the newest jobs, read at no extra cost). The first run
    counts none: it starts from the newest job."""
    if last is None:
        newest = deps.store.list_jobs(limit=1)
        return [], newest[0].id if newest else 0, {}
    found: list[Job] = []
    read: dict[int, Job] = {}
    before: int | None = None
    for _ in range(ARRIVAL_PAGES):
        page = deps.store.list_jobs(limit=JOB_PAGE, before=before)
        read.update((j.id, j) for j in page)
        fresh = [j for j in page if j.id > last]
        found += fresh
        if len(page) < JOB_PAGE or len(fresh) < len(page):
            break
        before = page[-1].id
    else:
        log.warning("idle policies: more than %d new jobs since the last run; the older ones "
                    "are not counted", ARRIVAL_PAGES * JOB_PAGE)  # fmt: skip
    found.sort(key=lambda j: j.id)
    return found, max([last, *(j.id for j in found)]), read


def _task_runs(
    deps: Deps, before: Sequence[str], running: Sequence[str], owners: Mapping[int, str]
) -> list[tuple[str | None, float, float]]:
    """The run times of the tasks running at the last run that no longer are, read one by
    one (at most :data:`TASK_ENDS_READ`, the newest first; one requeued or deleted is left
    out)."""
    now = set(running)
    gone = sorted((tuple(map(int, k.split("."))) for k in before if k not in now), reverse=True)
    out = []
    for job_id, task_id in gone[:TASK_ENDS_READ]:
        try:
            task = deps.store.get_task(job_id, task_id)
        except NotFound:
            continue
        run = task_run(task, owners.get(job_id))
        if run is not None:
            out.append(run)
    return out


def _read_ended(deps: Deps, ids: set[int], known: dict[int, Job]) -> dict[int, Job]:
    """``known`` and the jobs of ``ids`` it lacks, read one by one (at most
    :data:`ENDS_READ`, the newest first; a job deleted meanwhile is left out)."""
    missing = sorted((i for i in ids if i not in known), reverse=True)
    if len(missing) > ENDS_READ:
        log.warning("idle policies: %d watched jobs left the queue since the last run; the "
                    "ends of the %d oldest are not told", len(missing), len(missing) - ENDS_READ)  # fmt: skip
    out = dict(known)
    for job_id in missing[:ENDS_READ]:
        try:
            out[job_id] = deps.store.get_job(job_id)
        except NotFound:
            continue
    return out


def _tasks_of_new(deps: Deps, jobs: Sequence[Job], seen: Sequence[Task]) -> dict[int, list[Task]]:
    """The tasks of each new job: those already read (queued, running), else one read of
    its stored tasks and sweep ranges (bounded), else one core per task."""
    ids = {j.id for j in jobs}
    out: dict[int, list[Task]] = {i: [] for i in ids}
    for t in seen:
        if t.job_id in ids:
            out[t.job_id].append(t)
    reads = 0
    for job in jobs:
        if out[job.id]:
            continue
        if reads >= FALLBACK_JOBS:
            out[job.id] = [Task(job_id=job.id, id=k + 1, command="", node_groups=job.node_groups)
                           for k in range(min(job.task_count, TASKS_READ))]  # fmt: skip
            continue
        reads += 1
        tasks = deps.store.list_tasks(job.id, limit=TASKS_READ)
        for r in deps.store.get_ranges(job.id):
            tasks += [r.template] * max(0, min(r.left, TASKS_READ - len(tasks)))
        out[job.id] = tasks
    return out
