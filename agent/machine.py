"""What the agent reads of its machine: its memory (the cores: ``os.cpu_count``)."""

from __future__ import annotations

import os

from shared.domain.memory import MAX_MEMORY_MB


def memory_mb() -> int | None:
    """This machine's physical memory in MB (pages x page size), or None where the system
    does not say (the node then runs no task that asks for memory until it is given:
    ``hpc agent run --memory-mb N`` or HPC_AGENT_MEMORY_MB)."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf, or not these names here
        return None
    mb = pages * page_size // 2**20
    return mb if 1 <= mb <= MAX_MEMORY_MB else None
