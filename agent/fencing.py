"""The agent's side of the fence: the lifeline watchdog it starts, how long it may go
unheard, and telling a task the fence killed from one that ended by itself.

Part of :class:`agent.tasks.Tasks` (its base class): the fence is about the tasks it runs.
Why a fence at all: see agent/lifeline.py.
"""

from __future__ import annotations

import logging
import signal
import time

from agent.config import AgentConfig, fence_for_timeout
from agent.endrecords import EndRecords
from agent.groups import orphans
from agent.lifeline import SPARE_WAIT_S, Lifeline, end_groups, wait_for_watchdogs
from agent.runner import Runner
from agent.taskgroups import TaskGroups

log = logging.getLogger("agent.agent")


class Fencing:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._lifeline: Lifeline | None = None
        self._records = EndRecords(config.state_dir / "ends") if config.state_dir else None
        self._groups = TaskGroups(config.state_dir) if config.state_dir else None
        self._fence_s = config.fence_s
        self.fenced = False
        """The watchdog killed tasks while this agent was not heard (agent/lifeline.py): their
        attempts are not reported ended; the agent registers again, which requeues them."""
        self.heard_at = time.monotonic()
        """When events (a heartbeat among them) last went out, or a registration was answered."""

    def wait_for_predecessor(self) -> None:
        """Before the first registration reads the end records: an earlier agent's watchdog
        may still be letting a task whose command had just returned write its end (it holds
        the records' lock until it is done; agent/groups.py); and tasks whose agent and
        watchdog were killed together still run: they are ended as the watchdog would have
        (the registration then requeues them, or reports the ends they wrote)."""
        if self._records is None:
            return
        folder = self._records.folder
        if not wait_for_watchdogs(folder):
            log.warning(
                "the watchdog of an earlier agent of this node still runs after %g s; a task "
                "whose end record it was letting be written may run again",
                2 * SPARE_WAIT_S,
            )
        left = orphans(folder)
        if left:
            # Its watchdog died with it (kill -9 of both): nothing ended them, and their
            # attempts would run again beside them once this agent registers (a probe).
            log.warning(
                "%d task(s) of an earlier agent of this node still run (its watchdog died "
                "with it): ending them as its watchdog would have (%s)",
                len(left),
                ", ".join(sorted(left.values())),
            )
            end_groups(left)
        escaped = [] if self._groups is None else self._groups.end_leaderless(left)
        if escaped:
            # Their shells were killed without them (a kill that lists, then signals): no
            # end can be recorded; ended now, their attempts run again once (taskgroups.py).
            log.warning(
                "%d task(s) of an earlier agent of this node ran on without their shell, or "
                "without being found by their end record: ended (%s)",
                len(escaped),
                ", ".join(escaped),
            )

    def track(self, pgid: int, key: str, stdout: str = "") -> None:
        """A task started in process group ``pgid``: the watchdog and the next agent know it
        (the watchdog also where its stdout goes, for the tail of an end it reports)."""
        if self._lifeline is not None:
            self._lifeline.track(pgid, key, stdout)
        if self._groups is not None:
            self._groups.add(pgid, key)

    def untrack(self, pgid: int) -> None:
        if self._lifeline is not None:
            self._lifeline.untrack(pgid)
        if self._groups is not None:
            self._groups.remove(pgid)

    def start_lifeline(self, incarnation: int | None) -> None:
        """Start the watchdog, told the incarnation the agent registered as (its reports')."""
        if self.config.lifeline:
            marks = None if self._records is None else self._records.folder
            self._lifeline = Lifeline(
                fence_s=self.fence_s,
                marks=marks,
                node=self.config.name,
                report_env=self.config.lifeline_bus,
            )
            if incarnation is not None:
                self._lifeline.incarnation(incarnation)

    def registered(self, incarnation: int) -> None:
        """The node is this agent's as ``incarnation``: the ends the watchdog reports for it
        (agent/lifeline_reports.py) are that incarnation's."""
        if self._lifeline is not None:
            self._lifeline.incarnation(incarnation)

    @property
    def fence_s(self) -> float:
        """How long no heartbeat may go out before the lifeline kills the tasks: the
        configured fence (2/3 of this machine's HPC_HEARTBEAT_TIMEOUT_S, or of the control
        plane's once it said it), never shorter than two heartbeats (one late heartbeat
        must not fence)."""
        return max(self._fence_s, 2 * self.config.heartbeat_interval_s + 1)

    def fence_for(self, heartbeat_timeout_s: float) -> None:
        """The control plane said its heartbeat timeout (at registration): fence at 2/3 of
        it, whatever this machine's setting, since that timeout decides when the node's
        attempts run elsewhere."""
        fence, self._fence_s = self._fence_s, fence_for_timeout(heartbeat_timeout_s)
        if fence != self._fence_s:
            log.info(
                "the control plane's heartbeat timeout is %g s: the lifeline kills this "
                "node's tasks after %g s without a heartbeat sent",
                heartbeat_timeout_s,
                self.fence_s,
            )
        if self.fence_s >= heartbeat_timeout_s:
            log.warning(
                "HPC_HEARTBEAT_INTERVAL_S here (%g s) is too long for the control plane's "
                "heartbeat timeout (%g s): the lifeline waits two heartbeats and a second, "
                "so a paused agent's tasks may run on after the control plane gave them to "
                "other nodes; set it below %g s",
                self.config.heartbeat_interval_s,
                heartbeat_timeout_s,
                (heartbeat_timeout_s - 1) / 2,
            )
        if self._lifeline is not None:
            self._lifeline.fence(self.fence_s)

    def beat(self) -> None:
        """Events (a heartbeat among them) were just sent: the watchdog's fence waits on."""
        self.heard_at = time.monotonic()
        if self._lifeline is not None:
            self._lifeline.beat()

    def unheard(self) -> float | None:
        """Seconds without events going out, if past the fence: by then the control plane may
        have given this incarnation's work to other nodes (it waits its longer timeout), so an
        assignment still waiting for this agent must not start; None while it is heard."""
        silent = time.monotonic() - self.heard_at
        return silent if silent > self.fence_s else None

    def close_lifeline(self) -> None:
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None

    def _fence_killed(self, runner: Runner, code: int | None) -> bool:
        """The lifeline's fence ended it (its killed mark, then SIGKILL), not its own exit,
        whichever path of the agent finds it dead first. Not when the agent's own kill (a
        cancel, a runtime limit: the same mark, then SIGTERM, then SIGKILL) found it running:
        a task that outlived the SIGTERM was taken for fenced, and its node registered again,
        which failed the other jobs' tasks on it (a live probe, with ``trap "" TERM``)."""
        return (
            code == -signal.SIGKILL
            and not runner.kill_reached
            and self._records is not None
            and self._records.killed(runner.key)
        )
