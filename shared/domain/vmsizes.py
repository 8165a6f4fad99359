"""The vCPUs an Azure VM size's name states (``Standard_D4s_v5``: 4), to warn when nodes are
added with another core count: a probe's ``hpc node add --size Standard_D4s_v5`` made nodes
of the group's 2 cores, silently, and the scheduler would then use half of each VM. Pure.

Azure's names: ``Standard_`` (or ``Basic_``), a family of letters, the vCPU count, then
feature letters and a version (``Standard_HB120rs_v3``, ``Standard_NC24ads_A100_v4``); a
constrained-core size states its active vCPUs after a dash (``Standard_E64-16s_v5``: 16).
"""

from __future__ import annotations

import re

_SIZE = re.compile(r"(?:Standard|Basic)_[A-Za-z]+(\d+)(?:-(\d+))?[A-Za-z]*(?:_.*)?")


def named_cores(size: str | None) -> int | None:
    """The vCPUs ``size``'s name states; None for a name that states none (a local VM's)."""
    if not size:
        return None
    m = _SIZE.fullmatch(size.strip())
    if m is None:
        return None
    return int(m[2] or m[1])


def size_warning(size: str | None, cores: int) -> str | None:
    """What to say when nodes of ``size`` are given ``cores`` cores other than its name's."""
    named = named_cores(size)
    if named is None or named == cores:
        return None
    return (
        f"{size} has {named} vCPUs by its name, but these nodes offer {cores} cores to tasks "
        f"(the group's nodeCores unless --cores): add them with --cores {named}, or set the "
        "group's (hpc nodegroup set G --node-cores N) for nodes added later"
    )
