"""Administer nodes: start, stop (drain first while tasks run), drain, take offline, remove,
set their groups; adding managed nodes (VMs, created and left deallocated) is
:mod:`shared.usecases.nodes_add`.

A managed node is a VM of the compute provider (``NodeGroup.provider``); its begun
operations are kept (:mod:`shared.usecases.operations`) and polled by the autoscaler's
timer run, so no call waits on a long-running operation. On-prem nodes join by their
agents; they can be drained and taken offline, and started (brought back Online) while
their agents run (:mod:`shared.usecases.online`); a stop drains them (held, as an admin's
drain: the machine is not powered off), and they are removed once their agents stopped.
A managed node's start, and its races, are :mod:`shared.usecases.node_start`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from shared.domain import lifecycle, ownership
from shared.domain.autoscaler_notes import over_max, restart_warning
from shared.domain.cluster import Node, NodeGroup
from shared.domain.lifecycle.nodes import removal_refusal
from shared.domain.models import Task
from shared.domain.states import TASK_ACTIVE, NodeState
from shared.errors import InvalidRequest, Refused
from shared.ports.compute import ComputeError, ErrorKind
from shared.usecases import online
from shared.usecases.deps import Deps
from shared.usecases.losses import lose_attempts
from shared.usecases.node_start import StartRefused as StartRefused  # re-exported
from shared.usecases.node_start import start_node
from shared.usecases.nodes_add import add_nodes as add_nodes  # re-exported
from shared.usecases.nodes_add import beyond_max
from shared.usecases.operations import record_operation


def named_nodes(deps: Deps, names: Iterable[str]) -> list[Node]:
    """The nodes named, each read (a 404 naming one that does not exist); 422 for none."""
    out = []
    for name in names:
        out.append(deps.store.get_node(name))  # NotFound: 404 naming it
    if not out:
        raise InvalidRequest("name at least one node")
    return out


def start_nodes(
    deps: Deps, names: Iterable[str], *, reason: str = "started by an admin"
) -> list[Node]:
    """Start managed nodes (Offline: their VMs start; Draining: the drain is canceled, the VM
    runs on, as HPC Pack's Bring Online) and bring on-prem ones back Online while their
    agents run (:mod:`shared.usecases.online`). Every node is checked before any is acted
    on: a refusal (409) changes nothing."""
    nodes = named_nodes(deps, names)
    for node in nodes:
        if not ownership.is_managed(node):
            online.check(deps, node)
        elif node.state not in (NodeState.OFFLINE, NodeState.DRAINING, NodeState.STOPPING):
            raise Refused(
                f"node {node.name} is {node.state}; only an Offline node can be started "
                "(a Draining one is brought back Online, a Stopping one starts once stopped)",
                state=node.state.value,
            )
    _check_max(deps, [n for n in nodes if ownership.is_managed(n) and n.state in _RESTARTED])
    out = []
    for node in nodes:
        if not ownership.is_managed(node):
            out.append(online.bring_online(deps, node.name))
            continue
        if node.state is NodeState.STOPPING:
            node = deps.retry(_ask_start, deps, node.name, reason)  # Offline by now: started
        if node.state is NodeState.DRAINING:
            out.append(deps.retry(_cancel_drain, deps, node.name))
            deps.kick()  # queued work may go there now, as after an on-prem node's
        elif node.state is not NodeState.OFFLINE:  # still Stopping (asked), or started since
            out.append(node)
        else:
            node.held = node.held_reason = None  # an admin's start ends an admin's hold
            try:
                out.append(start_node(deps, node, reason=reason))
            except StartRefused as refused:  # the admin is told what to do next
                raise StartRefused(node.name, refused.error, advise=True) from None
    return out


_RESTARTED = frozenset({NodeState.OFFLINE, NodeState.STOPPING})
"""Managed nodes an admin's start powers on (a Stopping one once its stop is done)."""


def _ask_start(deps: Deps, name: str, reason: str) -> Node:
    """An admin's start of a VM still Stopping: asked on the node (``start_requested``), and
    the autoscaler starts it once its stop is done (Azure refuses a start while it
    deallocates: a probe got a 409 to retry by hand). The node as read afresh: one that
    became Offline meanwhile is started by the caller."""
    node = deps.store.get_node(name)
    if node.state is NodeState.STOPPING:
        node.held = node.held_reason = None  # an admin's start ends an admin's hold
        node.start_requested = reason
        deps.store.put_node(node)  # Conflict: retried from a fresh read
    return node


def _check_max(deps: Deps, starting: list[Node]) -> None:
    """A 409 (before anything starts) when the autoscaler would stop them again at once: their
    group would be above its maxNodes (:func:`autoscaler_notes.over_max`)."""
    if not starting or deps.compute is None:
        return
    groups, nodes = deps.store.list_groups(), deps.store.list_nodes()
    refusal = over_max(starting, groups, nodes, deps.compute.name)
    if refusal is not None:
        raise Refused(refusal, state=NodeState.OFFLINE.value)


DRAIN_CANCELED = "started by an admin while Draining: the drain is canceled, it takes work again"


def _cancel_drain(deps: Deps, name: str) -> Node:
    """A managed node's drain ends: Online again, as :func:`online.bring_online` writes an
    on-prem node's (a fresh read, so a heartbeat's write meanwhile is retried, not a 409)."""
    node = deps.store.get_node(name)
    if node.state is not NodeState.DRAINING:  # its last task ended and it stopped meanwhile
        raise Refused(
            f"node {name} is {node.state}; only an Offline node can be started",
            state=node.state.value,
        )
    node.held = node.held_reason = None  # an admin's start ends an admin's hold
    node.move_to(NodeState.ONLINE, reason=DRAIN_CANCELED, now=deps.clock())
    deps.store.put_node(node)  # Conflict: retried from a fresh read
    return node


ONPREM_STOP = (
    "stopped by an admin: an on-prem machine is not powered off, so the node is drained and "
    "held (Draining until an admin brings it back: hpc node online {name}; to stop its agent, "
    "stop it on the machine)"
)


def stop_nodes(
    deps: Deps, names: Iterable[str], *, reason: str = "stopped by an admin"
) -> list[Node]:
    """Running tasks finish first: a busy VM is Draining and stops once empty. An on-prem
    machine is not powered off: its stop is an admin's drain, held (``Node.held``) across
    agent restarts until an admin brings the node back, as ``hpc node drain``."""
    out = []
    holding = {seat.node for h in deps.store.holdings() for seat in h.hosts}
    for node in named_nodes(deps, names):
        busy = node.name in holding  # any node of a running task, not only its first
        if not ownership.is_managed(node):
            why = ONPREM_STOP.format(name=node.name).replace("stopped by an admin", reason, 1)
            out.append(drain_node(deps, node, reason=why, hold=True))
        elif busy:
            out.append(drain_node(deps, node, reason=reason))
        else:
            out.append(stop_node(deps, node, reason=reason))
    return out


def stop_warnings(deps: Deps, stopped: Iterable[Node]) -> list[str]:
    """For each managed node an admin stopped that the autoscaler will start again to keep
    its group's minNodes, a line saying so and how to keep it stopped."""
    provider = deps.compute.name if deps.compute is not None else None
    vms = [n for n in stopped if ownership.is_managed(n)]
    if provider is None or not vms:
        return []
    groups, nodes = deps.store.list_groups(), deps.store.list_nodes()
    found = (restart_warning(n, groups, nodes, provider) for n in vms)
    return [w for w in found if w is not None]


def stop_node(deps: Deps, node: Node, *, reason: str) -> Node:
    assert deps.compute is not None
    now = deps.clock()
    if node.state in (NodeState.OFFLINE, NodeState.STOPPING):
        if node.start_requested is not None:  # a stop after a start asked while it stopped
            node.start_requested = None
            deps.store.put_node(node)
        return node
    result = deps.compute.deallocate(
        node.name, request_id=f"stop-{node.name}-{now.timestamp():.0f}", now=now
    )
    if isinstance(result, ComputeError) and result.kind is not ErrorKind.NOT_FOUND:
        raise Refused(f"could not stop {node.name}: {result.kind}: {result.message}")
    node.move_to(NodeState.STOPPING, reason=reason, now=now)
    deps.store.put_node(node)
    if not isinstance(result, ComputeError):
        record_operation(deps, result)
    return node


def power_off(deps: Deps, node: Node, *, reason: str) -> None:
    """Deallocate the VM of an Offline node that runs anyway (shared.domain.strayvms): the
    node stays Offline, saying why. A stop of an Offline node otherwise does nothing."""
    assert deps.compute is not None
    now = deps.clock()
    result = deps.compute.deallocate(
        node.name, request_id=f"stop-{node.name}-{now.timestamp():.0f}", now=now
    )
    if isinstance(result, ComputeError):
        if result.kind is ErrorKind.NOT_FOUND:
            return
        raise Refused(f"could not deallocate {node.name}: {result.kind}: {result.message}")
    record_operation(deps, result)
    node.state_reason = reason
    deps.store.put_node(node)


def drain_node(
    deps: Deps, node: Node, *, reason: str = "drained by an admin", hold: bool = False
) -> Node:
    """Draining: no new tasks, what runs finishes. ``hold``: an admin's drain, kept across
    agent restarts until an admin starts the node (``Node.held``)."""
    if node.state is NodeState.DRAINING:
        if hold and (node.held != "drain" or node.held_reason != reason):
            node.held, node.held_reason = "drain", reason  # a new reason replaces the old
            node.state_reason = reason
            deps.store.put_node(node)
        return node
    if node.state is not NodeState.ONLINE:
        raise Refused(
            f"node {node.name} is {node.state}; only an Online node can be drained",
            state=node.state.value,
        )
    node.move_to(NodeState.DRAINING, reason=reason, now=deps.clock())
    if hold:
        node.held, node.held_reason = "drain", reason
    deps.store.put_node(node)
    return node


def drain_nodes(
    deps: Deps, names: Iterable[str], *, reason: str = "drained by an admin"
) -> list[Node]:
    """An admin's drain (``hpc node drain``): held until an admin starts the node again."""
    return [drain_node(deps, node, reason=reason, hold=True) for node in named_nodes(deps, names)]


def offline_nodes(
    deps: Deps, names: Iterable[str], *, reason: str = "taken offline by an admin"
) -> list[Node]:
    """Offline now: what runs there is requeued (no retry used) and killed where it ran, a VM
    is deallocated. Held (``Node.held``): a registration keeps it Offline, the autoscaler
    does not start it, until an admin starts it again."""
    out = []
    for node in named_nodes(deps, names):
        if node.state is NodeState.OFFLINE and (
            node.held != "offline" or node.held_reason != reason
        ):  # held now, or held again with a new reason (Slurm's reason= replaces the old)
            node.held, node.held_reason = "offline", reason
            if node.state_reason != lifecycle.AGENT_STOPPED:  # (that one says its agent is gone)
                node.state_reason = reason  # who held it (a probe read "VM created" still)
            deps.store.put_node(node)
        elif node.state is not NodeState.OFFLINE:
            node.held, node.held_reason = "offline", reason
            node.start_requested = None  # the later action wins
            active = tasks_on(deps, node.name)
            if node.provider not in (None, "onprem") and deps.compute is not None:
                # their holds end when its deallocation is known done (autoscale._poll)
                node.given_up = [(t.job_id, t.id) for t in active if t.node == node.name]
                now = deps.clock()
                off = deps.compute.deallocate(
                    node.name, request_id=f"off-{node.name}-{now.timestamp():.0f}", now=now
                )
                if not isinstance(off, ComputeError):  # replaces a pending start: not failed
                    record_operation(deps, off)
            node.move_to(NodeState.OFFLINE, reason=reason, now=deps.clock())
            deps.store.put_node(node)
            give_up_tasks(deps, node, active)
        out.append(node)
    deps.kick()
    return out


def tasks_on(deps: Deps, name: str) -> list[Task]:
    """The active tasks on node ``name``: those it runs, and multi-node ones that hold it
    beside their first node (an offline gives both up)."""
    return deps.store.active_tasks(node=name) + _holding_beside(deps, name)


def _holding_beside(deps: Deps, name: str) -> list[Task]:
    """Active multi-node tasks that hold ``name`` beside their first node (where their
    command runs and their agent reports them): taken offline, it is given up with them at
    once, as its own tasks are (a probe: such a task kept the node's cores until the
    reconciler's next run, and ran on to its end when the node came back before it)."""
    wanted: dict[int, list[int]] = defaultdict(list)
    for holding in deps.store.holdings():  # a few fields of each active task, not documents
        if any(seat.node == name for seat in holding.hosts[1:]):
            wanted[holding.job_id].append(holding.task_id)
    found = [t for job, ids in wanted.items() for t in deps.store.get_tasks(job, ids)]
    return [t for t in found if t.state in TASK_ACTIVE and t.node != name]


def give_up_tasks(deps: Deps, node: Node, held: list[Task]) -> None:
    """What an Offline node ran is requeued (no retry used) and killed where it ran. Its
    agent may still run them (an on-prem node's agent lives on, a VM runs until deallocated):
    the new attempts wait until their kill is reported, or until a silent agent's lifeline
    has fenced them (chaos probe: a paused agent's tasks ran to their end beside their new
    attempts). Also how a heartbeat finishes an offline cut short (events.py)."""
    until = deps.clock() + online.heartbeat_timeout(deps)
    why = _reason(f"node {node.name} taken offline")
    lose_attempts(deps, held, why, count=False, may_run_until=until)
    deps.send_to_nodes(k for k in map(lifecycle.kill_order, held) if k is not None)


def _reason(text: str) -> Callable[[Task], str]:
    return lambda _task: text


def remove_nodes(deps: Deps, names: Iterable[str]) -> list[str]:
    """Delete Offline nodes (and their VMs); an on-prem node only once its agent stopped
    (:func:`removal_refusal`). Every node is checked before any is removed."""
    nodes = named_nodes(deps, names)
    now, timeout = deps.clock(), online.heartbeat_timeout(deps)
    for node in nodes:
        refusal = removal_refusal(node, now=now, timeout=timeout)
        if refusal is not None:
            raise Refused(refusal)
    for node in nodes:
        if node.provider not in (None, "onprem") and deps.compute is not None:
            now = deps.clock()
            deps.compute.delete(node.name, request_id=f"delete-{node.name}", now=now)
        deps.store.delete_node(node)
    return [n.name for n in nodes]


def set_node_groups(deps: Deps, names: Iterable[str], groups: Iterable[str]) -> list[Node]:
    """An admin puts nodes in these groups (the control plane owns them; an agent's
    registration never changes them). Names match case-insensitively; running tasks stay."""
    wanted = list(groups)
    out = []
    for node_name in list(names):

        def write(node_name: str = node_name) -> Node:
            node = deps.store.get_node(node_name)  # NotFound: 404 naming it
            groups = deps.store.list_groups()
            chosen = ownership.admin_groups(node, wanted, groups)
            _room_for(deps, node, chosen, groups)
            node.groups = chosen
            deps.store.put_node(node)
            return node

        out.append(deps.retry(write))
    if not out:
        raise InvalidRequest("name at least one node")
    deps.kick()  # queued work may fit the new groups
    return out


def _room_for(deps: Deps, node: Node, chosen: list[str], groups: list[NodeGroup]) -> None:
    """A managed group's max nodes bounds its members, as ``hpc node add`` does."""
    bounded = [
        g for g in groups
        if g.name in chosen and g.name not in node.groups and g.provider
    ]  # fmt: skip
    if not bounded:
        return
    nodes = deps.store.list_nodes()  # one read, whatever the number of groups
    for group in bounded:
        members = sum(1 for n in nodes if group.name in n.groups)
        if members >= group.max_nodes:
            raise Refused(beyond_max(group, members, 1))
