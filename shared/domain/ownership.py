"""Who decides a node's groups, cores and provider: the control plane, not the agent.

An agent names groups and cores in every RegisterNode, but only a name never seen before
takes them (an on-prem machine joining: :func:`first_record`). After that:

- groups and provider change only by an admin (``hpc node set NAME --group G``:
  :func:`admin_groups`), never by a registration;
- an on-prem node's cores follow what its agent reports at each registration, as HPC
  Pack takes a node's reported cores (the machine may really have changed);
- a managed node (a ``local`` or ``azure`` VM that ``hpc node add`` created) keeps the
  cores of its VM size whatever its agent says.
- a node's memory, a fact of the machine (a VM's too), follows what its agent reports at
  each registration; an agent that reports none leaves it as it was.

A managed group's nodes are the provider's VMs, so an on-prem machine joins none, and a
managed node always keeps a group of its own provider (the autoscaler and ``hpc node
start`` find its VM through it). Pure: no store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.domain.cluster import Node, NodeGroup
from shared.domain.groupnames import canonical_groups, unknown_groups
from shared.domain.messages import RegisterNode
from shared.errors import Conflict, InvalidRequest, NotFound

ONPREM = "onprem"
"""``Node.provider`` of a machine whose agent joins by itself (not created by a provider)."""


def is_managed(node: Node) -> bool:
    """A VM of a compute provider (``local``, ``azure``): created by ``hpc node add``."""
    return node.provider not in (None, "", ONPREM)


def first_record(
    req: RegisterNode, groups: Sequence[NodeGroup], names_taken: Iterable[str] = ()
) -> Node | str:
    """The record of a node name registered for the first time, or why it is refused.

    An on-prem machine with the cores its agent reports and the groups it proposes, each
    in its stored spelling (a new name is kept as given: the caller creates the group).
    A name that differs only by case from a node's (``names_taken``) is refused: node names
    are host names, one whatever their case, as group names are (a probe's ``--name
    ONPREM-1`` beside onprem-1 made a second node, and ``hpc node view Onprem-1`` showed it)."""
    same = next((n for n in names_taken if n.lower() == req.node.lower() and n != req.node), None)
    if same is not None:
        return (
            f"node {req.node!r}: node {same!r} exists, and node names are one whatever their "
            f"case (host names): run this agent as --name {same}, or give it another name"
        )
    names = canonical_groups(req.groups, [g.name for g in groups])
    managed = {g.name: g.provider for g in groups if g.provider}
    claimed = [name for name in names if name in managed]
    if claimed:
        group = claimed[0]
        return (
            f"node {req.node!r}: node group {group} is managed by the {managed[group]} "
            f"provider, whose nodes are VMs created by `hpc node add --group {group}`; "
            "start this agent with an on-prem group (e.g. --group OnPremNodes)"
        )
    return Node(name=req.node, groups=names, cores=req.cores, provider=ONPREM)


def registered_cores(node: Node, req: RegisterNode) -> int:
    """The node's cores once its agent registers: an on-prem machine's as reported, a
    managed node's as the control plane chose them (its VM size)."""
    return node.cores if is_managed(node) else req.cores


def admin_groups(node: Node, names: Iterable[str], groups: Sequence[NodeGroup]) -> list[str]:
    """The groups an admin gives a node, in their stored spelling (matched whatever the
    case, repeats dropped). Raises InvalidRequest (none given), NotFound (no such group)
    or Conflict (an on-prem node in a managed group, a managed node without a group of
    its provider). A managed node's first group is one of its provider's."""
    names = list(names)
    if not names:
        raise InvalidRequest(f"node {node.name}: give at least one node group (--group G)")
    known = [g.name for g in groups]
    missing = unknown_groups(names, known)
    if missing:
        raise NotFound(
            f"node group {missing[0]!r} does not exist: create it first "
            f"(hpc nodegroup create {missing[0]}); known groups: {', '.join(sorted(known))}"
        )
    chosen = canonical_groups(names, known)
    provider = {g.name: g.provider for g in groups}
    if not is_managed(node):
        for name in chosen:
            if provider[name]:
                raise Conflict(
                    f"node {node.name} is on-prem and node group {name} is managed by the "
                    f"{provider[name]} provider (its nodes are VMs `hpc node add` creates)"
                )
        return chosen
    own = [name for name in chosen if provider[name] == node.provider]
    foreign = [name for name in chosen if provider[name] and provider[name] != node.provider]
    if foreign:
        raise Conflict(
            f"node {node.name} is a {node.provider} VM and node group {foreign[0]} is managed "
            f"by the {provider[foreign[0]]} provider"
        )
    if not own:
        mine = sorted(g.name for g in groups if g.provider == node.provider)
        raise Conflict(
            f"node {node.name} is a {node.provider} VM: keep it in a node group its provider "
            f"manages ({', '.join(mine) or 'none exists'}), beside any other"
        )
    return [own[0], *(name for name in chosen if name != own[0])]
