"""The agent's hold on its node's session of the ``nodes`` queue.

Accepting is retried every ``ACCEPT_RETRY_S`` while another receiver holds the session
(an earlier agent of the node whose lock has not expired yet); the lock is renewed when
half of it is left; a lost lock is dropped and accepted again. Messages are settled
through the receiver that got them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.domain.messages import NODES_QUEUE
from shared.ports.bus import (
    DEFAULT_LOCK_DURATION_MS,
    Bus,
    MessageLockLostError,
    ReceivedMessage,
    SessionLockedError,
    SessionReceiver,
)

log = logging.getLogger(__name__)

ACCEPT_RETRY_S = 1.0
"""How often a session held by another receiver is tried again."""
_ACCEPT_LOG_EVERY_S = 10.0
INVALID_MESSAGE = "InvalidMessage"
"""Dead-letter reason of an assignment the agent cannot parse."""


@dataclass(frozen=True)
class Settle:
    """What to do with a received message once its events are sent."""

    action: str  # "complete" | "abandon" | "dead_letter"
    reason: str | None = None
    description: str | None = None


_COMPLETE = Settle("complete")
_ABANDON = Settle("abandon")


COMPLETE = Settle("complete")
ABANDON = Settle("abandon")


class NodeSession:
    def __init__(self, bus: Bus, name: str, *, clock: Callable[[], float]) -> None:
        self.bus, self.name, self.clock = bus, name, clock
        self._receiver: SessionReceiver | None = None
        self.lock_span = timedelta(milliseconds=DEFAULT_LOCK_DURATION_MS)
        """The queue's lock duration, as seen on the first accept."""
        self._next_accept = 0.0
        self._last_accept_log = float("-inf")

    @property
    def held(self) -> bool:
        return self._receiver is not None

    def receive(self, *, max_messages: int, wait_ms: int) -> list[ReceivedMessage]:
        assert self._receiver is not None
        return self._receiver.receive(max_messages=max_messages, max_wait_ms=wait_ms)

    def accept_if_needed(self) -> None:
        if self._receiver is not None:
            return
        now = self.clock()
        if now < self._next_accept:
            return
        self._next_accept = now + ACCEPT_RETRY_S
        name = self.name
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
        span = receiver.session_locked_until - now_like(receiver.session_locked_until)
        if span > timedelta(0):
            self.lock_span = span
        self._receiver = receiver
        self._last_accept_log = float("-inf")
        log.info("holding session %r of queue %r; waiting for assignments", name, NODES_QUEUE)

    def renew_if_due(self) -> None:
        receiver = self._receiver
        if receiver is None:
            return
        until = receiver.session_locked_until
        if until - now_like(until) <= self.lock_span / 2:
            receiver.renew_session_lock()

    def drop(self) -> None:
        receiver, self._receiver = self._receiver, None
        self._next_accept = 0.0
        if receiver is not None:
            try:
                receiver.close()
            except Exception as exc:  # a lost lock has nothing left to release
                log.debug("closing the session receiver: %s", exc)

    def settle(self, messages: Sequence[ReceivedMessage], settles: Sequence[Settle]) -> None:
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


def now_like(moment: datetime) -> datetime:
    """Now, as aware UTC or naive UTC to compare with ``moment``."""
    now = datetime.now(UTC)
    return now if moment.tzinfo is not None else now.replace(tzinfo=None)
