"""The autoscaler policy: cluster state and ``now`` in, start/stop orders with reasons out.

Pure: no provider, no store, no clock. Like HPC Pack's AutoGrowShrink it only starts and
stops nodes that were added (an Offline node of a managed group is a deallocated VM);
creating and deleting VMs is an admin act. Everything it must remember between timer runs
(``idle_since``, backoffs, the last scale-up) is in :class:`AutoscalerState`, which the
caller loads and saves with the run (a Meta document): a timer function has no memory.

Rules, each pinned by a table in tests/test_autoscaler.py:

- **Grow for runnable work only.** Queued tasks are first placed (in queue order, where the
  scheduler's next pass puts them: on-prem most free first, VMs best fit) on the free cores
  of Online nodes, on-prem first, then on Starting nodes of managed groups, which count as
  coming capacity; a multi-node task that may burst takes the nodes that can hold it now and
  overflows only the nodes it lacks (an idle on-prem node is not counted for two tasks).
  Cores the scheduler holds for a blocked head task at an unknown time
  (``ClusterView.reserved``) are not free to later tasks; a task asking for memory
  takes only nodes with that much. What is left (the overflow) is bin-packed, first-fit
  decreasing, onto template nodes of each managed group the task may run on and fits
  (cores, memory: ``demand.grown_for``, which also says why it starts none for a task);
  the group grows by the number of bins, never past ``max_nodes``, the Offline nodes it has
  (not those an admin took offline or drained: ``Node.held``), or ``max_starts_per_run``.
  A job allowed on [OnPremNodes, AzureNodes] therefore fills on-prem first and bursts to
  Azure only for the overflow.
- **Stop only idle nodes.** A managed Online node with no active task is stopped once idle
  for ``idle`` (ShrinkIdleTimes x ShrinkInterval) since the autoscaler first saw it idle, if
  no queued task could run on it, the group stays at ``min_nodes``, and no scale-up happened
  within ``scale_down_delay``. A node with running tasks is never stopped: a stop is a drain
  first (:func:`request_stop`), a Draining node stops once empty. Nodes up
  beyond ``max_nodes`` (an admin lowered it): Starting ones stop first, then idle ones,
  and only for what is still over the least busy others drain (not held) and stop once
  empty (:mod:`shared.domain.autoscaler_cap`).
- **Failed starts back off.** A start failure (quota, allocation, throttling) holds the
  group's growth for a backoff that doubles only if the previous one had expired (max
  ``backoff_max``; a Retry-After extends it); a node that joins resets it. A node that never
  joined within ``deployment_timeout`` is started last until it joins (:func:`not_joined`).
- **The VMs' facts win.** An Online, Draining or Unreachable node whose VM is
  off was evicted: it is marked Offline (no back-off; it is started last); an Unreachable
  node whose VM is on is deallocated once unheard for ``deployment_timeout``, even if an
  admin drained it (it stays held; :mod:`shared.domain.unreachable`);
  a Stopping node whose VM is off is Offline; a VM running behind an Offline node (nobody
  started it) is stopped after the deployment timeout (:mod:`shared.domain.strayvms`). These
  repairs, and stopping a drained node not an admin's drain, hold with autoscale off too.
- **Every order says why** (``Order.reason``: "why did this node start").
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import partial
from operator import attrgetter

from shared.domain import autoscaler_cap, autoscaler_notes, demand
from shared.domain.autoscaler_io import (  # noqa: F401 - callers import them here too
    ClusterView,
    Decision,
    Note,
    Order,
    OrderAction,
    StartFailure,
    request_stop,
)
from shared.domain.cluster import Node
from shared.domain.demand import extra_nodes, may_run_in, packed_nodes, reach
from shared.domain.firstfit import KeptOff, place_queue
from shared.domain.growcheck import grow_check, with_covered
from shared.domain.growshrink import (
    AutoscalerPolicy,
    AutoscalerState,
    GroupMemory,
    GroupPolicy,
    NodeMemory,
    asked_starts,
    healthy_first,
    managed_group,
    next_backoff,
    not_joined,
    start_of,
    start_order,
    untried_others,
)
from shared.domain.models import Task
from shared.domain.power import OFF_STATES, PowerState
from shared.domain.reservedhold import may_grow_for
from shared.domain.scheduler import tier
from shared.domain.states import NodeState
from shared.domain.strayvms import stray_vm
from shared.domain.unreachable import unheard_vm


def autoscale(
    view: ClusterView, policy: AutoscalerPolicy, state: AutoscalerState, now: datetime
) -> Decision:
    """One run: repair what the VMs say, time out nodes that never joined, then grow and shrink."""
    run = _Run(view, policy, now, state)
    offline = {n.name for n in view.nodes if n.state is _OFFLINE}
    for failure in view.failures:
        run.fail(failure.group, failure)
        if failure.node in offline and failure.node in run.nodes:  # a refused start is over:
            run.nodes[failure.node] = NodeMemory()  # a later one (an admin's) counts afresh
    run.repair()
    for node, group, why in asked_starts(view.nodes, run.managed, run.busy):  # admins' starts
        run.order("start", node, group, why)
        run.nodes[node.name] = NodeMemory(start_ordered_at=now)
    overflow, wanted = run.simulate()
    run.grow(overflow)
    run.shrink(wanted)
    return Decision(run.orders, AutoscalerState(groups=run.groups, nodes=run.nodes), run.notes)


class _Run:
    """The working state of one run (discarded after it: nothing lives in module memory)."""

    def __init__(
        self, view: ClusterView, policy: AutoscalerPolicy, now: datetime, state: AutoscalerState
    ) -> None:
        self.view, self.policy, self.now = view, policy, now
        names = {n.name for n in view.nodes}
        self.groups = dict(state.groups)
        self.nodes = {name: m for name, m in state.nodes.items() if name in names}
        self.orders: list[Order] = []
        self.notes: list[Note] = []
        self.busy: set[str] = set()
        """Nodes already given an order this run."""
        self.stops = 0
        """Drained nodes stopped by the repair (they count against ``max_stops_per_run``)."""
        self.kept_off: KeptOff = {}  # tasks job-level exclusive kept off nodes: notes say so
        self.managed = {n.name: managed_group(n, policy) for n in view.nodes}
        self._members: dict[str, list[Node]] = {}
        for n in view.nodes:
            group = self.managed[n.name]
            if group is not None:
                self._members.setdefault(group, []).append(n)

    def order(self, action: OrderAction, node: Node, group: str, reason: str) -> None:
        self.orders.append(Order(action, node.name, group, reason))
        self.busy.add(node.name)

    def fail(self, group: str, failure: StartFailure) -> None:
        memory = self.groups.get(group, GroupMemory())
        self.groups[group] = next_backoff(
            memory, self.policy, self.now, reason=failure.reason, retry_after=failure.retry_after
        )

    def members(self, group: str) -> list[Node]:
        return self._members.get(group, [])

    def repair(self) -> None:
        """Facts from the VMs, drained nodes, and the deployment timeout (every run)."""
        now, used = self.now, self.view.used_cores
        for node in self.view.nodes:
            group = self.managed[node.name]
            if group is None:
                continue
            memory = self.nodes.get(node.name, _FRESH)
            power = self.view.power.get(node.name)
            if node.state is _ONLINE and (memory.start_ordered_at or memory.failed_at):
                memory = replace(memory, start_ordered_at=None, failed_at=None)  # it joined
                self.groups[group] = replace(self.groups.get(group, GroupMemory()), backoff=None)
            timeout = self.policy.deployment_timeout
            if node.state is _STOPPING and power in OFF_STATES:
                self.order("offline", node, group, autoscaler_notes.stopped(node, power))
            elif power is None and self.view.listed and node.state in _NO_VM_NEEDED:
                self.order("offline", node, group, autoscaler_notes.GONE)
            elif power in OFF_STATES and node.state in _RUNS_AGENT:
                # A Starting node is judged by its start operation and the deployment timeout
                # instead: a VM list may still say "deallocated" just after a start began.
                # no back-off: the group's deployments did not fail (a probe's Spot eviction held
                # back the regular VMs its requeued tasks could run on); started last instead
                why = f"its VM is {power} (evicted or stopped outside the cluster)"
                self.order("offline", node, group, why)
                memory = NodeMemory(failed_at=now, evicted=True)
            elif (unheard := unheard_vm(node, power, now, timeout)) and (
                self.stops < self.policy.max_stops_per_run
            ):  # a hung VM bills on: deallocated, started last until it joins
                self.order("stop", node, group, unheard)
                self.stops += 1
                memory = NodeMemory(failed_at=now)
            elif node.state is _STARTING and now - start_of(node, memory) >= timeout:
                why = autoscaler_notes.not_joined(timeout)
                self.order("stop", node, group, why)
                untried = untried_others(self.members(group), node.name, self.nodes)
                gm, said = self.groups.get(group, GroupMemory()), f"{node.name}: {why}"
                self.groups[group] = not_joined(gm, self.policy, now, untried, why=said)
                memory = NodeMemory(failed_at=now)
            elif (
                node.state is _DRAINING
                and node.held != "drain"  # an admin's drain keeps its VM up, as Slurm's DRAIN
                and used.get(node.name, 0) == 0
                and self.stops < self.policy.max_stops_per_run
            ):
                self.order("stop", node, group, autoscaler_notes.drained(node.state_reason))
                self.stops += 1
            if (node.state is _OFFLINE and power in _VM_ON) or memory.on_offline_since:
                memory, stray = stray_vm(node.state, power, memory, now, timeout)
                if stray is not None:
                    self.order("stop", node, group, stray)
            self.nodes[node.name] = memory

    def simulate(self) -> tuple[list[Task], set[str]]:
        """Place the queue as the scheduler's next pass would (on-prem, then managed Online
        nodes, in the scheduler's order; then Starting ones): the tasks left over, the nodes used."""
        if not self.view.queued:
            return [], set()
        free: dict[str, int] = {}
        rank: dict[str, tuple[int, str]] = {}
        for node in self.view.nodes:
            group = self.managed[node.name]
            if node.name in self.busy:
                continue
            if node.state is _ONLINE:
                free[node.name] = node.cores - self.view.used_cores.get(node.name, 0)
                rank[node.name] = (0 if group is None else 1, node.name)
            elif node.state is _STARTING and group is not None:
                free[node.name] = node.cores
                rank[node.name] = (2, node.name)
        placing = sorted((n for n in free if free[n] > 0), key=lambda n: rank[n])
        tiers = {n.name: tier(n) for n in self.view.nodes if n.name in free}  # the scheduler's
        groups_of = {n.name: set(n.groups) for n in self.view.nodes if n.name in rank}
        size = {n.name: n.cores for n in self.view.nodes}
        protocol = {n.name: n.agent_protocol for n in self.view.nodes if n.state is _ONLINE}
        coming = free.keys() - protocol.keys()  # Starting: not in the next pass; boots our agent
        queued, spill, memory_mb, view = self.view.queued, None, None, self.view
        if any(t.min_memory_mb is not None for t in queued):  # the nodes' free memory, if asked
            memory_mb = demand.memory_of(view.nodes, self.managed, self.policy.groups, view.held_mb)
        if any(t.nodes > 1 for t in queued):  # what a wide task could ever hold
            growable = {
                g: gp
                for g, gp in self.policy.groups.items()
                if g in self._members and g not in self.policy.exclude_node_groups
            }
            spill = reach(self.view.nodes, self.managed, growable).holds
        bursts = partial(may_grow_for, policy=self.policy, members=self._members,
                         memories=self.groups, now=self.now)  # fmt: skip
        return place_queue(
            queued, placing, free, size, groups_of, tiers=tiers, protocol=protocol,
            memory=memory_mb, spill=spill, reserved=self.view.reserved,
            now_s=self.now.timestamp(), bursts=bursts, occupied=self.view.occupied,
            coming=coming, kept_off=self.kept_off)  # fmt: skip

    def grow(self, overflow: list[Task]) -> None:
        starts_left = self.policy.max_starts_per_run
        claimed: set[tuple[int, int]] = set()  # a task allowed on two groups grows one
        for group in sorted(self.policy.groups):
            if group in self.policy.exclude_node_groups:
                continue
            gp, memory = self.policy.groups[group], self.groups.get(group, GroupMemory())
            members = [n for n in self.members(group) if n.name not in self.busy]
            offline = [n for n in members if n.state is _OFFLINE]
            up = len(members) - len(offline)
            held = len(offline)
            offline = [n for n in offline if n.held is None]  # an admin's hold: never started
            held -= len(offline)
            tasks, able = list[Task](), 0
            mine = [t for t in overflow if may_run_in(t, group) and _key(t) not in claimed]
            check = grow_check(memory, gp, mine, self.now)  # GrowInterval, or a lost node's
            memory = check.memory
            if check.tasks:
                tasks, why, able = demand.grown_for(check.tasks, group, gp, members)
                if why:  # said per task by its pending reason: no grow note (grows=False)
                    self.notes.append(Note(group, why, grows=False))
            if tasks and check.paced and able < gp.grow_threshold:
                self.notes.append(Note(group, autoscaler_notes.below_threshold(
                    group, able, gp.grow_threshold)))  # fmt: skip
                tasks = []
            packed = packed_nodes(tasks, gp)
            need = packed + extra_nodes(packed, gp)
            wanted = max(need, gp.min_nodes - up)  # min_nodes is kept whatever the interval
            self.groups[group] = memory
            if wanted <= 0:
                continue
            if memory.backoff_until is not None and self.now < memory.backoff_until:
                words = autoscaler_notes.backoff(wanted, memory.backoff_until, memory.last_failure)
                self.notes.append(Note(group, words))
                continue
            offline = healthy_first(start_order(offline, tasks, self.members(group)), self.nodes)
            count = min(wanted, max(0, gp.max_nodes - up), len(offline), starts_left)
            if count < wanted:
                short = autoscaler_notes.Shortfall(
                    group, wanted, count, gp.max_nodes, len(self.members(group)),
                    len(offline), held, starts_left,
                )  # fmt: skip
                self.notes.append(Note(group, short.text()))
            why = floor = f"{group} is below its minNodes {gp.min_nodes}"
            if need:
                why = autoscaler_notes.grown(group, tasks, need, gp, need - packed, self.kept_off)
            for k, node in enumerate(offline[:count]):  # beyond the queue's need: the floor's
                self.order("start", node, group, why if k < need else floor)
                self.nodes[node.name] = NodeMemory(start_ordered_at=self.now)
            if count:
                claimed.update(_key(t) for t in tasks)
                starts_left -= count
                self.groups[group] = replace(memory, last_scale_up=self.now)
        if self.policy.remember_covered:  # what its pending reasons read (not the replay)
            starting = {o.group for o in self.orders if o.action == "start"} | {
                g for g, ms in self._members.items() if any(n.state is _STARTING for n in ms)}  # fmt: skip
            for group, memory in self.groups.items():
                self.groups[group] = with_covered(
                    memory, group, self.view.queued, overflow, claimed, group in starting)  # fmt: skip

    def shrink(self, wanted: set[str]) -> None:
        stops_left = self.policy.max_stops_per_run - self.stops
        for group in sorted(self.policy.groups):
            if group in self.policy.exclude_node_groups:
                continue
            gp, memory = self.policy.groups[group], self.groups.get(group, GroupMemory())
            members = self.members(group)
            idle: list[Node] = []
            for node in members:
                nm = self.nodes.get(node.name, _FRESH)
                if node.state is _ONLINE and self.view.used_cores.get(node.name, 0) == 0:
                    idle.append(node)
                    if nm.idle_since is None:
                        nm = replace(nm, idle_since=self.now)
                elif nm.idle_since is not None:
                    nm = replace(nm, idle_since=None)
                self.nodes[node.name] = nm
            if len(members) > gp.max_nodes:  # an admin lowered maxNodes below its nodes
                stops_left -= self.cap(group, gp, members, idle, stops_left)
            last = memory.last_shrink_check
            if last is not None and self.now - last < gp.shrink_interval:
                continue
            self.groups[group] = memory = replace(memory, last_shrink_check=self.now)
            grew = memory.last_scale_up
            hold = gp.scale_down_delay
            hold = self.policy.scale_down_delay if hold is None else hold
            if grew is not None and self.now - grew < hold:
                if idle:
                    delay = hold.total_seconds()
                    self.notes.append(
                        Note(group, f"no scale-down within {delay:g} s of a scale-up", grows=False)
                    )
                continue
            # the floor counts nodes that are up: a Starting one may never join, so it does
            # not make an Online node surplus (stopping that would leave the floor short)
            up = sum(1 for n in members if n.state not in _NOT_UP and n.name not in self.busy)
            idle_for = gp.idle
            for node in sorted(idle, key=attrgetter("name")):
                since = self.nodes[node.name].idle_since
                if since is None or node.name in self.busy or self.now - since < idle_for:
                    continue
                if node.name in wanted:
                    why = f"{node.name} is idle but queued tasks will run on it"
                    self.notes.append(Note(group, why, grows=False))
                    continue
                if up <= gp.min_nodes or stops_left <= 0:
                    break
                self.order(
                    "stop",
                    node,
                    group,
                    f"idle for {(self.now - since).total_seconds():.0f} s (ShrinkIdleTimes "
                    f"{gp.shrink_idle_times} x ShrinkInterval "
                    f"{gp.shrink_interval.total_seconds():g} s) and no queued task can run on it",
                )
                self.nodes[node.name] = NodeMemory()
                up -= 1
                stops_left -= 1

    def cap(
        self, group: str, gp: GroupPolicy, members: list[Node], idle: list[Node], stops_left: int
    ) -> int:
        """Stops and drains for nodes up beyond a lowered ``max_nodes`` (not held, unlike an
        admin's drain: :mod:`shared.domain.autoscaler_cap`); returns the stops ordered."""
        plan = autoscaler_cap.cap(
            group, gp.max_nodes, members, idle, self.busy, self.view.used_cores, stops_left
        )
        if plan is None:
            return 0
        for node in plan.stops:
            self.order("stop", node, group, plan.why)
            self.nodes[node.name] = NodeMemory()
        for node in plan.drains:
            self.order("drain", node, group, f"{plan.why}: it stops once its tasks end")
        if plan.left > 0:
            self.notes.append(
                Note(group, f"{plan.why}: {plan.left} more stop once idle", grows=False)
            )
        return len(plan.stops)


# Enum members as constants: a lookup on the class costs more than a node's check (sim: ~100k runs)
_ONLINE, _STARTING, _STOPPING, _DRAINING, _OFFLINE = (NodeState.ONLINE, NodeState.STARTING,
    NodeState.STOPPING, NodeState.DRAINING, NodeState.OFFLINE)  # fmt: skip
_NOT_UP = frozenset({NodeState.OFFLINE, NodeState.STARTING})
"""Not counted toward min_nodes when an idle node may stop (see shrink)."""
_VM_ON = frozenset({PowerState.RUNNING, PowerState.STARTING})
_NO_VM_NEEDED = frozenset({NodeState.UNREACHABLE, NodeState.STOPPING})
"""Offline if the provider lists no VM (a probe's stayed Unreachable or Stopping 25 min)."""
_FRESH = NodeMemory()
"""The memory of a node nothing is remembered about (shared: it is frozen)."""
_RUNS_AGENT = frozenset({NodeState.ONLINE, NodeState.DRAINING, NodeState.UNREACHABLE})
"""Node states whose VM should be on: a VM found off was evicted or stopped outside."""


def _key(task: Task) -> tuple[int, int]:
    return (task.job_id, task.id)
