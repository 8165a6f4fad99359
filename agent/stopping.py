"""Tasks being killed by a cancel or their runtime limit: SIGTERM now, SIGKILL once their
grace period runs out (``HPC_TASK_GRACE_S``, HPC Pack's TaskCancelGracePeriod, Slurm's
KillWait), while the agent's loop goes on: heartbeats, other tasks' ends, new work.

Why not wait in place: a grace long enough for a task to checkpoint (15 s by default) would
stall the loop, and a loop that sends no heartbeat for long enough is fenced by its own
lifeline (agent/lifeline.py). A task here still holds its cores and is still listed as
running here (heartbeats list it), and its end is reported only once its process group is
gone: a task given up with its node (hpc node offline) holds its next attempt until then, as
the control plane extends that hold while heartbeats list it (shared/usecases/events.py).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from agent.runner import Runner, finish_kill

Why = Literal["cancel", "limit", "memory"]
"""Why the agent kills a task: a cancel, its runtime limit, its memory (--enforce-memory)."""
LOOK_S = 0.1
"""How often a kill whose leader is gone but whose group lingers scans /proc for the rest
(the loop steps every few ms; a scan reads every process's stat)."""


@dataclass
class Kill:
    runner: Runner
    why: Why
    deadline: float
    """When the grace runs out (time.monotonic)."""
    next_look: float = 0.0
    """When its group may be scanned again (:data:`LOOK_S`)."""

    def gone(self, now: float) -> bool:
        """Its process group is gone: the leader's status first (no /proc scan while it
        lives), then a scan at most every :data:`LOOK_S`."""
        proc = self.runner.process
        if proc is None:
            return True
        if proc.poll() is None or now < self.next_look:
            return False
        self.next_look = now + LOOK_S
        return not self.runner.tree_alive()


class Stopping:
    """The tasks between their SIGTERM and their end."""

    def __init__(self) -> None:
        self.kills: dict[str, Kill] = {}

    def begin(self, runners: list[Runner], why: Why, grace_s: float) -> None:
        """SIGTERM to each one's process group (marking its end record killed first:
        :meth:`Runner.terminate_tree`); its grace starts now."""
        deadline = time.monotonic() + grace_s
        for runner in runners:
            runner.terminate_tree()
            self.kills[runner.key] = Kill(runner, why, deadline)

    def of_task(self, job_id: int, task_id: int) -> list[str]:
        """The keys of the attempts of a task in their grace here."""
        return [
            key
            for key, k in self.kills.items()
            if (k.runner.task.job_id, k.runner.task.task_id) == (job_id, task_id)
        ]

    def ended(
        self, *, force: bool = False, keys: Collection[str] | None = None
    ) -> list[tuple[Kill, int | None]]:
        """The kills that are over, with each one's exit code: process groups gone by
        themselves, and those past their grace (or all, ``force``: the agent stops; or those
        of ``keys``), which get SIGKILL."""
        now = time.monotonic()
        over = [
            k
            for key, k in self.kills.items()
            if force
            or (keys is not None and key in keys)
            or now >= k.deadline
            or _own_end_over(k.runner)
            or k.gone(now)
        ]
        out = []
        for kill in over:
            del self.kills[kill.runner.key]
            out.append((kill, finish_kill(kill.runner)))
        return out


def _own_end_over(runner: Runner) -> bool:
    """It had ended by itself before the kill (its end record written: its shell was left to
    finish its EXIT trap, unsignaled) and its shell is gone: no grace for what it left."""
    proc = runner.process
    return not runner.kill_reached and proc is not None and proc.poll() is not None
