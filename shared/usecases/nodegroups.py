"""Node groups: create one, change its settings and delete it (``hpc nodegroup create | set |
delete``); find the group a name means, whatever its case. Apart from
:mod:`shared.usecases.nodes`, which adds, starts, stops and removes the nodes themselves."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from shared.domain.cluster import DEFAULT_GROUPS, NodeGroup
from shared.domain.groupnames import canonical_group
from shared.domain.groupsettings import apply_settings, check_bounds
from shared.domain.states import JobState
from shared.errors import Conflict, InvalidRequest, NotFound, Refused
from shared.usecases import templates
from shared.usecases.autoscale_memory import SAID_FIELD, STATE_KEY
from shared.usecases.deps import Deps, all_jobs
from shared.usecases.idle_policy import MEMORY_FIELD, check_group

SHOWN = 5
"""Nodes or jobs a refused delete names (then "and N more")."""


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
    _apply(deps, group, settings, creating=True)
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

    changed = deps.retry(write)
    deps.retry(_forget, deps, changed.name, said_only=True)
    return changed


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


def _apply(
    deps: Deps, group: NodeGroup, settings: dict[str, Any], *, creating: bool = False
) -> None:
    provider = deps.compute.name if deps.compute else None
    apply_settings(group, settings, provider)
    check_group(group)
    check_bounds(group, settings, provider, creating=creating)


def delete_group(deps: Deps, name: str) -> str:
    """Delete a group with no nodes that no Queued or Running job names (a typo'd ``hpc agent
    run --group OnPremNode`` made one for good before); the name it had. Refused (409,
    saying what to do) otherwise, and for the default groups, which every store open
    creates again. The autoscaler's memory of it goes too."""

    def attempt() -> str:
        group = group_of(deps, name)  # NotFound: 404
        if group.name in {g.name for g in DEFAULT_GROUPS}:
            raise Refused(
                f"node group {group.name} is one of the cluster's default groups (as in HPC "
                "Pack): it cannot be deleted; give it no nodes instead"
            )
        members = [n.name for n in deps.store.list_nodes() if group.name in n.groups]
        if members:
            raise Refused(
                f"node group {group.name} has {len(members)} node(s) ({_some(members)}): move "
                f"them to another group (hpc node set NAME --group G) or remove them (hpc node "
                "remove NAME) first",
                nodes=members,
            )
        naming = [
            t.name
            for t in templates.list_templates(deps)
            if group.name.lower()
            in {g.lower() for g in [*(t.node_groups or []), *(t.allowed_node_groups or [])]}
        ]
        if naming:  # a probe's deleted group left its Default template refusing every job
            raise Refused(
                f"node group {group.name} is named by template(s) {', '.join(naming)}: take it "
                f"out of their nodeGroups and allowedNodeGroups (hpc template delete and set "
                "them again) first",
                templates=naming,
            )
        jobs = _jobs_naming(deps, group.name)
        if jobs:
            raise Refused(
                f"node group {group.name} is named by {len(jobs)} Queued or Running job(s) "
                f"({_some([str(j) for j in jobs])}): wait for them to end, or cancel them "
                "(hpc job cancel ID) first",
                jobs=jobs,
            )
        deps.store.delete_group(group)  # Conflict if it changed meanwhile: tried again
        joined = [n.name for n in deps.store.list_nodes() if group.name in n.groups]
        if joined:  # a node was added to it between the check and the delete (review)
            restore_group(deps, group)
            raise Refused(
                f"node group {group.name} got node(s) while it was being deleted "
                f"({_some(joined)}): it is kept; move or remove them first",
                nodes=joined,
            )
        return group.name

    deleted = deps.retry(attempt)
    deps.retry(_forget, deps, deleted)
    return deleted


def restore_group(deps: Deps, group: NodeGroup) -> None:
    """Put back a group deleted under a node added to it meanwhile (an add writes the node,
    not the group, so the delete's ETag could not see it): its node stays managed by its
    settings, not orphaned with a VM. A delete deletes and then lists the nodes; an add
    (:func:`shared.usecases.nodes.add_nodes`) writes its node and then reads the group: one
    of the two sees the other. The delete that sees a node puts the group back and is
    refused; the add that finds the group gone deletes its node and fails (the delete was
    acknowledged: a group must not come back after a delete said it was gone)."""
    with contextlib.suppress(Conflict):  # already back (the add put it back first)
        deps.store.put_group(group.model_copy(update={"etag": None}))


def _some(names: list[str]) -> str:
    more = len(names) - SHOWN
    return ", ".join(names[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def _jobs_naming(deps: Deps, group: str) -> list[int]:
    """The ids of the Queued and Running jobs whose node groups include ``group``."""
    folded = group.casefold()
    jobs = all_jobs(deps.store, [JobState.QUEUED, JobState.RUNNING])
    return sorted(j.id for j in jobs if any(g.casefold() == folded for g in j.node_groups))


def _forget(deps: Deps, group: str, *, said_only: bool = False) -> None:
    """Drop the autoscaler's memory of a deleted group (backoff, last grow, what it said,
    its idle policy's forecast), so a group created later under the name starts afresh.
    Harmless if a run writes it back meanwhile: the autoscaler decides, and the pending
    reasons read, only for groups that exist. ``said_only``: a changed group's last notes
    alone (they may name the setting just changed, "below GrowThreshold 3"; a probe's task
    still quoted it after the admin set 1); its next run says what holds."""
    try:
        meta = deps.store.get_meta(STATE_KEY)
    except NotFound:
        return
    data = meta.data
    places = [data.get(SAID_FIELD)]
    if not said_only:
        places += [data.get("groups"), (data.get(MEMORY_FIELD) or {}).get("groups")]
    changed = False
    for place in places:
        if isinstance(place, dict) and group in place:
            del place[group]
            changed = True
    if changed:
        deps.store.put_meta(meta)


def set_warnings(deps: Deps, group: NodeGroup) -> list[str]:
    """What an admin should know after a change: a group left with more nodes than its
    maxNodes (a probe's ``--max 2`` beside 5 nodes said nothing, and node adds were then
    refused)."""
    if group.provider is None:
        return []
    said = [w for w in [idle_warning(group)] if w is not None]
    members = [n.name for n in deps.store.list_nodes() if group.name in n.groups]
    if len(members) <= group.max_nodes:
        return said
    extra = len(members) - group.max_nodes
    up = (
        f"at most {group.max_nodes} are up at once (the autoscaler stops the rest once idle)"
        if group.autoscale  # autoscale off: an admin's starts are not capped (an admin probe)
        else "its autoscale is off, so an admin may still start them all"
    )
    return [
        *said,
        f"{group.name} has {len(members)} nodes, {extra} more than its maxNodes "
        f"{group.max_nodes}: {up}, and hpc node add is refused until {extra} are removed "
        f"(hpc node remove NAME) or maxNodes is raised",
    ]


def idle_warning(group: NodeGroup) -> str | None:
    """A fixed idle time of 0 (ShrinkInterval 0, or ShrinkIdleTimes 0) stops a VM the moment
    its last task ends: jobs that come a few seconds apart each boot VMs again (a probe's
    four jobs 9 s apart restarted the same VMs within 25 s). Allowed (a test rig may want
    it), but said."""
    if not group.autoscale or group.idle_policy not in (None, "fixed"):
        return None
    if group.shrink_interval_s * group.shrink_idle_times > 0:
        return None
    return (
        f"{group.name} stops a VM as soon as it is idle (ShrinkInterval "
        f"{group.shrink_interval_s:g} s x ShrinkIdleTimes {group.shrink_idle_times}): work "
        "that comes a few seconds apart boots VMs again each time; a VM bills its boot, so "
        "an idle time of a boot delay or more usually costs less (--shrink-interval 60)"
    )
