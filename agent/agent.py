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
- A lost session lock is accepted again; while another receiver holds the
  session (an earlier incarnation whose lock has not expired) the agent retries
  every second and keeps reaping and heartbeating.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from pydantic import ValidationError

from agent import registration
from agent.config import AgentConfig
from agent.endrecords import EndRecords
from agent.identity import Identity, claim
from agent.lifeline import Lifeline
from agent.reporter import Reporter
from agent.runner import Runner, kill_trees, task_env, task_key
from shared.domain.messages import (
    ASSIGNMENT,
    NODES_QUEUE,
    REPLIES_QUEUE,
    REPLY,
    AssignmentRefused,
    CancelTask,
    NodeStopping,
    RunTask,
    Superseded,
    TaskStarted,
)
from shared.ports.bus import (
    DEFAULT_LOCK_DURATION_MS,
    Bus,
    BusError,
    MessageLockLostError,
    ReceivedMessage,
    SessionLockedError,
    SessionLockLostError,
    SessionReceiver,
)
from shared.ports.output import OutputStore

log = logging.getLogger(__name__)

BUSY_POLL_MS = 5
"""Receive wait while tasks run: bounds how late a process exit is noticed."""
MAX_RECEIVE = 16
"""Assignments taken per receive."""
ACCEPT_RETRY_S = 1.0
"""How often a session held by another receiver is tried again."""
_ACCEPT_LOG_EVERY_S = 10.0
_BACKOFF_MIN_S = 0.2
_BACKOFF_MAX_S = 5.0
_MAX_SEND_BYTES = 192 * 1024
"""One events batch stays well under a Service Bus batch limit (256 KB on Standard)."""
_REMEMBERED = 10_000
"""How many ended attempts are remembered to ignore their redelivered assignments."""
_STOP_SEND_ATTEMPTS = 3
_RECENT_MAX = 500
"""Most recent endings a heartbeat repeats."""
INVALID_MESSAGE = "InvalidMessage"
"""Dead-letter reason of an assignment the agent cannot parse."""


@dataclass(frozen=True)
class _Settle:
    """What to do with a received message once its events are sent."""

    action: str  # "complete" | "abandon" | "dead_letter"
    reason: str | None = None
    description: str | None = None


_COMPLETE = _Settle("complete")
_ABANDON = _Settle("abandon")


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
        self._identity: Identity | None = None
        self._replies: SessionReceiver | None = None
        self.reporter = Reporter(bus, config.name, clock=clock)
        self._records = EndRecords(config.state_dir / "ends") if config.state_dir else None
        self._reported: list[str] = []
        """Attempts whose end was queued for sending: their end records go once it is sent."""
        self._stop = threading.Event()
        self._running: dict[str, Runner] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._receiver: SessionReceiver | None = None
        self._lock_span = timedelta(milliseconds=DEFAULT_LOCK_DURATION_MS)
        self._next_accept = 0.0
        self._last_accept_log = float("-inf")
        self._next_beat = 0.0
        self._backoff_s = 0.0
        self._lifeline: Lifeline | None = None

    # ------------------------------------------------------------ public

    @property
    def free_cores(self) -> int:
        """Cores not taken by running tasks (never below 0; the scheduler keeps within them)."""
        used = sum(r.task.cores for r in list(self._running.values()))
        return max(0, self.config.cores - used)

    @property
    def running(self) -> list[str]:
        """Keys ("job.task.attempt") of the tasks running now."""
        return sorted(self._running)

    def stop(self) -> None:
        """Ask :meth:`run` to end: running tasks are killed, NodeStopping is sent."""
        self._stop.set()

    def run(self) -> None:
        """Claim the node name on this machine (raises NameInUse), register (raises
        RegistrationRefused), then run assignments until :meth:`stop`."""
        if self._stop.is_set():
            return
        cfg = self.config
        self._identity = claim(cfg.name, cfg.state_dir)
        try:
            if not self._register():
                return
            if cfg.lifeline:
                self._lifeline = Lifeline()
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
        incarnation = registration.register(
            self.bus,
            self._replies,
            registration.request(
                node=cfg.name,
                groups=cfg.groups,
                cores=cfg.cores,
                agent_id=self.agent_id,
                host_id=self._identity.host_id,
            ),
            retry_s=cfg.registration_retry_s,
            stop=self._stop,
        )
        if incarnation is None:
            return False
        self.incarnation = incarnation
        self.reporter.begin(incarnation)
        self._next_beat = self.clock()  # say at once what runs here
        log.info("node %s is ours as incarnation %d", cfg.name, incarnation)
        self._report_leftovers()
        return True

    def _report_leftovers(self) -> None:
        """Ends recorded on disk that an earlier agent of this node died before reporting."""
        if self._records is None:
            return
        for left in self._records.leftovers(running=set(self._running)):
            key = task_key(left.job_id, left.task_id, left.attempt)
            log.warning(
                "task %s ended (exit code %d) but its agent died before saying so; reporting it",
                key,
                left.exit_code,
            )
            self.reporter.ended(left, exit_code=left.exit_code)
            self._reported.append(key)

    def _forget_reported(self) -> None:
        """Once every queued event is sent, the end records behind them are not needed."""
        if self._records is None or self.reporter.pending or not self._reported:
            return
        for key in self._reported:
            self._records.forget(key)
        self._reported.clear()

    def _recorded_end(self, runner: Runner) -> int | None:
        """The exit code the task's shell recorded: it ran to its end (even if killed since)."""
        return None if self._records is None else self._records.read(runner.key)

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
                    self._drop_session()
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
        self._reap()
        self._heartbeat_if_due()
        self.reporter.flush()  # report endings now, not after the receive wait below
        self._forget_reported()
        self._accept_if_needed()
        messages = self._receive()
        settles = self._handle(messages)
        try:
            self.reporter.flush()
        finally:
            # Settle even when sending failed (the events stay in the outbox): an unsettled
            # session message stays locked for as long as this agent holds the session.
            self._settle(messages, settles)
        self._renew_if_due()

    def _accept_if_needed(self) -> None:
        if self._receiver is not None:
            return
        now = self.clock()
        if now < self._next_accept:
            return
        self._next_accept = now + ACCEPT_RETRY_S
        name = self.config.name
        try:
            receiver = self.bus.get_session_receiver(NODES_QUEUE, session_id=name)
        except SessionLockedError:
            if now - self._last_accept_log >= _ACCEPT_LOG_EVERY_S:
                self._last_accept_log = now
                log.warning(
                    "session %r of queue %r is held by another receiver (an earlier agent "
                    "whose lock has not expired?); retrying every %.0f s",
                    name,
                    NODES_QUEUE,
                    ACCEPT_RETRY_S,
                )
            return
        span = receiver.session_locked_until - _now_like(receiver.session_locked_until)
        if span > timedelta(0):
            self._lock_span = span
        self._receiver = receiver
        self._last_accept_log = float("-inf")
        log.info("holding session %r of queue %r; waiting for assignments", name, NODES_QUEUE)

    def _receive(self) -> list[ReceivedMessage]:
        if self._receiver is None:
            self._stop.wait(self.config.poll_ms / 1000)
            return []
        # While tasks run, wake often enough that an exit is reported within a few ms.
        wait_ms = min(self.config.poll_ms, BUSY_POLL_MS) if self._running else self.config.poll_ms
        return self._receiver.receive(max_messages=MAX_RECEIVE, max_wait_ms=wait_ms)

    def _renew_if_due(self) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        until = receiver.session_locked_until
        if until - _now_like(until) <= self._lock_span / 2:
            receiver.renew_session_lock()

    def _drop_session(self) -> None:
        receiver, self._receiver = self._receiver, None
        self._next_accept = 0.0
        if receiver is not None:
            try:
                receiver.close()
            except Exception as exc:  # a lost lock has nothing left to release
                log.debug("closing the session receiver: %s", exc)

    # ------------------------------------------------------- assignments

    def _handle(self, messages: Sequence[ReceivedMessage]) -> list[_Settle]:
        """Act on each message in order; cancels of running tasks are killed together at
        the end of the batch (one grace period for all of them)."""
        settles: list[_Settle] = []
        to_kill: list[Runner] = []
        for message in messages:
            try:
                assignment = ASSIGNMENT.validate_json(message.body)
            except ValidationError as exc:
                description = _short(str(exc))
                log.warning("dead-lettering an invalid assignment: %s", description)
                settles.append(_Settle("dead_letter", INVALID_MESSAGE, description))
                continue
            try:
                if isinstance(assignment, RunTask):
                    self._run_task(assignment)
                else:
                    runner = self._cancel_task(assignment)
                    if runner is not None:
                        to_kill.append(runner)
            except Exception:
                log.exception("could not act on %s; it will be delivered again", assignment)
                settles.append(_ABANDON)
            else:
                settles.append(_COMPLETE)
        if to_kill:
            self._end_killed(to_kill, canceled=True)
        return settles

    def _run_task(self, task: RunTask) -> None:
        key = task_key(task.job_id, task.task_id, task.attempt)
        if task.incarnation != self.incarnation:
            log.info(
                "dropping task %s: it was meant for incarnation %d of this node, not %s",
                key,
                task.incarnation,
                self.incarnation,
            )
            self.reporter.emit(
                AssignmentRefused(
                    **self.reporter.stamp(),
                    job_id=task.job_id,
                    task_id=task.task_id,
                    attempt=task.attempt,
                    meant_for=task.incarnation,
                    reason=f"meant for incarnation {task.incarnation}, this is {self.incarnation}",
                )
            )
            return
        if key in self._running or key in self._ended:
            log.info("task %s was assigned again; it runs or ran already", key)
            return
        older = [
            r
            for r in self._running.values()
            if (r.task.job_id, r.task.task_id) == (task.job_id, task.task_id)
        ]
        if older:  # the control plane gave up on those attempts: they must not hold cores
            log.info("task %s supersedes %s here; killing them", key, [r.key for r in older])
            for runner in older:
                del self._running[runner.key]
                self._remember(runner.key)
            self._end_killed(older, canceled=True)
        env = task_env(task, node=self.config.name, group=self.config.groups[0])
        record = (
            None
            if self._records is None
            else (self._records, self._records.path(task.job_id, task.task_id, task.attempt))
        )
        runner = Runner(task, output=self.output, env=env, end_record=record)
        error = runner.start()
        if error is not None:
            self._remember(key)
            log.warning("task %s could not start: %s", key, error)
            self.reporter.ended(task, exit_code=None, error=error)
            return
        self._running[key] = runner
        if self._lifeline is not None and runner.pid is not None:
            self._lifeline.track(runner.pid)  # its process group id
        log.info(
            "task %s started (pid %s, %d cores): %s",
            key,
            runner.pid,
            task.cores,
            _short(task.command, 200),
        )
        self.reporter.emit(
            TaskStarted(
                **self.reporter.stamp(),
                job_id=task.job_id,
                task_id=task.task_id,
                attempt=task.attempt,
                pid=runner.pid,
            )
        )

    def _cancel_task(self, cancel: CancelTask) -> Runner | None:
        """The runner to kill, or None when this attempt does not run here. An attempt
        this agent never saw is reported canceled so the control plane is not left waiting;
        one that ended already was reported, and its later TaskEnded would be stale anyway."""
        key = task_key(cancel.job_id, cancel.task_id, cancel.attempt)
        if cancel.incarnation != self.incarnation:
            return None  # meant for an earlier agent of this node: nothing of ours
        runner = self._running.pop(key, None)
        if runner is not None:
            self._remember(key)
            return runner
        if key not in self._ended:
            self._remember(key)
            log.info("task %s canceled before it ran here", key)
            self.reporter.ended(cancel, exit_code=None, canceled=True)
        return None

    def _end_killed(self, runners: Sequence[Runner], *, canceled: bool) -> None:
        codes = kill_trees(runners, grace_s=self.config.kill_grace_s)
        for runner, code in zip(runners, codes, strict=True):
            tail = self._finish(runner)
            recorded = self._recorded_end(runner)
            if recorded is not None:  # it had ended before the kill: say how
                log.info("task %s ended (exit code %d) before it was killed", runner.key, recorded)
                self.reporter.ended(runner.task, exit_code=recorded, output=tail)
            else:
                log.info("task %s canceled (exit code %s)", runner.key, code)
                self.reporter.ended(runner.task, exit_code=code, canceled=canceled, output=tail)
            self._reported.append(runner.key)

    def _reap(self) -> None:
        for key, runner in list(self._running.items()):
            code = runner.poll()
            if code is None:
                continue
            del self._running[key]
            self._remember(key)
            tail = self._finish(runner)
            log.info(
                "task %s ended: exit code %d after %.2f s",
                key,
                code,
                time.monotonic() - runner.started_at,
            )
            self.reporter.ended(runner.task, exit_code=code, output=tail)
            self._reported.append(key)

    def _remember(self, key: str) -> None:
        self._ended[key] = None
        self._ended.move_to_end(key)
        while len(self._ended) > _REMEMBERED:
            self._ended.popitem(last=False)

    def _settle(self, messages: Sequence[ReceivedMessage], settles: Sequence[_Settle]) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        for message, settle in zip(messages, settles, strict=True):
            try:
                if settle.action == "complete":
                    receiver.complete(message)
                elif settle.action == "abandon":
                    receiver.abandon(message)
                else:
                    receiver.dead_letter(
                        message,
                        reason=settle.reason or INVALID_MESSAGE,
                        error_description=settle.description,
                    )
            except MessageLockLostError as exc:  # it comes again; the repeat is ignored
                log.warning("could not settle message %s: %s", message.message_id, exc)

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
            running=self.running,
            keep_s=self.config.recent_ended_s,
        )

    def _check_replies(self) -> None:
        """Learn whether our incarnation is over; if so, kill what runs and register again."""
        if self._replies is None or self.agent_id is None:
            return
        try:
            until = self._replies.session_locked_until
            if until - _now_like(until) <= self._lock_span / 2:
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
        log.error(
            "incarnation %s of node %s is over: %s; killing %d task(s) and registering again",
            self.incarnation,
            self.config.name,
            over.reason,
            len(self._running),
        )
        runners = list(self._running.values())
        self._running.clear()
        if runners:
            kill_trees(runners, grace_s=self.config.kill_grace_s)
            for runner in runners:
                self._remember(runner.key)
                tail = self._finish(runner)
                recorded = self._recorded_end(runner)
                if recorded is not None:  # it ran to its end: its result may still count
                    self.reporter.ended(runner.task, exit_code=recorded, output=tail)
                    self._reported.append(runner.key)
        self._drop_session()
        self.incarnation = None
        if not self._register():
            self._stop.set()

    # ---------------------------------------------------------- shutdown

    def _shutdown(self) -> None:
        """Kill what runs, say NodeStopping (the control plane requeues the node's tasks),
        release the session."""
        runners = list(self._running.values())
        killed = sorted(self._running)
        self._running.clear()
        if runners:
            log.info("stopping: killing %d running task(s)", len(runners))
            kill_trees(runners, grace_s=self.config.kill_grace_s)
            for runner in runners:
                tail = self._finish(runner)  # publishes what they wrote
                recorded = self._recorded_end(runner)
                if recorded is not None and self.incarnation is not None:
                    self.reporter.ended(runner.task, exit_code=recorded, output=tail)
                    self._reported.append(runner.key)
                    killed.remove(runner.key)
                # the others are requeued by NodeStopping, not ended
        if self.incarnation is not None:
            self.reporter.emit(NodeStopping(**self.reporter.stamp(), killed=killed))
            for attempt in range(1, _STOP_SEND_ATTEMPTS + 1):
                try:
                    self.reporter.flush()
                    self._forget_reported()
                    break
                except Exception as exc:
                    log.warning("could not send NodeStopping (try %d): %s", attempt, exc)
                    time.sleep(_BACKOFF_MIN_S)
            else:
                log.error("NodeStopping not sent: the control plane will find this node silent")
        self._drop_session()
        if self._lifeline is not None:
            self._lifeline.close()
            self._lifeline = None
        log.info("agent %s stopped", self.config.name)

    def _finish(self, runner: Runner) -> str:
        """Collect an ended task's output; its process group is gone, so forget it."""
        tail = runner.finish()
        if self._lifeline is not None and runner.pid is not None:
            self._lifeline.untrack(runner.pid)
        return tail


def _now_like(moment: datetime) -> datetime:
    """Now, as aware UTC or naive UTC to compare with ``moment``."""
    now = datetime.now(UTC)
    return now if moment.tzinfo is not None else now.replace(tzinfo=None)


def _short(text: str, limit: int = 1000) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
