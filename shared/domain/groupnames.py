"""Node group names match case-insensitively, and are stored as the group spells itself.

HPC Pack treats ``AzureNodes`` and ``azurenodes`` as one group. Here the name a user or
agent gives is resolved at the edges (submit, ``hpc node add``/``set``, ``hpc nodegroup``,
an agent's first registration) to the stored group's own spelling, so everything inside
(scheduler, autoscaler, pending reasons) compares names exactly. Pure: no store.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches


def canonical_group(name: str, known: Iterable[str]) -> str | None:
    """The known group ``name`` means, in its stored spelling; None if it names none.

    An exact match wins over a case-insensitive one (two stored spellings cannot both
    exist once creation refuses a name that differs only by case, but old data may)."""
    folded, found = name.casefold(), None
    for group in known:
        if group == name:
            return group
        if found is None and group.casefold() == folded:
            found = group
    return found


def canonical_groups(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """Each name in its stored spelling (an unknown one kept as given, for the caller to
    refuse or create), in the order given, without repeats that differ only by case."""
    known = list(known)
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        group = canonical_group(name, known) or name
        if group.casefold() not in seen:
            seen.add(group.casefold())
            out.append(group)
    return out


def unknown_groups(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """The names that match no known group, whatever their case."""
    known = list(known)
    return [name for name in names if canonical_group(name, known) is None]


def new_groups_note(node: str, created: list[str], known: Iterable[str]) -> str:
    """What an agent whose ``--group`` created groups is told: a misspelt name (one close to
    a known group's, e.g. ``OnPremNode``) makes a group of one node silently otherwise."""
    spelling = {k.casefold(): k for k in known}
    which = ", ".join(created)
    near = []
    for name in created:
        close = get_close_matches(name.casefold(), list(spelling), n=1)
        if close:
            near.append(f"{spelling[close[0]]} for {name}?")
    hint = f" (did you mean: {'; '.join(near)})" if near else ""
    plural = "s" if len(created) > 1 else ""
    return (
        f"node group{plural} {which} did not exist and {'were' if plural else 'was'} created "
        f"for node {node}{hint}; if it is a mistake, move the node: "
        f"hpc node set {node} --group GROUP"
    )
