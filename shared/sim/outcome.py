"""The elastic replay's figures (:mod:`shared.sim.elastic`): node-hours beside the oracle,
waits, bounded slowdowns, starts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from shared.domain.idlepolicy import IdlePolicy
from shared.sim.replay import TAU_S
from shared.sim.swf import SwfJob


@dataclass(frozen=True)
class ElasticOutcome:
    idle_policy: str
    jobs: int
    node_hours: float
    oracle_node_hours: float
    """The trace's core-hours / cores per node."""
    ratio: float
    """node_hours / oracle_node_hours."""
    mean_wait_s: float
    mean_bounded_slowdown: float
    node_starts: int
    peak_nodes: int
    """Most nodes up (Starting or Online) at once."""
    nodes: int
    cores_per_node: int
    boot_delay_s: float
    timer_s: float
    """The autoscaler's period (0: it ran at every event)."""
    scale_down_delay_s: float
    autoscaler_runs: int
    elapsed_s: float
    """Wall-clock time of the replay itself."""


def figures(
    jobs: Sequence[SwfJob],
    starts: dict[int, float],
    idle: IdlePolicy,
    node_seconds: float,
    node_starts: int,
    peak: int,
    runs: int,
    nodes: int,
    cpn: int,
    boot_delay_s: float,
    t0: float,
    timer_s: float,
    scale_down_delay_s: float,
) -> ElasticOutcome:
    waits = [starts[j.id] - j.submit for j in jobs]
    slowdowns = [
        max(1.0, (w + j.run) / max(j.run, TAU_S)) for j, w in zip(jobs, waits, strict=True)
    ]
    oracle = sum(j.run * j.procs for j in jobs) / cpn / 3600
    hours = node_seconds / 3600
    return ElasticOutcome(
        idle_policy=idle.name,
        jobs=len(jobs),
        node_hours=hours,
        oracle_node_hours=oracle,
        ratio=hours / oracle if oracle > 0 else 0.0,
        mean_wait_s=sum(waits) / len(waits) if waits else 0.0,
        mean_bounded_slowdown=sum(slowdowns) / len(slowdowns) if slowdowns else 0.0,
        node_starts=node_starts,
        peak_nodes=peak,
        nodes=nodes,
        cores_per_node=cpn,
        boot_delay_s=boot_delay_s,
        timer_s=timer_s,
        scale_down_delay_s=scale_down_delay_s,
        autoscaler_runs=runs,
        elapsed_s=time.perf_counter() - t0,
    )
