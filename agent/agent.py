"""The agent loop: hold the node's session, run assignments, report events.

One thread does everything, in a loop that never waits longer than
``poll_ms``: reap ended processes, heartbeat when due, (re)accept the session,
receive assignments and act on them, send the events, settle the messages,
renew the session lock. A cancel or a process exit is therefore noticed within
one loop.

Guarantees:

- The agent holds its node only as the incarnation the control plane granted at
  registration (agent/registration.py); a second agent of the name on this
  machine cannot start (agent/identity.py). Assignments meant for another
  incarnation are dropped and reported, never run. Told its incarnation is over
  (Superseded: the node was given to new attempts while this agent was cut off),
  it kills what it runs and registers again.
- Events carry the incarnation and a sequence number, are sent before their
  assignment is completed, and are kept in an outbox that survives bus errors,
  so a TaskStarted or TaskEnded is not lost while the agent lives. Heartbeats
  also repeat recent endings, so one lost on the way is still recovered.
- The agent keeps running its tasks while the control plane is down and reports
  their ends when it is back.
- An assignment delivered twice (a lost lock, a redelivery) runs once: the
  agent remembers the attempts it runs and recently ran.
- A bus error never ends the loop; it is logged and retried with back-off.
- A lost session lock is accepted again; while another receiver holds the session (an
  earlier incarnation whose lock has not expired) it retries every second, reaping on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import uuid4

from pydantic import ValidationError

from agent import registration
from agent.config import AgentConfig
from agent.identity import Identity, claim
from agent.reporter import Reporter
from agent.session import ABANDON, COMPLETE, INVALID_MESSAGE, NodeSession, Settle, now_like
from agent.tasks import Tasks, short
from shared.domain.messages import (
    ASSIGNMENT,
    REPLIES_QUEUE,
    REPLY,
    NodeStopping,
    RunTask,
    Superseded,
)
from shared.ports.bus import (
    Bus,
    BusError,
    ReceivedMessage,
    SessionLockLostError,
    SessionReceiver,
)
from shared.ports.output import OutputStore

log = logging.getLogger(__name__)

BUSY_POLL_MS = 5
"""Receive wait while tasks run: bounds how late a process exit is noticed."""
MAX_RECEIVE = 16
"""Assignments taken per receive."""
_BACKOFF_MIN_S = 0.2
_BACKOFF_MAX_S = 5.0
_REMEMBERED = 10_000
"""How many ended attempts are remembered to ignore their redelivered assignments."""
_STOP_SEND_ATTEMPTS = 3


ROOT_WARNING = (
    "this agent runs as root, so every task (its command, and its --stdout/--stderr "
    "files) runs as root and can change anything on this machine: run the agent as an "
    "unprivileged user (the Azure node VMs run it as 'hpc'), or run each task as its "
    "job's owner (--run-as-owner)"
)
"""Tasks run as the agent's own user unless --run-as-owner: said at start."""

OWNERS_NOTE = "tasks run as their jobs' owners (--run-as-owner): never as root"


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class Agent:
    """The node agent. :meth:`run` blocks until :meth:`stop` (thread-safe, signal-safe)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        bus: Bus,
        output: OutputStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.bus = bus
        self.output = output
        self.clock = clock
        self.incarnation: int | None = None
        """Granted by the control plane at registration; None until then."""
        self.agent_id: str | None = None
        """Random per registration: this process's replies session."""
        self.started_at = datetime.now(UTC)
        """When this agent (process) started: every registration says it, so the control
        plane tells a restart from the same agent registering again (paused, cut off,
        fenced), and a late registration of an older agent from a newer one's."""
        self._identity: Identity | None = None
        self._replies: SessionReceiver | None = None
        self.reporter = Reporter(bus, config.name, clock=clock)
        self.tasks = Tasks(config, output=output, reporter=self.reporter)
        self._stop = threading.Event()
        self.session = NodeSession(bus, config.name, clock=clock)
        self._next_beat = 0.0
        self._backoff_s = 0.0

    # ------------------------------------------------------------ public

    @property
    def free_cores(self) -> int:
        """Cores not taken by running tasks (never below 0; the scheduler keeps within them)."""
        return self.tasks.free_cores

    @property
    def running(self) -> list[str]:
        """Keys ("job.task.attempt") of the tasks running now."""
        return sorted(self.tasks.running)

    def stop(self) -> None:
        """Ask :meth:`run` to end: running tasks are killed, NodeStopping is sent."""
        self._stop.set()

    def run(self) -> None:
        """Claim the node name on this machine (raises NameInUse), register (raises
        RegistrationRefused), then run assignments until :meth:`stop`."""
        if self._stop.is_set():
            return
        cfg = self.config
        self._identity = claim(cfg.name, cfg.state_dir, wait_s=cfg.name_wait_s)
        try:
            self.tasks.wait_for_predecessor()
            if not self._register():
                return
            if cfg.run_as_owner:  # said once the node is ours, never before a refusal
                log.info(OWNERS_NOTE)
            elif running_as_root():
                log.warning(ROOT_WARNING)
            self.tasks.start_lifeline(self.incarnation)
            self._loop()
        finally:
            self._close_replies()
            self._identity.release()

    def _register(self) -> bool:
        """Register as a new incarnation; False if stopped before the answer came."""
        assert self._identity is not None
        cfg = self.config
        self._close_replies()
        self.agent_id = uuid4().hex
        self._replies = self.bus.get_session_receiver(REPLIES_QUEUE, session_id=self.agent_id)
        log.info(
            "agent %s (groups %s, %d cores) registering", cfg.name, ",".join(cfg.groups), cfg.cores
        )
        answer = registration.register(
            self.bus,
            self._replies,
            registration.request(
                node=cfg.name,
                groups=cfg.groups,
                cores=cfg.cores,
                agent_id=self.agent_id,
                host_id=self._identity.host_id,
                ended=self.tasks.recorded_leftovers(),
                run_as_owner=cfg.run_as_owner,
                started_at=self.started_at,
                memory_mb=cfg.memory_mb,
            ),
            retry_s=cfg.registration_retry_s,
            stop=self._stop,
        )
        if answer is None or answer.incarnation is None:
            return False
        incarnation = answer.incarnation
        self.incarnation = incarnation
        if answer.heartbeat_timeout_s is not None:
            self.tasks.fence_for(answer.heartbeat_timeout_s)
        if answer.task_grace_s is not None:  # the cluster's (protocol 6), not this machine's
            cfg.kill_grace_s = self.tasks.config.kill_grace_s = answer.task_grace_s
        if answer.note:
            log.warning("the control plane says: %s", answer.note)
        self.reporter.begin(incarnation)
        self.tasks.registered(incarnation)
        self.tasks.beat()  # answered: heard
        self._next_beat = self.clock()  # say at once what runs here
        log.info("node %s is ours as incarnation %d", cfg.name, incarnation)
        self.tasks.report_leftovers()
        return True

    def _close_replies(self) -> None:
        receiver, self._replies = self._replies, None
        if receiver is not None:
            try:
                receiver.close()
            except Exception as exc:
                log.debug("closing the replies receiver: %s", exc)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except SessionLockLostError as exc:
                    log.warning("lost the session lock (%s); accepting the session again", exc)
                    self.session.drop()
                except registration.RegistrationRefused:
                    raise  # registering again was refused (another agent has the name): exit 3
                except Exception as exc:
                    self._backoff_s = min(max(self._backoff_s * 2, _BACKOFF_MIN_S), _BACKOFF_MAX_S)
                    log.warning(
                        "agent loop error: %s; retrying in %.1f s",
                        exc,
                        self._backoff_s,
                        exc_info=not isinstance(exc, BusError),
                    )
                    self._stop.wait(self._backoff_s)
                else:
                    self._backoff_s = 0.0
        finally:
            self._shutdown()

    # -------------------------------------------------------------- loop

    def _step(self) -> None:
        self.tasks.reap()
        silent = self.tasks.unheard()
        if self.tasks.fenced or silent is not None:
            why = f"not heard for {silent:.0f} s" if silent is not None else "not heard"
            self._start_over(f"{why}: the lifeline killed its tasks, or their work went elsewhere")
            return
        self._heartbeat_if_due()
        sending = self.reporter.pending
        self.reporter.flush()  # report endings now, not after the receive wait below
        if sending:
            self.tasks.beat()  # heard: the lifeline's fence waits on
        self.tasks.forget_reported()
        self.session.accept_if_needed()
        messages = self._receive()
        settles = self._handle(messages)
        try:
            self.reporter.flush()
        finally:
            # Settle even when sending failed (the events stay in the outbox): an unsettled
            # session message stays locked for as long as this agent holds the session.
            self.session.settle(messages, settles)
        self.session.renew_if_due()

    def _receive(self) -> list[ReceivedMessage]:
        if not self.session.held:
            self._stop.wait(self.config.poll_ms / 1000)
            return []
        # While tasks run, wake often enough that an exit is reported within a few ms.
        wait_ms = min(self.config.poll_ms, BUSY_POLL_MS) if self.tasks.busy else self.config.poll_ms
        return self.session.receive(max_messages=MAX_RECEIVE, wait_ms=wait_ms)

    # ------------------------------------------------------- assignments

    def _handle(self, messages: Sequence[ReceivedMessage]) -> list[Settle]:
        """Act on each message in order; a canceled task gets its SIGTERM at once and ends
        when it exits or its grace runs out (the loop goes on meanwhile: agent/stopping.py)."""
        settles: list[Settle] = []
        for message in messages:
            try:
                assignment = ASSIGNMENT.validate_json(message.body)
            except ValidationError as exc:
                description = short(str(exc))
                log.warning("dead-lettering an invalid assignment: %s", description)
                settles.append(Settle("dead_letter", INVALID_MESSAGE, description))
                continue
            if isinstance(assignment, RunTask) and self._stop.is_set():
                # stopping: started now, it would be killed at once (a probe's instant task
                # ended first and ran again); unstarted, NodeStopping requeues it
                log.info("not starting task %s.%s: stopping", assignment.job_id, assignment.task_id)
                settles.append(ABANDON)
                continue
            try:
                if isinstance(assignment, RunTask):
                    self.tasks.run(assignment, incarnation=self.incarnation)
                else:
                    runner = self.tasks.cancel(assignment, incarnation=self.incarnation)
                    if runner is not None:  # its SIGTERM now: a newer attempt later in the
                        self.tasks.begin_cancel([runner])  # batch finds it in its grace
            except Exception:
                log.exception("could not act on %s; it will be delivered again", assignment)
                settles.append(ABANDON)
            else:
                settles.append(COMPLETE)
        return settles

    # ------------------------------------------------------------ events

    def _heartbeat_if_due(self) -> None:
        now = self.clock()
        if now < self._next_beat or self.incarnation is None:
            return
        self._next_beat = now + self.config.heartbeat_interval_s
        self._check_replies()
        if self.incarnation is None:
            return  # stopped while registering again
        self.reporter.heartbeat(
            agent_id=self.agent_id or "",
            free_cores=self.free_cores,
            running=self.tasks.listed,  # ended ones whose output is still being published too
            keep_s=self.config.recent_ended_s,
        )

    def _check_replies(self) -> None:
        """Learn whether our incarnation is over; if so, kill what runs and register again."""
        if self._replies is None or self.agent_id is None:
            return
        try:
            until = self._replies.session_locked_until
            if until - now_like(until) <= self.session.lock_span / 2:
                self._replies.renew_session_lock()
            messages = self._replies.receive(max_messages=10, max_wait_ms=0)
        except BusError as exc:  # our own session: nobody else takes it; accept it again
            log.warning("replies session: %s; accepting it again", exc)
            self._close_replies()
            self._replies = self.bus.get_session_receiver(REPLIES_QUEUE, session_id=self.agent_id)
            return
        over: Superseded | None = None
        for message in messages:
            try:
                self._replies.complete(message)
                reply = REPLY.validate_json(message.body)
            except (BusError, ValidationError) as exc:
                log.debug("ignoring a reply: %s", exc)
                continue
            if isinstance(reply, Superseded) and reply.incarnation == self.incarnation:
                over = reply
        if over is None:
            return
        self._start_over(over.reason)

    def _start_over(self, why: str) -> None:
        """This incarnation is over (the control plane said so, or the lifeline fenced its
        tasks): kill what runs and register again as the next one."""
        log.error(
            "incarnation %s of node %s is over: %s; killing %d task(s) and registering again",
            self.incarnation,
            self.config.name,
            why,
            len(self.tasks.running) + len(self.tasks.stopping.kills),
        )
        self.tasks.kill_all(report=True)  # those that ran to their end may still count
        with contextlib.suppress(Exception):  # their ends before the registration, if it can
            self.reporter.flush()
        self.tasks.forget_reported()  # (sent: not reported again as the registration's leftovers)
        self.tasks.fenced = False
        self.session.drop()
        self.incarnation = None
        if not self._register():
            self._stop.set()

    # ---------------------------------------------------------- shutdown

    def _shutdown(self) -> None:
        """Kill what runs, say NodeStopping (the control plane requeues the node's tasks),
        release the session."""
        # Those that ran to their end are reported; the others are requeued by NodeStopping.
        killed = self.tasks.kill_all(report=self.incarnation is not None)
        if self.incarnation is not None:
            self.reporter.emit(NodeStopping(**self.reporter.stamp(), killed=killed))
            for attempt in range(1, _STOP_SEND_ATTEMPTS + 1):
                try:
                    self.reporter.flush()
                    self.tasks.forget_reported()
                    break
                except Exception as exc:
                    log.warning("could not send NodeStopping (try %d): %s", attempt, exc)
                    time.sleep(_BACKOFF_MIN_S)
            else:
                log.error("NodeStopping not sent: the control plane will find this node silent")
        self.session.drop()
        self.tasks.close_lifeline()
        self.tasks.publisher.close()
        log.info("agent %s stopped", self.config.name)
