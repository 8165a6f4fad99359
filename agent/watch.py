"""The lifeline watchdog's state: what its agent told it over the pipe, and the two rules
that decide when it acts on its own (pure: no process, no clock of its own).

- **The fence** (:meth:`Watch.fence_due`): tasks run and no heartbeat went out for
  ``fence_s``: the watchdog kills them before the control plane runs them elsewhere.
- **Reports** (:meth:`Watch.reports_due`): the agent has not been heard for half the fence:
  the watchdog itself reports the ends of the tasks it tracks whose commands returned by
  themselves, since the agent, paused or hung, cannot (see agent/lifeline_reports.py).

The pipe's lines, one per change:

- ``.``: a heartbeat (events) went out: the agent is heard;
- ``f<seconds>``: the fence (2/3 of the control plane's heartbeat timeout);
- ``i<n>``: the incarnation the control plane granted (the tasks tracked from now on run
  under it; the agent registers again only after killing what it ran);
- ``+<pgid> <key> [<stdout>]``: a task started in process group ``pgid``, its attempt key
  (``job.task.attempt``) and the file its stdout goes to (for the tail an end carries);
- ``-<pgid>``: that task ended and the agent collected it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tracked:
    """A task the watchdog watches: its attempt key, its incarnation, its stdout file."""

    key: str
    incarnation: int | None = None
    stdout: str = ""


class Watch:
    """The watchdog's state: the tracked groups (pgid -> :class:`Tracked`) and the last beat."""

    def __init__(self, now: float, fence_s: float = 0.0) -> None:
        self.groups: dict[int, Tracked] = {}
        self.beat_at = now
        self.fence_s = fence_s
        self.incarnation: int | None = None

    def line(self, raw: str, now: float) -> None:
        line = raw.strip()
        if line == ".":
            self.beat_at = now
            return
        if line[:1] in ("f", "i"):
            self._setting(line)
            return
        head, _, rest = line.partition(" ")
        if len(head) < 2 or not head[1:].isdigit():
            return
        pgid = int(head[1:])
        if head[0] == "+":
            key, _, stdout = rest.partition(" ")
            self.groups[pgid] = Tracked(key, self.incarnation, stdout)
            self.beat_at = max(self.beat_at, now)  # a task just started: the agent is alive
        elif head[0] == "-":
            self.groups.pop(pgid, None)

    def _setting(self, line: str) -> None:
        with contextlib.suppress(ValueError):
            if line[0] == "f":
                fence_s = float(line[1:])
                if fence_s > 0 and math.isfinite(fence_s):
                    self.fence_s = fence_s
            elif line[1:].isdigit() and int(line[1:]) >= 1:
                self.incarnation = int(line[1:])

    def fence_due(self, now: float) -> bool:
        """Tasks run and the agent has not said a heartbeat went out for ``fence_s``."""
        return self.fence_s > 0 and bool(self.groups) and now - self.beat_at > self.fence_s

    def reports_due(self, now: float) -> bool:
        """Tasks are tracked, the agent has said its incarnation, and it has not been heard
        for half the fence: two heartbeats missed at the least (the fence is never shorter
        than two and a second), so an end it has not collected by now it may never send
        before the control plane gives the attempt up (at the heartbeat timeout, or
        ``hpc node offline``'s wait of one). Half, not all of it: an end seen now reaches
        the control plane before the fence and well before that timeout."""
        return (
            self.fence_s > 0
            and self.incarnation is not None
            and bool(self.groups)
            and now - self.beat_at > self.fence_s / 2
        )


def watch(lines: object) -> set[int]:
    """Read ``+pgid`` / ``-pgid`` lines until end-of-file; return the groups still tracked."""
    state = Watch(0.0)
    for raw in lines:  # type: ignore[attr-defined]
        state.line(raw, 0.0)
    return set(state.groups)
