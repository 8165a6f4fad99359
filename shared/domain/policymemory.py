"""What the cluster's timer remembers for the node groups' idle policies between runs: a
JSON value in the autoscaler's Meta document, so that a restarted control plane goes on
with the same forecasts.

Pure (no clock, no I/O). Per group: a demand forecast's rate and time (``keep``,
``adaptive``, ``anticipate``, ``value``), ``value``'s width histogram, and for
``forecast`` the policy's whole learnt state (:meth:`ForecastPool.to_dict`) with the jobs
watched for their ends. Everything kept is bounded (``forecast``: at most 5 weeks of hourly
counts, the active and latest users' histograms, :data:`WATCH_KEPT` job ids), so the
document stays far under Cosmos DB's 2 MB item limit (README, "Idle policies in the
cluster": about 30 KB for a busy group).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WATCH_KEPT = 4096
"""Job ids watched for their ends per group at most (the newest kept): a job beyond them
that ends is not told (its user's activity is an estimate anyway)."""
RUNNING_KEPT = 2048
"""Running tasks of many-task jobs remembered per group at most (the newest kept), whose
run times the end forecast learns once they end."""


@dataclass(frozen=True)
class Forecast:
    """One group's stored memory: the policy's :class:`DemandForecast` (nodes asked for per
    second, as of ``at``, epoch seconds; jobs per second for ``value``), the idle nodes last
    reported kept, and for ``value`` its width histogram (width -> weight)."""

    rate: float = 0.0
    at: float = 0.0
    kept: int = 0
    widths: Mapping[str, float] = field(default_factory=dict)
    forecast: Mapping[str, Any] = field(default_factory=dict)
    """``forecast``'s learnt state (:meth:`shared.domain.forecastpool.ForecastPool.to_dict`)."""
    watch: tuple[int, ...] = ()
    """``forecast``: the group's jobs that were queued or running at the last run, whose ends
    the next runs tell it."""
    told: float = 0.0
    """``forecast``: the time of the last submit or end told (a later one told out of order,
    e.g. an end read a run late, is told at this time: a user's activity only moves on)."""
    running: tuple[str, ...] = ()
    """``forecast``: the group's running tasks of many-task jobs (sweeps) at the last run
    (``job.task``), read once they end for their run times (a job's record has no task's)."""
    owners: Mapping[int, str] = field(default_factory=dict)
    """``forecast``: the owners of the watched jobs (job id -> owner), so that a running
    task's end is forecast from its owner's run times without reading its job."""


@dataclass(frozen=True)
class PolicyMemory:
    """What the timer remembers for the idle policies (JSON)."""

    last_job: int | None = None
    """The highest job id already counted as an arrival (None: not started yet)."""
    groups: Mapping[str, Forecast] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lastJob": self.last_job,
            "groups": {g: _forecast_dict(f) for g, f in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PolicyMemory:
        if not data:
            return cls()
        last = data.get("lastJob")
        groups = {str(g): _forecast_of(f) for g, f in dict(data.get("groups") or {}).items()}
        return cls(int(last) if last is not None else None, groups)


def _forecast_of(f: Mapping[str, Any]) -> Forecast:
    return Forecast(
        float(f.get("rate", 0.0)),
        float(f.get("at", 0.0)),
        int(f.get("kept", 0)),
        {str(w): float(c) for w, c in dict(f.get("widths") or {}).items()},
        dict(f.get("forecast") or {}),
        tuple(int(i) for i in f.get("watch") or ()),
        float(f.get("told", 0.0)),
        tuple(str(k) for k in f.get("running") or ()),
        {int(i): str(o) for o, ids in dict(f.get("owners") or {}).items() for i in ids},
    )


def _forecast_dict(f: Forecast) -> dict[str, Any]:
    out: dict[str, Any] = {"rate": f.rate, "at": f.at, "kept": f.kept}
    if f.widths:
        out["widths"] = dict(f.widths)
    if f.forecast:
        out.update(forecast=dict(f.forecast), watch=list(f.watch), told=f.told)
        by_owner: dict[str, list[int]] = {}
        for i, o in sorted(f.owners.items()):
            by_owner.setdefault(o, []).append(i)
        out["owners"] = by_owner  # each owner once: a watch of 4,096 jobs adds about 50 KB
        if f.running:
            out["running"] = list(f.running)
    return out
