"""The autoscaler's timer run: poll begun VM operations, ask the pure policy
(:mod:`shared.domain.autoscaler`) what to start and stop, do it, and keep every decision
with its reason (``hpc autoscale log``).

One run reads: the provider's power states (one call), each pending operation (one poll
each), nodes, active and queued tasks, and the policy's memory (a Meta document); it then
begins at most the starts and stops the policy orders. Nothing waits on a VM operation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from shared.domain import ceiling, scheduler
from shared.domain.autoscaler import ClusterView, Decision, Order, StartFailure, autoscale
from shared.domain.autoscaler_io import Reserved
from shared.domain.autoscaler_notes import FAILED, deallocation_done
from shared.domain.cluster import Node, NodeGroup
from shared.domain.growshrink import (
    AutoscalerPolicy,
    AutoscalerState,
    GroupMemory,
    GroupPolicy,
    NodeMemory,
    group_memory_mb,
    next_backoff,
)
from shared.domain.hosts import used_cores
from shared.domain.jobexclusive import occupancy
from shared.domain.memoryfit import held_memory
from shared.domain.models import Task
from shared.domain.reservedhold import hold_of, unless_hidden
from shared.domain.states import NodeState
from shared.errors import Conflict, NotFound
from shared.ports.compute import ComputeError, ErrorKind, Operation
from shared.usecases import idle_policy
from shared.usecases.autoscale_log import failure_entry, save_run
from shared.usecases.autoscale_memory import load_doc
from shared.usecases.deps import Deps
from shared.usecases.losses import lose_attempts, release_given_up
from shared.usecases.nodes import StartRefused, drain_node, power_off, start_node, stop_node
from shared.usecases.operations import pending_operations, settle_operations
from shared.usecases.queue import runnable_queue

log = logging.getLogger(__name__)

"""Decisions kept for ``hpc autoscale log`` (the newest)."""
QUEUE_WINDOW = 10_000


def policy_of(groups: list[NodeGroup], deps: Deps, nodes: Sequence[Node] = ()) -> AutoscalerPolicy:
    """The autoscaler's policy of the groups this provider manages; each group's node memory
    from its setting or, unset, its registered ``nodes`` (:func:`group_memory_mb`)."""
    provider = deps.compute.name if deps.compute else None
    managed = {
        g.name: GroupPolicy(
            node_cores=g.node_cores,
            node_memory_mb=group_memory_mb(g.node_memory_mb, g.name, nodes),
            min_nodes=g.min_nodes,
            max_nodes=g.max_nodes,
            grow_interval=timedelta(seconds=g.grow_interval_s),
            shrink_interval=timedelta(seconds=g.shrink_interval_s),
            shrink_idle_times=g.shrink_idle_times,
            grow_threshold=g.grow_threshold,
            tasks_per_resource_unit=g.tasks_per_resource_unit,
            extra_nodes_grow_ratio=g.extra_nodes_grow_ratio,
            grow_by_min=g.grow_by_min,
            scale_down_delay=(
                None if g.scale_down_delay_s is None else timedelta(seconds=g.scale_down_delay_s)
            ),
        )
        for g in groups
        if g.provider == provider
    }
    return AutoscalerPolicy(
        groups=managed,
        exclude_node_groups=frozenset(g.name for g in groups if g.provider and not g.autoscale),
        deployment_timeout=timedelta(seconds=deps.settings.deployment_timeout_s),
        scale_down_delay=timedelta(seconds=deps.settings.scale_down_delay_s),
    )


def run(deps: Deps) -> Decision | None:
    """One autoscaler run (the timer's); None when no group is managed. A pass that finds
    running work's VM gone (a Spot eviction, a VM deallocated outside the cluster) requeues
    that work, and the run decides once more at once, so that its replacement starts in
    this run rather than the next (a probe: a minute later on Azure's timer)."""
    lost_work: list[str] = []
    decision = _run_once(deps, lost_work)
    if lost_work:
        log.info("autoscaler: work lost with %s requeued; deciding again", ", ".join(lost_work))
        decision = _run_once(deps, []) or decision
    return decision


def _run_once(deps: Deps, lost_work: list[str]) -> Decision | None:
    """One pass: poll the provider, decide, carry out; the nodes whose running work an
    order took Offline (requeued) are added to ``lost_work``."""
    if deps.compute is None:
        return None
    groups = deps.store.list_groups()
    if not policy_of(groups, deps).groups:
        return None
    now = deps.clock()
    lost: list[StartFailure] = []  # starts whose VM the provider forgot: logged, no back-off
    failures = _poll(deps, now, lost)
    power = deps.compute.power_states()
    nodes = deps.store.list_nodes()
    policy = policy_of(groups, deps, nodes)  # with the groups' node memory
    active = deps.store.active_tasks()
    queued = runnable_queue(deps, limit=QUEUE_WINDOW, active=active)
    stored = load_doc(deps)
    state = AutoscalerState.from_dict(stored)
    used = used_cores(active)
    # work that cannot fit under its groups' maxNodes beside running work waits for that
    # work to end: no node is started or kept for it, nor held for it (shared.domain.ceiling)
    rooms, elsewhere = ceiling.rooms(nodes, used, policy)
    hidden = ceiling.beyond_ceiling(queued, rooms, elsewhere)
    hold = unless_hidden(reserved(nodes, queued, active, used, now), hidden)
    shown = [t for t in queued if (t.job_id, t.id) not in hidden] if hidden else queued
    # the groups' idle policies set min_nodes and the idle time for this run (idle_policy)
    learnt = stored.get(idle_policy.MEMORY_FIELD)
    planned = idle_policy.prepare(
        deps, groups, policy, nodes, queued, active, used, learnt, now, shown=shown
    )
    deferred = planned.deferred
    if deferred:  # boots that wait for running work's likely ends (likelyends)
        shown = [t for t in shown if (t.job_id, t.id) not in deferred]
        hold = unless_hidden(hold, deferred)
    booted = idle_policy.boot_entries(
        state, nodes, policy, {g.name: g.boot_delay_s for g in groups}
    )
    decision = autoscale(
        ClusterView(
            nodes=nodes,
            queued=shown,
            used_cores=used,
            power={} if isinstance(power, ComputeError) else power,
            listed=not isinstance(power, ComputeError),
            failures=failures,
            reserved=hold,
            occupied=occupancy(active),
            held_mb=held_memory(active),
        ),
        planned.policy,
        state,
        now,
    )
    decision, kept, idle_memory = idle_policy.finish(planned, decision, used, now)
    if hidden:  # said per group: the hidden tasks' pending reasons quote it
        waits = ceiling.notes([t for t in queued if (t.job_id, t.id) in hidden], rooms)
        decision = replace(decision, notes=[*decision.notes, *waits])
    if deferred:
        decision = replace(decision, notes=[*decision.notes, *planned.deferral_notes()])
    refused: list[StartFailure] = []
    done, skipped = _carry_out(deps, decision.orders, refused, lost_work)
    state = decision.state
    if refused or skipped:  # those starts are over: a later one (an admin's) counts afresh
        forgot = {f.node for f in refused} | skipped
        nodes_memory = {n: NodeMemory() if n in forgot else m for n, m in state.nodes.items()}
        state = replace(state, nodes=nodes_memory)
        decision = replace(decision, state=state)
    if refused:  # refused at once: the group backs off as for a start that failed later
        memory = dict(state.groups)
        for failure in refused:
            memory[failure.group] = next_backoff(
                memory.get(failure.group, GroupMemory()),
                policy,
                now,
                reason=failure.reason,
                retry_after=failure.retry_after,
            )
        decision = replace(decision, state=replace(state, groups=memory))
    failed = [failure_entry(f, "start failed", decision, now) for f in failures]
    failed += [failure_entry(f, "start refused", decision, now) for f in refused]
    failed += [failure_entry(f, "start lost", decision, now) for f in lost]
    save_run(deps, decision, done, now, before=booted + failed, after=kept, memory=idle_memory)
    return decision


def reserved(
    nodes: Sequence[Node],
    queued: Sequence[Task],
    active: Sequence[Task],
    used: Mapping[str, int],
    now: datetime,
) -> Reserved | None:
    """The scheduler's reservation (its time known or not), as a pass would make it now: the
    same pure call (:func:`scheduler.decide`) on the registered nodes, what runs and the
    queue, so the autoscaler grows for work it keeps off free cores (nothing remembered). A
    task takes at least one core, so the first that blocks is among the first ``free + 1``:
    the rest of the window is not looked at."""
    registered = [n for n in nodes if n.incarnation > 0]
    free = sum(max(f, 0) for f in scheduler.free_cores(registered, used).values())
    if free == 0:
        return None  # a pass reads no queue: nothing is reserved
    head = queued[: free + 1]
    return hold_of(scheduler.decide(head, registered, used, running=active, now=now), head)


def _poll(deps: Deps, now: datetime, lost: list[StartFailure]) -> list[StartFailure]:
    """Poll the operations begun: the failed starts (they back their groups off); a start
    whose VM the provider forgot is added to ``lost`` (logged, no back-off: a re-probe found
    those after a control-plane restart only in the host's log)."""
    assert deps.compute is not None
    before = pending_operations(deps)
    after: dict[str, Operation] = {}
    failures = []
    for vm, op in before.items():
        result = deps.compute.poll(op, now=now)
        if result.next is not None:
            after[vm] = result.next
        elif not result.done:
            after[vm] = op
        elif op.action == "deallocate" and result.status == "succeeded":
            release_given_up(deps, vm)
            _say_deallocated(deps, vm)
        elif result.status == "failed" and result.error is not None:
            log.warning("%s of %s failed: %s", op.action, vm, result.error.message)
            failure = _failed(deps, op, result.error, now)
            if failure is not None and result.error.kind is ErrorKind.NOT_FOUND:
                lost.append(failure)
            elif failure is not None:
                failures.append(failure)
    settle_operations(deps, before, after)
    return failures


def _say_deallocated(deps: Deps, vm: str) -> None:
    """An Offline node's reason that said its VM was deallocating says deallocated now."""

    def write() -> None:
        node = deps.store.get_node(vm)
        said = deallocation_done(node.state_reason)
        if node.state is NodeState.OFFLINE and said is not None:
            node.state_reason = said
            deps.store.put_node(node)

    try:
        deps.retry(write)
    except (Conflict, NotFound) as exc:  # the next write says what it is now
        log.warning("autoscaler: could not say %s deallocated: %s", vm, exc)


PREEMPTED = frozenset({"Preempted", "OperationPreempted"})
"""Provider codes of a start ended by a later operation on its VM (the local provider's
``Preempted``, Azure's ``OperationPreempted``): the cluster's own stop, no failure. Other
409s (Azure's Conflict, a non-quota OperationNotAllowed) are failures like any other."""
RETRIED = PREEMPTED | {"Conflict"}
"""Refusals of a start that the next run retries without a back-off: Azure's ``Conflict``
(another operation is in progress on the VM) and a start our own stop preempted."""


def _failed(deps: Deps, op: Operation, error: ComputeError, now: datetime) -> StartFailure | None:
    """A failed operation: a failed start leaves the VM off, so its node is Offline again at
    once (not Starting until the deployment timeout); the failure it returns backs the group
    off, unless the cluster caused it. A start the cluster's own deallocation ended (an
    admin's stop or offline after the start: the node is no longer Starting, or the provider
    says the start was preempted, :data:`PREEMPTED`) is no failure (a probe saw an admin's
    stop back the group off 60 s); nor is a VM the provider forgot (NotFound: the local
    provider after a control-plane restart): the node is Offline, without a backoff, and a
    new start (the autoscaler's, if it still wants the node, or an admin's) creates it."""
    try:
        node = deps.store.get_node(op.vm)
    except NotFound:
        return None
    group = node.groups[0] if node.groups else ""
    lost = error.kind is ErrorKind.NOT_FOUND
    if op.action == "deallocate" and lost and node.state is NodeState.STOPPING:
        _take_offline(deps, node, f"its VM is gone ({error.message}): the stop is done", now)
    if op.action != "start" or node.state is not NodeState.STARTING:
        return None
    if lost:
        why = (
            "its VM was lost (the provider forgot it, e.g. after a restart, or it was deleted); "
            "Offline: a new start creates it again"
        )
        _take_offline(deps, node, why, now)
        return StartFailure(group, op.vm, f"{op.vm}: {why}")  # logged only (_poll)
    if error.code in PREEMPTED:
        return None  # whoever ordered the deallocation writes the node's state
    _take_offline(deps, node, f"{FAILED}the start failed: {error.message}", now)
    return StartFailure.from_error(group, op.vm, error)


def _take_offline(deps: Deps, node: Node, reason: str, now: datetime) -> None:
    try:
        node.move_to(NodeState.OFFLINE, reason=reason, now=now)
        deps.store.put_node(node)
    except (Conflict, NotFound, ValueError) as exc:
        log.warning("autoscaler: could not take %s Offline (%s): %s", node.name, reason, exc)


GROUP_WIDE = frozenset(
    {ErrorKind.QUOTA_EXCEEDED, ErrorKind.ALLOCATION_FAILED, ErrorKind.SKU_NOT_AVAILABLE,
     ErrorKind.THROTTLED}
)  # fmt: skip
"""Refusals that say nothing about one VM: the group's other starts this run would get the
same (a probe's QuotaExceeded was tried on every Offline node, a line and an ARM call each)."""


def _carry_out(
    deps: Deps, orders: Sequence[Order], refused: list[StartFailure], lost_work: list[str]
) -> tuple[list[Order], set[str]]:
    """The orders carried out, and the nodes whose start was not tried: after a group-wide
    refusal (:data:`GROUP_WIDE`) the rest of that group's starts wait for its back-off."""
    done: list[Order] = []
    skipped: set[str] = set()
    stopped: set[str] = set()  # groups refused group-wide this run
    for order in orders:
        if order.action == "start" and order.group in stopped:
            skipped.add(order.node)
            continue
        before = len(refused)
        if _apply(deps, order, refused, lost_work):
            done.append(order)
        elif len(refused) > before and refused[-1].kind in GROUP_WIDE:
            stopped.add(order.group)
    return done, skipped


def _apply(deps: Deps, order: Order, refused: list[StartFailure], lost_work: list[str]) -> bool:
    """Carry out one order; False if it could not be (logged, the next run sees again). A
    start the provider refused at once is added to ``refused``; a node taken Offline under
    running work, to ``lost_work``."""
    try:
        node = deps.store.get_node(order.node)
        if order.action == "start":
            if node.state is NodeState.OFFLINE:
                start_node(deps, node, reason=order.reason)
        elif order.action == "stop" and node.state is NodeState.OFFLINE:
            power_off(deps, node, reason=order.reason)  # a VM that runs behind it
        elif order.action == "stop":
            stop_node(deps, node, reason=order.reason)
        elif order.action == "drain":
            drain_node(deps, node, reason=order.reason)
        elif node.state is not NodeState.OFFLINE:  # "offline": its VM is off already
            node.move_to(NodeState.OFFLINE, reason=order.reason, now=deps.clock())
            deps.store.put_node(node)
            held = deps.store.active_tasks(node=node.name)
            # The VM went away under its tasks (a Spot eviction, a deallocation outside the
            # cluster): not their fault, so the requeue uses no retry (as Azure Batch does).
            lose_attempts(deps, held, lambda _t: order.reason, count=False)
            if held:
                lost_work.append(node.name)
    except StartRefused as exc:
        log.warning("autoscaler: %s", exc)
        if exc.error.kind is not ErrorKind.NOT_FOUND and exc.error.code not in RETRIED:
            # a refusal backs its group off, a 409 too (Azure's non-quota OperationNotAllowed
            # was retried every run: review), but not another operation in progress on the
            # VM (Conflict), nor a start our own stop ended, nor a VM the provider forgot:
            # the next run simply tries again
            refused.append(StartFailure.from_error(order.group, order.node, exc.error))
        return False
    except (Conflict, NotFound, ValueError) as exc:
        log.warning("autoscaler: could not %s %s: %s", order.action, order.node, exc)
        return False
    log.info("autoscaler: %s %s (%s)", order.action, order.node, order.reason)
    return True
