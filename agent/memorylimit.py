"""Memory enforcement, opt-in (``hpc agent run --enforce-memory``, HPC_AGENT_ENFORCE_MEMORY;
Slurm's ConstrainRAMSpace with its --mem): a task that asked for memory (``minMemoryMb``,
which the scheduler holds for it on its node) is killed when its processes use more, and
fails saying so, rather than taking the memory its node's other tasks hold: a node's kernel,
out of memory, kills whatever it picks, the agent or another user's task among them.

How: about once a second, one scan of ``/proc`` sums the proportional memory (PSS) of each
task's process group (the task's shell leads it; agent/runner.py starts every task in a group
of its own). A task past its ask is killed as one past its runtime limit is, with no grace
(its memory keeps growing), and its end carries the error. Its ask reaches the agent in the
task's environment, ``HPC_TASK_MEMORY_MB`` (set by the control plane after the user's own
variables, which may not be named HPC_*; as Slurm's SLURM_MEM_PER_NODE), so agents of any
protocol read their assignments as before. Not a cgroup: a process that leaves its group
(setsid) is not counted, and a spike shorter than the scan is not seen. Linux only
(``/proc``); elsewhere nothing is measured and nothing is killed.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

from shared.domain.messages import TASK_MEMORY_ENV as MEMORY_ENV

LOOK_S = 1.0
"""How often the running tasks' memory is measured (one /proc scan for all of them)."""

PROC = Path("/proc")
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024 if hasattr(os, "sysconf") else 4.0


def limit_of(env: Mapping[str, str]) -> int | None:
    """The task's ask in MB from its environment; None for none, or for a value that is no
    whole number of MB above 0 (the control plane writes only those)."""
    text = env.get(MEMORY_ENV, "")
    return int(text) if text.isascii() and text.isdigit() and int(text) > 0 else None


def over(used_mb: int, limit_mb: int | None) -> bool:
    """The task uses more than it asked for (asking none: no limit)."""
    return limit_mb is not None and used_mb > limit_mb


def group_rss_mb(groups: Collection[int]) -> dict[int, int]:
    """The memory (MB, rounded down) of each of these process groups: the sum over its live
    processes of each one's proportional set size (PSS: a page shared by n processes counts
    1/n in each), read in one pass over /proc. Not the resident set size (RSS): forked
    workers share their parent's pages, and a sum of RSS counted them once per process (a
    probe: 3 forks of a 90 MB process summed to 404 MB, its PSS to 100 MB, and a task within
    its ask was killed), as Slurm's accounting offers UsePss for. Where a process's
    smaps_rollup cannot be read (Linux before 4.14), its RSS counts. A group with none left
    is missing."""
    wanted = set(groups)
    kb: dict[int, int] = {}
    if not wanted or not PROC.is_dir():
        return {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid pgrp ... rss(24th) ...": comm may hold spaces and ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 22 or fields[0] in ("Z", "X"):
            continue
        pgrp = int(fields[2])
        if pgrp in wanted:
            pss = _pss_kb(entry)
            kb[pgrp] = kb.get(pgrp, 0) + (int(int(fields[21]) * _PAGE_KB) if pss is None else pss)
    return {pgrp: n // 1024 for pgrp, n in kb.items()}


def _pss_kb(entry: Path) -> int | None:
    """A process's proportional set size in kB, from its smaps_rollup; None if unreadable."""
    try:
        with (entry / "smaps_rollup").open() as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def over_their_asks(
    groups: Mapping[str, tuple[int, Mapping[str, str]]],
) -> list[tuple[str, int, int]]:
    """The tasks (key -> their process group and environment) that use more than they asked
    for: (key, MB used, MB asked) each. One /proc scan for all of them; none if none asks."""
    limits = {key: (pgid, limit) for key, (pgid, env) in groups.items() if (limit := limit_of(env))}
    if not limits:
        return []
    used = group_rss_mb([pgid for pgid, _ in limits.values()])
    return [
        (key, used.get(pgid, 0), limit)
        for key, (pgid, limit) in limits.items()
        if over(used.get(pgid, 0), limit)
    ]


def exceeded(used_mb: int, limit_mb: int) -> str:
    """The error a task killed for its memory ends with."""
    return (
        f"memory limit exceeded: its processes used {used_mb:,} MB, above the {limit_mb:,} MB "
        "it asked for (minMemoryMb; this node's agent enforces it: --enforce-memory)"
    )
