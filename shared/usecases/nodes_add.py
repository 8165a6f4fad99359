"""Add managed nodes (``hpc node add``): VMs created and left deallocated, Offline nodes until
started. :func:`add_nodes` checks and chooses the names, then :func:`make_nodes` makes them;
between the two an ``Idempotency-Key``'s record keeps the names
(:func:`shared.usecases.idempotency.add_nodes_once`), so a retry of a request that died
half-way makes the nodes it had not made yet, and answers all of them."""

from __future__ import annotations

import re
import uuid
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
    request: str | None = None,
) -> list[Node]:
    """Create ``count`` VMs for the group, left deallocated: Offline nodes until started.
    ``spot``: Spot VMs (Azure may evict them; their tasks are then requeued at once). They
    have the group's nodeMemoryMb, unless ``size`` is another than the group's (unknown
    then: their agents report it). ``reserve`` is given the names once every check passed,
    before any node or VM is made, and again if one must change (:func:`make_nodes`).
    ``request``: this add's id (a retry's is its first request's); None: a new one."""
    if not 1 <= count <= 1000:
        raise InvalidRequest(f"count must be 1-1000, got {count}")
    group = group_of(deps, group_name)
    _managed(deps, group)
    nodes = deps.store.list_nodes()
    existing = {n.name for n in nodes}
    members = [n for n in nodes if group.name in n.groups]
    if len(members) + count > group.max_nodes:  # maxNodes 0: none (groupsettings)
        raise Conflict(beyond_max(group, len(members), count))
    names = _free_names(group.name, existing, count)
    if reserve is not None:
        reserve(names)
    asked = NodeAdd(group.name, count, cores, size, spot)
    request = request or uuid.uuid4().hex
    return make_nodes(deps, asked, names, group=group, request=request, rename=reserve)


def make_nodes(
    deps: Deps,
    asked: NodeAdd,
    names: list[str],
    *,
    group: NodeGroup | None = None,
    request: str | None = None,
    rename: Callable[[list[str]], None] | None = None,
) -> list[Node]:
    """The nodes ``names`` of ``asked``'s group, made where missing. One this request made
    (``request``; one that died after it) is answered as it is; while it is still as an add
    leaves it, its VM's create is asked again, which makes a VM the dead request did not
    reach and changes nothing of one it did (a create is idempotent: same name, same spec).
    A name another add took meanwhile (both chose it from the same list) is replaced by a
    free one, told to ``rename`` first (the key's record answers a retry with the names
    made). ``group``: the group as the caller just read and checked it (None: read it)."""
    if group is None:
        group = group_of(deps, asked.group)
        _managed(deps, group)
    names = list(names)
    assert deps.compute is not None
    # The group's nodeMemoryMb is its size's: a VM of another size has its own, unknown
    # until its agent reports it.
    usual = group.size or deps.settings.azure_vm_size
    size = asked.size
    memory_mb = group.node_memory_mb if size is None or size.lower() == usual.lower() else None
    added: list[Node] = []
    now = deps.clock()

    def new_node(name: str) -> Node:
        assert deps.compute is not None
        return Node(
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
            added_by=request,
        )

    for i in range(len(names)):
        node, new = _own(deps, group, names, i, request, rename, new_node)
        name = names[i]
        if not new and (node.state is not NodeState.OFFLINE or node.state_reason != ADDED):
            added.append(node)  # made, and moved on since: nothing to make
            continue
        if new:
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


def _own(
    deps: Deps,
    group: NodeGroup,
    names: list[str],
    i: int,
    request: str | None,
    rename: Callable[[list[str]], None] | None,
    new_node: Callable[[str], Node],
) -> tuple[Node, bool]:
    """The node ``names[i]`` as this request may use it, and whether it made it now: this
    request's own (one that died after making it), else made under that name. A name
    another add holds (both chose it from the same list) is replaced in ``names`` by a free
    one, told to ``rename`` before it is made, if the group's maxNodes still has room for
    all of this request's nodes (Conflict if not: the other add was first)."""
    while True:
        try:
            node = deps.store.get_node(names[i])
        except NotFound:
            node = new_node(names[i])
            try:
                deps.store.put_node(node)  # a create: Conflict if another add made it first
            except Conflict:
                continue  # read it again: whose it is decides
            return node, True
        if node.added_by is None or request is None or node.added_by == request:
            return node, False  # this request's (or made before adds said whose: as before)
        # Another add chose from the same list: both passed maxNodes on it. Count again.
        nodes = deps.store.list_nodes()
        others = [n for n in nodes if group.name in n.groups and n.added_by != request]
        if len(others) + len(names) > group.max_nodes:
            made = ", ".join(names[:i]) or "none"
            raise Conflict(
                f"another node add took node group {group.name}'s room meanwhile: "
                f"{beyond_max(group, len(others) + i, len(names) - i)} (added by this "
                f"request: {made})"
            )
        [names[i]] = _free_names(group.name, {n.name for n in nodes} | set(names), 1)
        if rename is not None:
            rename(names)


def _free_names(group: str, taken: set[str], count: int) -> list[str]:
    """The first ``count`` names ``<prefix>-<i>`` of the group not in ``taken``, in one pass."""
    prefix, i, names = _prefix(group), 0, list[str]()
    while len(names) < count:
        i += 1
        if f"{prefix}-{i}" not in taken:
            names.append(f"{prefix}-{i}")
    return names


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
