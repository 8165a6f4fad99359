"""What the scheduler is asked and what it knows of what runs: a queued request (one task
in the cluster, one job in the simulator) and the cores a running one holds until its
projected end. Apart from :mod:`shared.domain.scheduler` so that the reservation's rules
(:mod:`shared.domain.reservation`) read them without importing the scheduler back."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Request:
    key: Hashable
    cores: int
    """Cores on each of its nodes."""
    nodes: int = 1
    groups: frozenset[str] = frozenset()
    """Nodes of any of these groups may run it; empty means any node."""
    limit_s: float | None = None
    """Runtime limit: it ends by start + limit (None: unknown)."""
    max_cores: int | None = None
    """It may grow up to this many cores per node with cores left free (None: no growth)."""
    exclusive: bool = False
    """Only idle nodes, and it takes all their cores."""
    protocol: int = 1
    """Only nodes whose agents speak this protocol read its assignment
    (shared.domain.protocol); a multi-node request asks it of all its nodes."""
    memory_mb: int | None = None
    """Memory it holds on each of its nodes while it runs: only nodes with this much free
    (shared.domain.memoryfit: consumable, as Slurm's ``--mem`` under ``CR_Core_Memory``);
    a multi-node request holds it on each node; growth adds cores only. None: none held."""
    job: Hashable = None
    """Its job (None: the request is its own job, as in the simulator)."""
    job_exclusive: bool = False
    """Its job is job-exclusive: only nodes no other job uses (shared.domain.jobexclusive)."""
    queued_at: float | None = None
    """Since when it waits (epoch seconds; None: unknown): one queued a boot delay is not
    passed over by a jump (shared.domain.jumps)."""

    @property
    def owner(self) -> Hashable:
        """The job the request belongs to, for the job-exclusive rule."""
        return self.key if self.job is None else self.job


class Busy(NamedTuple):
    """Cores a running request holds on one node, until its projected end (None: unknown).
    A named tuple, not a frozen dataclass: a pass makes one per placement, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) took a quarter of an
    EASY pass on 2,000 nodes (bench/bench_scheduler.py "mixed")."""

    node: str
    cores: int
    until: float | None
    job: Hashable = None
    """The job it belongs to (None: unknown, never job-exclusive)."""
    job_exclusive: bool = False
    """Its job holds the node against other jobs (shared.domain.jobexclusive)."""
    memory_mb: int = 0
    """Memory it holds on the node until then (shared.domain.memoryfit)."""
