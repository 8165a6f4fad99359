"""Add managed nodes (``hpc node add``): VMs created and left deallocated, Offline nodes until
started. :func:`add_nodes` checks and chooses the names, then :func:`make_nodes` makes them;
between the two an ``Idempotency-Key``'s record keeps the names
(:func:`shared.usecases.idempotency.add_nodes_once`), so a retry of a request that died
half-way makes the nodes it had not made yet, and answers all of them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from shared.domain.cluster import Node, NodeGroup
from shared.domain.states import NodeState
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.ports.compute import ComputeError, VmSpec
from shared.usecases.deps import Deps
from shared.usecases.nodegroups import group_of
from shared.usecases.operations import record_operation

ADDED = "added: VM created, deallocated"
"""A new node's state reason, until anything else happens to it."""


@dataclass(frozen=True)
class NodeAdd:
    """What one node add asks for (``POST /api/nodes``)."""

    group: str
    count: int
    cores: int | None = None
    size: str | None = None
    spot: bool = False


def add_nodes(
    deps: Deps,
    group_name: str,
    count: int,
    *,
    cores: int | None = None,
    size: str | None = None,
    spot: bool = False,
    reserve: Callable[[list[str]], None] | None = None,
) -> list[Node]:
    """Create ``count`` VMs for the group, left deallocated: Offline nodes until started.
    ``spot``: Spot VMs (Azure may evict them; their tasks are then requeued at once). They
    have the group's nodeMemoryMb, unless ``size`` is another than the group's (unknown
    then: their agents report it). ``reserve`` is given the names once every check passed,
    before any node or VM is made."""
    if not 1 <= count <= 1000:
        raise InvalidRequest(f"count must be 1-1000, got {count}")
    group = group_of(deps, group_name)
    _managed(deps, group)
    nodes = deps.store.list_nodes()
    existing = {n.name for n in nodes}
    members = [n for n in nodes if group.name in n.groups]
    if len(members) + count > group.max_nodes:  # maxNodes 0: none (groupsettings)
        raise Conflict(beyond_max(group, len(members), count))
    prefix, i, names = _prefix(group.name), 0, list[str]()
    while len(names) < count:
        i += 1
        if f"{prefix}-{i}" not in existing:
            names.append(f"{prefix}-{i}")
    if reserve is not None:
        reserve(names)
    return make_nodes(deps, NodeAdd(group.name, count, cores, size, spot), names, group=group)


def make_nodes(
    deps: Deps, asked: NodeAdd, names: list[str], *, group: NodeGroup | None = None
) -> list[Node]:
    """The nodes ``names`` of ``asked``'s group, made where missing. One that exists (made
    by a request that died after it) is answered as it is; while it is still as an add
    leaves it, its VM's create is asked again, which makes a VM the dead request did not
    reach and changes nothing of one it did (a create is idempotent: same name, same spec).
    ``group``: the group as the caller just read and checked it (None: read it here)."""
    if group is None:
        group = group_of(deps, asked.group)
        _managed(deps, group)
    assert deps.compute is not None
    # The group's nodeMemoryMb is its size's: a VM of another size has its own, unknown
    # until its agent reports it.
    usual = group.size or deps.settings.azure_vm_size
    size = asked.size
    memory_mb = group.node_memory_mb if size is None or size.lower() == usual.lower() else None
    added: list[Node] = []
    now = deps.clock()
    for name in names:
        try:
            node = deps.store.get_node(name)
        except NotFound:
            node = None
        if node is not None and (node.state is not NodeState.OFFLINE or node.state_reason != ADDED):
            added.append(node)  # made, and moved on since: nothing to make
            continue
        new = node is None
        if node is None:
            node = Node(
                name=name,
                groups=[group.name],
                cores=asked.cores or group.node_cores,
                provider=deps.compute.name,
                size=size or group.size,
                memory_mb=memory_mb,
                spot=asked.spot,
                state=NodeState.OFFLINE,
                state_reason=ADDED,
                state_time=now,
            )
            deps.store.put_node(node)
            try:
                group_of(deps, group.name)
            except NotFound:  # deleted since it was read, and the delete was acknowledged:
                deps.store.delete_node(node)  # the add loses (before any VM is made)
                raise NotFound(
                    f"node group {group.name} was deleted while nodes were added to it: "
                    f"{_counted(len(added))} added before; create the group again to add more"
                ) from None
        spec = VmSpec(
            name=name,
            group=group.name,
            cores=node.cores,
            size=node.size,
            spot=node.spot,
            memory_mb=node.memory_mb,
        )
        result = deps.compute.create(spec, request_id=f"create-{name}", now=now)
        if isinstance(result, ComputeError):
            if new:
                deps.store.delete_node(node)
            raise Conflict(f"could not create VM {name}: {result.kind}: {result.message}")
        record_operation(deps, result)
        added.append(node)
    return added


def _managed(deps: Deps, group: NodeGroup) -> None:
    if deps.compute is None or group.provider != deps.compute.name:
        raise Conflict(
            f"node group {group.name!r} is not managed by the {getattr(deps.compute, 'name', 'no')} "
            "provider: on-prem nodes join by running `hpc agent run`; make a group managed with "
            f"`hpc nodegroup set {group.name} --provider local`"
        )


def _prefix(group: str) -> str:
    base = re.sub(r"nodes?$", "", group, flags=re.IGNORECASE) or group
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "node"


def beyond_max(group: NodeGroup, members: int, count: int) -> str:
    """Why ``count`` more nodes do not fit ``group``'s maxNodes, and the flag that raises it."""
    most = f"maxNodes is {group.max_nodes}" + (
        " (0: the group may have no node)" if not group.max_nodes else ""
    )
    return (
        f"node group {group.name} has {members} node(s) and its {most}: {count} more would "
        f"exceed it; raise it with `hpc nodegroup set {group.name} --max "
        f"{members + count}`"
    )


def _counted(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"
