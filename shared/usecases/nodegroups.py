"""Node groups: create one and change its settings (``hpc nodegroup create | set``); find
the group a name means, whatever its case. Apart from :mod:`shared.usecases.nodes`, which
adds, starts, stops and removes the nodes themselves."""

from __future__ import annotations

import re
from typing import Any

from shared.domain.cluster import NodeGroup
from shared.domain.groupnames import canonical_group
from shared.domain.groupsettings import apply_settings, check_bounds
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.usecases.deps import Deps
from shared.usecases.idle_policy import check_group


def group_of(deps: Deps, name: str) -> NodeGroup:
    """The group ``name`` means, matched case-insensitively (groupnames)."""
    groups = {g.name: g for g in deps.store.list_groups()}
    found = canonical_group(name, groups)
    if found is not None:
        return groups[found]
    raise NotFound(f"node group {name!r} does not exist (hpc nodegroup list)")


def create_group(deps: Deps, name: str, **settings: Any) -> NodeGroup:
    """The store refuses a name that exists in any case atomically (``put_group``); the
    check before it is for the message, and is made again when a concurrent create won."""
    _refuse_existing(deps, name)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", name):
        raise InvalidRequest(f"node group name {name!r}: letters, digits, _ . - (64 at most)")
    group = NodeGroup(name=name)
    _apply(deps, group, settings)
    try:
        deps.store.put_group(group)
    except Conflict:
        _refuse_existing(deps, name)  # say which spelling won
        raise
    return group


def _refuse_existing(deps: Deps, name: str) -> None:
    existing = canonical_group(name, [g.name for g in deps.store.list_groups()])
    if existing is not None:
        same = "" if existing == name else f" as {existing} (names match whatever the case)"
        raise Conflict(
            f"node group {name!r} exists already{same}: change it with hpc nodegroup set"
        )


def set_group(deps: Deps, name: str, **settings: Any) -> NodeGroup:
    def write() -> NodeGroup:
        group = group_of(deps, name)
        before = group.provider
        _apply(deps, group, settings)
        if group.provider != before:
            _no_members(deps, group, before)
        deps.store.put_group(group)
        return group

    return deps.retry(write)


def _no_members(deps: Deps, group: NodeGroup, before: str | None) -> None:
    """A group's provider says what its nodes are (VMs of that provider, or on-prem
    machines): it changes only while the group has none, or its nodes would be in a group
    that manages them as something they are not."""
    members = [n.name for n in deps.store.list_nodes() if group.name in n.groups]
    if members:
        was, now = before or "on-prem", group.provider or "on-prem"
        raise Conflict(
            f"node group {group.name} has {len(members)} node(s) ({', '.join(members[:5])}): "
            f"its provider changes ({was} -> {now}) only while it has none; remove or "
            "regroup them first (hpc node remove | hpc node set)"
        )


def _apply(deps: Deps, group: NodeGroup, settings: dict[str, Any]) -> None:
    provider = deps.compute.name if deps.compute else None
    apply_settings(group, settings, provider)
    check_group(group)
    check_bounds(group, settings, provider)
