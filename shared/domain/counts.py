"""A job's task counts as deltas: what one commit moves, applied by the store. Pure.

A job's ``taskCounts`` and ``steps`` move with every task transition. Rewriting the job
document for each of them would make every task event of a job conflict on the job's etag
and rewrite one document per event; instead :meth:`Job.count` records what it moved (a
:class:`CountsDelta`) beside updating the counts in memory, and the store adds the delta to
the stored counts (SQLite: inside the commit's transaction; Cosmos DB: a small "tally"
document summed by every read). Deltas commute, so commits made from the same read of a
job, for different tasks, all apply and add up.

One kind of move is not a plain delta: taking tasks *out* of an ended state (a rerun).
Settling a job (all tasks ended: Finished/Failed) is decided from counts and written under
the job's etag; a rerun that slipped in unseen would leave a Queued task in an ended job. So
a delta that reopens tasks makes its commit write the job under its etag too
(:attr:`CountsDelta.reopened`), which serializes it with every settling write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.domain.states import TASK_TERMINAL, TaskState


def ended(state: TaskState) -> int:
    return int(state in TASK_TERMINAL)


def failed(state: TaskState) -> int:
    return int(state in (TaskState.FAILED, TaskState.CANCELED))


@dataclass
class CountsDelta:
    """Tasks moved per state, and per depended-on step name (left, failed), by one writer."""

    states: dict[TaskState, int] = field(default_factory=dict)
    steps: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Step name -> (change of ``left``, change of ``failed``)."""
    reopened: bool = False
    """Some move took tasks out of an ended state: the commit must check the job's etag."""

    def move(self, old: TaskState | None, new: TaskState, n: int, step: str | None) -> None:
        """Record ``n`` tasks moving from ``old`` (None: new tasks) to ``new``; ``step`` is
        their name if something depends on it."""
        if old is not None:
            self.states[old] = self.states.get(old, 0) - n
            self.reopened |= bool(ended(old) and not ended(new))
        self.states[new] = self.states.get(new, 0) + n
        if step is not None and old is not None:
            left, bad = self.steps.get(step, (0, 0))
            self.steps[step] = (
                left + n * (ended(old) - ended(new)),
                bad + n * (failed(new) - failed(old)),
            )

    @property
    def empty(self) -> bool:
        return not any(self.states.values()) and not any(a or b for a, b in self.steps.values())

    def add(self, other: CountsDelta) -> None:
        """Sum another delta into this one (the tallies of a job)."""
        for state, n in other.states.items():
            self.states[state] = self.states.get(state, 0) + n
        for name, (left, bad) in other.steps.items():
            mine = self.steps.get(name, (0, 0))
            self.steps[name] = (mine[0] + left, mine[1] + bad)
        self.reopened |= other.reopened

    def apply(self, body: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
        """The job's stored document (camelCase JSON) with this delta added to its
        ``taskCounts`` and ``steps``; states left at zero or below are dropped, as
        :meth:`Job.count` drops them. ``body`` is changed in place and returned.

        ``partial``: ``body`` is a partial sum that other deltas are still added to (a Cosmos
        job document beside tallies not folded into it yet), so a state below zero is kept:
        a tally it has not absorbed brings it back up (Dispatching -1 stored, +1 in a tally).
        Cut at zero, the two would no longer cancel, and a task would count twice."""
        counts: dict[str, int] = dict(body.get("taskCounts") or {})
        for state, n in self.states.items():
            counts[state.value] = counts.get(state.value, 0) + n
        body["taskCounts"] = {s: n for s, n in counts.items() if (n != 0 if partial else n > 0)}
        steps: dict[str, Any] = body.get("steps") or {}
        for name, (left, bad) in self.steps.items():
            step = steps.get(name)
            if step is None:
                continue  # (steps are fixed at submit; a delta for an unknown name is moot)
            step["left"] = step.get("left", 0) + left
            step["failed"] = step.get("failed", 0) + bad
        return body

    def to_json(self) -> dict[str, Any]:
        """The delta as stored (a Cosmos tally's body)."""
        return {
            "states": {s.value: n for s, n in self.states.items() if n},
            "steps": {k: [a, b] for k, (a, b) in self.steps.items() if a or b},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CountsDelta:
        return cls(
            states={TaskState(s): int(n) for s, n in (data.get("states") or {}).items()},
            steps={k: (int(v[0]), int(v[1])) for k, v in (data.get("steps") or {}).items()},
        )
