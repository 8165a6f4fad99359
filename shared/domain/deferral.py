"""The cluster's queued tasks whose boots wait for nodes that running work likely frees.

Pure (no clock, no I/O). The timer's form of :func:`shared.domain.likelyends.deferrals`,
which the replay applies to whole jobs: here a group's waiting tasks (in queue order) are
taken by job, each job's nodes counted as the autoscaler grows for them
(:func:`shared.domain.demand.nodes_for`), and a job that defers ``d`` of its boots has its
last tasks left out of what the autoscaler is shown, as many as leave it needing ``d``
nodes fewer. They are shown again at the next run that does not defer them: when the
release came (they run on its nodes) or became less likely (their nodes start then).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.domain.autoscaler_io import Note
from shared.domain.autoscaler_notes import listed_jobs
from shared.domain.autoscaler_notes import queued as counted
from shared.domain.demand import may_run_in, nodes_for
from shared.domain.growshrink import GroupPolicy, fits_node
from shared.domain.likelyends import Release, boots_needed, deferrals
from shared.domain.models import Task
from shared.domain.notescope import scope


@dataclass(frozen=True)
class Deferred:
    """A group's deferral this run: the boots not started and the tasks left out for them."""

    boots: int = 0
    tasks: tuple[Task, ...] = ()

    @property
    def keys(self) -> set[tuple[int, int]]:
        return {(t.job_id, t.id) for t in self.tasks}

    def note(self, group: str, boot_delay_s: float) -> Note | None:
        """What the left-out tasks' pending reasons quote (None: nothing deferred)."""
        if not self.tasks:
            return None
        these = "it" if len(self.tasks) == 1 else "them"
        return Note(group, (
            f"{counted(list(self.tasks))} of {listed_jobs(list(self.tasks))} wait"
            f"{'s' if len(self.tasks) == 1 else ''} for {self.boots} node"
            f"{'' if self.boots == 1 else 's'} that running work likely frees within its "
            f"boot delay ({boot_delay_s:g} s): no node is started for {these} now; if the "
            "nodes are not freed, a later run starts them"
        ), about=scope(self.keys))  # fmt: skip


def defer(
    waiting: Sequence[Task],
    group: str,
    gp: GroupPolicy,
    cover: int,
    releases: Iterable[Release],
    wait_weight: float,
) -> Deferred:
    """The group's ``waiting`` tasks (queue order) whose boots wait for ``releases``;
    ``cover``: the group's idle Online and Starting nodes (they take the first jobs)."""
    jobs: dict[int, list[Task]] = {}
    for t in waiting:
        if may_run_in(t, group) and fits_node(t, gp):
            jobs.setdefault(t.job_id, []).append(t)
    widths = [(job, nodes_for(tasks, gp)) for job, tasks in jobs.items()]
    needs = boots_needed(widths, cover)
    if not needs:
        return Deferred()
    boots = deferrals(releases, needs, wait_weight)
    out: list[Task] = []
    total = 0
    for job, width in widths:
        d = boots.get(job, 0)
        if d:
            kept = _kept(jobs[job], width - d, gp)
            out += jobs[job][kept:]
            total += d
    return Deferred(total, tuple(out))


def _kept(tasks: list[Task], nodes: int, gp: GroupPolicy) -> int:
    """The most of ``tasks`` (from the first) that need at most ``nodes`` nodes."""
    lo, hi = 0, len(tasks)
    while lo < hi:  # nodes_for grows with the tasks taken: bisect
        mid = (lo + hi + 1) // 2
        if nodes_for(tasks[:mid], gp) <= nodes:
            lo = mid
        else:
            hi = mid - 1
    return lo
