"""Start a managed node: Offline -> Starting, its VM's start begun at the provider.

The provider's start is begun before the node's write, so a start that loses the write's
race has begun a VM that someone must answer for: another start (the node is Starting or
Online: theirs, nothing to undo), an admin's stop or offline (the later action wins: the
VM is deallocated again), or a removal of the node (its record is gone: the VM is deleted,
or it would run with no node to stop it)."""

from __future__ import annotations

import logging
from datetime import datetime

from shared.domain.cluster import Node
from shared.domain.states import NodeState
from shared.errors import Conflict, NotFound, Refused
from shared.ports.compute import ComputeError, ErrorKind, VmSpec
from shared.usecases.deps import Deps
from shared.usecases.operations import record_operation

log = logging.getLogger(__name__)

STARTED_ELSEWHERE = frozenset({NodeState.STARTING, NodeState.ONLINE})
"""A node found in these states after a lost write was started by someone else (the
autoscaler and an admin, two ``hpc node start``, an HTTP retry): its VM is theirs too."""


class StartRefused(Conflict):
    """The provider refused a start at once (quota, SKU, throttling...): nothing began."""

    def __init__(self, node: str, error: ComputeError, *, advise: bool = False) -> None:
        advice = _advice(error) if advise else ""
        super().__init__(f"could not start {node}: {error.kind}: {error.message}{advice}")
        self.node, self.error = node, error


def _advice(error: ComputeError) -> str:
    """What an admin does next, where the provider's words do not say (a probe read only
    "Conflict: azure-2 is being deallocated" after a stop: the node was Offline, its VM
    not). Not in the autoscaler's log: it tries again at its next run by itself."""
    if error.kind is ErrorKind.CONFLICT:
        return (
            "; its VM is busy with another operation (a stop not finished): start it once that ends"
        )
    if error.kind is ErrorKind.THROTTLED and error.retry_after_s:
        return f"; try again in {error.retry_after_s:.0f} s"
    return ""


def start_node(deps: Deps, node: Node, *, reason: str) -> Node:
    """Offline -> Starting, and the provider's start begun (the VM is created again if the
    provider lost it, as the local provider does when the control plane restarts). A node
    removed meanwhile raises NotFound, its VM deleted again."""
    assert deps.compute is not None
    now = deps.clock()
    request = f"start-{node.name}-{now.timestamp():.0f}"
    result = deps.compute.start(node.name, request_id=request, now=now)
    if isinstance(result, ComputeError) and result.kind is ErrorKind.NOT_FOUND:
        spec = VmSpec(
            name=node.name,
            group=node.groups[0],
            cores=node.cores,
            size=node.size,
            spot=node.spot,
            memory_mb=node.memory_mb,
        )
        deps.compute.create(spec, request_id=f"create-{node.name}-{now.timestamp():.0f}", now=now)
        result = deps.compute.start(node.name, request_id=request + "-again", now=now)
    if isinstance(result, ComputeError):
        raise StartRefused(node.name, result)
    read = (node.state_time, node.state_reason)
    node.start_requested = None  # started: an admin's start asked while it stopped is done
    node.move_to(NodeState.STARTING, reason=reason, now=now)
    try:
        try:
            deps.store.put_node(node)
        except Conflict:
            node = _started_anew(deps, node, read, reason, request, now)
    except NotFound:
        _delete_orphan(deps, node.name, request, now)
        raise
    record_operation(deps, result)
    return node


def _started_anew(
    deps: Deps, node: Node, read: tuple[object, object], reason: str, request: str, now: datetime
) -> Node:
    """The node was written since it was read. Started by someone else (Starting, Online):
    theirs, returned as it is. Only a heard heartbeat (Offline, unheld, as read): it starts
    all the same. Otherwise an admin's stop or offline raced this start, and the later action
    wins: the VM begun here is deallocated again (a probe saw "Offline" printed, and the node
    Starting, started by an admin, 3 s later). NotFound: the node was removed."""
    assert deps.compute is not None
    fresh = deps.store.get_node(node.name)
    if fresh.state in STARTED_ELSEWHERE:
        return fresh  # undoing it deallocated the other start's VM under a Starting node
    quiet = (fresh.state_time, fresh.state_reason) == read
    if fresh.state is NodeState.OFFLINE and fresh.held is None and quiet:
        fresh.move_to(NodeState.STARTING, reason=reason, now=now)
        deps.store.put_node(fresh)  # a second race: Conflict, the VM runs, repair stops it
        return fresh
    undo = deps.compute.deallocate(node.name, request_id=request + "-undone", now=now)
    if not isinstance(undo, ComputeError):
        record_operation(deps, undo)
    raise Refused(
        f"node {node.name} was changed ({fresh.state}: {fresh.state_reason}) while it was "
        "being started; the later action wins: not started",
        state=fresh.state.value,
    )


def _delete_orphan(deps: Deps, name: str, request: str, now: datetime) -> None:
    """The node was removed while it was being started: the start may have created its VM
    again (the removal had deleted it), which no record owns now, so nothing would ever
    stop it. Deleted (a VM already gone is no error); a refused delete is logged."""
    assert deps.compute is not None
    gone = deps.compute.delete(name, request_id=request + "-orphan", now=now)
    if isinstance(gone, ComputeError) and gone.kind is not ErrorKind.NOT_FOUND:
        log.error(
            "node %s was removed while it was being started; its VM could not be "
            "deleted (%s: %s): delete it at the provider",
            name,
            gone.kind,
            gone.message,
        )
