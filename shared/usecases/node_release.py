"""``hpc node release``: lift an admin's hold on Offline VMs without starting them, so the
autoscaler may start them when work needs them (Slurm's ``scontrol update state=resume``
of a powered-down node). A probe's cost freeze (``hpc node offline --group AzureNodes``) could
be lifted only by ``hpc node online``, which booted every VM, billing until they idled out.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.domain import ownership
from shared.domain.cluster import Node
from shared.domain.states import NodeState
from shared.errors import Refused
from shared.usecases.deps import Deps
from shared.usecases.nodes import named_nodes

RELEASED = "its admin hold was released: Offline, the autoscaler starts it when work needs it"


def release_nodes(deps: Deps, names: Iterable[str]) -> list[Node]:
    """Each named VM held Offline, unheld and left Offline; every node is checked before any
    is changed (a 409 changes nothing): an on-prem node or a VM not Offline is refused,
    saying what brings it back (a start), as a release would mean nothing there."""
    nodes = named_nodes(deps, names)
    for node in nodes:
        refusal = _refusal(node)
        if refusal is not None:
            raise Refused(refusal, state=node.state.value)
    return [deps.retry(_release, deps, node.name) for node in nodes]


def _refusal(node: Node) -> str | None:
    if not ownership.is_managed(node):
        return (
            f"node {node.name} is on-prem: nothing starts it but its agent; "
            f"hpc node online {node.name} brings it back"
        )
    if node.state is not NodeState.OFFLINE:
        return f"node {node.name} is {node.state}; only an Offline VM's hold is released " + (
            f"without a start (hpc node online {node.name} brings a Draining one back)"
            if node.state is NodeState.DRAINING
            else f"without a start: {_NOT_HELD.get(node.state, 'it holds nothing to release')}"
        )
    return None


_NOT_HELD = {
    NodeState.STARTING: "it is starting already, with no hold",
    NodeState.ONLINE: "it runs, with no hold",
    NodeState.STOPPING: "it is stopping; release it once Offline if an admin's offline holds it",
    NodeState.UNREACHABLE: "its agent is not heard; the autoscaler deallocates it in time",
}
"""What a release of a VM in these states would find: no hold of an Offline VM (a probe's
release of a Starting VM read "hpc node online ... brings a Draining one back")."""


def _release(deps: Deps, name: str) -> Node:
    """From a fresh read (a Conflict is retried): the hold lifted, the node left Offline."""
    node = deps.store.get_node(name)
    if node.held is None or node.state is not NodeState.OFFLINE:
        return node
    node.held = node.held_reason = None
    node.state_reason = RELEASED
    deps.store.put_node(node)
    return node
