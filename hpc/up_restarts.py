"""When ``hpc up`` starts an agent again that exited on its own, as systemd's
``Restart=on-failure`` does for an Azure node's agent (shared/adapters/azure_customdata.py).

Why: the exactly-once design has a node's next agent read the end records its predecessor
left (agent/endrecords.py) and report them at its registration. An agent that ``hpc up``
never restarted left them unread: a task that ran to its end while its agent was stopped,
its agent then killed, was given a new attempt at the heartbeat timeout and ran to its end
twice (a probe). So a killed or failed agent is started again after :data:`RESTART_AFTER_S`;
a clean stop (0), a usage error (2) and a refused registration (3: its name is another
live agent's) are not, since another start would end the same way; nor is one that keeps
dying (:data:`BURST` starts within :data:`WINDOW_S`: systemd's StartLimitBurst).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

RESTART_AFTER_S = 1.0
"""A dead agent's next start waits this long (systemd's RestartSec; 10 s on the VMs)."""
BURST = 5
WINDOW_S = 60.0
"""At most BURST restarts within WINDOW_S seconds (systemd's StartLimitBurst/IntervalSec)."""
NOT_RESTARTED = {0: "it stopped cleanly", 2: "its options are wrong", 3: "it was refused"}
"""Exit codes after which a start would end the same way (agent/cli.py EXIT_*)."""


def restart_refusal(returncode: int, restarts: Sequence[float], now: float) -> str | None:
    """Why an agent that exited with ``returncode`` is not started again (None: it is), given
    the times of its earlier restarts."""
    if returncode in NOT_RESTARTED:
        return NOT_RESTARTED[returncode]
    recent = [t for t in restarts if now - t < WINDOW_S]
    if len(recent) >= BURST:
        return f"it exited {len(recent) + 1} times within {WINDOW_S:g} s"
    return None


def exit_text(returncode: int) -> str:
    """How a child process ended, in words: ``was killed by SIGKILL``, ``exited with code 1``."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


@dataclass
class Restarts:
    """One agent's restarts: when each was made, and the next one due."""

    made: list[float] = field(default_factory=list)
    due: float | None = None
