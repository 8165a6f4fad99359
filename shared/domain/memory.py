"""A task's memory request and a node's memory, in MB. Pure.

A task asking for ``minMemoryMb`` runs only on nodes that have at least that much
(:func:`fits`, the filter every "could it ever run there" asks) and holds it there while it
runs: memory is consumable, as Slurm's ``--mem`` under ``CR_Core_Memory``
(:mod:`shared.domain.memoryfit`: what a node has free now).
"""

from __future__ import annotations

import re

MAX_MEMORY_MB = 64 * 1024 * 1024
"""64 TB: more than any one machine (Azure's largest VM has 12 TB)."""

_UNITS = {"": 1, "M": 1, "MB": 1, "MIB": 1, "G": 1024, "GB": 1024, "GIB": 1024}
_UNITS |= {"T": 1024 * 1024, "TB": 1024 * 1024, "TIB": 1024 * 1024}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_mb(text: str | int) -> int:
    """``4096``, ``"4096"``, ``"512M"``, ``"4G"``, ``"1.5GB"``, ``"2T"`` -> MB (binary units,
    as Slurm reads ``--mem``: 1G = 1024 MB). Raises ValueError saying what is accepted."""
    if isinstance(text, bool):
        raise ValueError(f"memory is a size such as 4096, 512M or 4G, got {text!r}")
    if isinstance(text, int):
        mb = text
    else:
        match = _SIZE.match(text)
        unit = match.group(2).upper() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(f"memory is a size such as 4096 (MB), 512M, 4G or 1.5T, got {text!r}")
        mb = int(float(match.group(1)) * _UNITS[unit])
    if not 1 <= mb <= MAX_MEMORY_MB:
        raise ValueError(
            f"memory must be 1 MB to {MAX_MEMORY_MB // (1024 * 1024)} TB, got {text!r}"
        )
    return mb


def shown(mb: int, *, up: bool = False) -> str:
    """``4096`` -> ``"4 GB"``, ``24105`` -> ``"23.5 GB"``, ``512`` -> ``"512 MB"``. The tenths
    round down (``24063`` -> ``"23.4 GB"``: 23.5G is 24064 MB, more than it has), so that a
    node's memory shown, asked for, fits it; ``up``: they round up, for a request (never
    shown as less than it asks). A size whose tenths end in .0 stays in MB (``16385`` ->
    ``"16385 MB"``), so that it never reads as the whole GB it is not."""
    if mb >= 1024 and mb % 1024 == 0:
        return f"{mb // 1024} GB"
    tenths = -(-mb * 10 // 1024) if up else mb * 10 // 1024
    if mb < 1024 or tenths % 10 == 0:
        return f"{mb} MB"
    return f"{tenths // 10}.{tenths % 10} GB"


def fits(need: int | None, have: int | None) -> bool:
    """A node with ``have`` MB may run a task asking for ``need`` MB. A request of none fits
    anywhere; a node of unknown memory fits no request (it cannot be shown to)."""
    return need is None or (have is not None and have >= need)


def may_fit(need: int | None, have: int | None) -> bool:
    """As :func:`fits`, but a memory not known yet (a group's nodes, a node still starting)
    is taken as enough: what a node started will tell."""
    return need is None or have is None or have >= need
