"""Service Bus triggers fed from a :class:`~shared.ports.bus.Bus`, settled as Functions settles them.

Per trigger, one dispatcher thread receives (waiting inside ``receive`` with a
``max_wait_ms``, so a message reaches the function within milliseconds) and
hands work to a small pool:

- queues without sessions: messages go to up to ``maxConcurrentCalls``
  parallel invocations (one message each), or, with ``cardinality="many"``,
  batches of up to ``maxMessageBatchSize`` go to one invocation at a time;
- session queues: the dispatcher accepts the next free session and a worker
  holds it, invoking the function on its messages in order (one at a time)
  until nothing arrives for ``sessionIdleTimeout``, then releases it; up to
  ``maxConcurrentSessions`` sessions are held at once.

After an invocation every message it got is completed, or abandoned if the
function raised, so ``delivery_count`` grows and the bus dead-letters a
message after ``max_delivery_count`` deliveries, as in Azure. For
single-message triggers, message and session locks are renewed while an
invocation runs, for at most ``maxAutoLockRenewalDuration``. As in Azure,
batch (``cardinality="many"``) triggers get no lock renewal and hold one
session at a time (``maxConcurrentCalls``, ``maxConcurrentSessions`` and
``maxAutoLockRenewalDuration`` apply to single-message triggers only): a batch
invocation that outlives its lock loses it, and its messages are delivered
again, here as there.

A receiver is used from more than one thread (received by the dispatcher,
settled by a worker, renewed by the renewer), never concurrently for the same
message; Bus adapters must allow that (SqliteBus does).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessage

from devhost.config import HostConfig
from devhost.functions import FunctionSpec
from devhost.invoke import InvocationError, Invoker
from devhost.locks import LockRenewer
from shared.ports.bus import (
    Bus,
    MessageLockLostError,
    NoSessionAvailable,
    ReceivedMessage,
    Receiver,
    SessionLockLostError,
    SessionReceiver,
)

log = logging.getLogger(__name__)

RECEIVE_WAIT_MS = 200
"""How long a dispatcher waits inside one receive; bounds how long stopping takes."""
RETRY_MAX_S = 30.0
"""Longest pause before retrying a listener whose bus calls fail (missing queue, ...)."""


# --- messages ---------------------------------------------------------------------


def to_function_message(message: ReceivedMessage) -> ServiceBusMessage:
    """The message as the worker hands it to a function, trigger metadata included."""
    properties = dict(message.application_properties)
    ttl = message.expires_at - message.enqueued_time if message.expires_at is not None else None
    metadata: dict[str, Any] = {
        "MessageId": message.message_id,
        "SessionId": message.session_id,
        "DeliveryCount": message.delivery_count,
        "SequenceNumber": message.sequence_number,
        "EnqueuedTimeUtc": message.enqueued_time.isoformat(),
        "LockedUntil": message.locked_until.isoformat() if message.locked_until else None,
        "LockToken": message.lock_token,
        "ContentType": message.content_type,
        "Subject": message.subject,
        "Label": message.subject,
        "ExpiresAtUtc": message.expires_at.isoformat() if message.expires_at else None,
        "DeadLetterReason": message.dead_letter_reason,
    }
    trigger_metadata = {
        key: Datum(value, "int" if isinstance(value, int) else "string")
        for key, value in metadata.items()
        if value is not None
    }
    for key in ("ApplicationProperties", "UserProperties"):
        trigger_metadata[key] = Datum(json.dumps(properties, default=str), "json")
    return ServiceBusMessage(
        body=message.body,
        trigger_metadata=trigger_metadata,
        application_properties=properties,
        user_properties=dict(properties),
        content_type=message.content_type,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_error_description=message.dead_letter_error_description,
        delivery_count=message.delivery_count,
        enqueued_sequence_number=message.sequence_number,
        enqueued_time_utc=message.enqueued_time,
        expires_at_utc=message.expires_at,
        label=message.subject,
        subject=message.subject,
        locked_until=message.locked_until,
        lock_token=message.lock_token,
        message_id=message.message_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        time_to_live=ttl,
    )


# --- listeners ------------------------------------------------------------------------


class Listener:
    """What both listeners share: a dispatcher thread, a worker pool, retries, settlement."""

    def __init__(
        self,
        spec: FunctionSpec,
        bus: Bus,
        invoker: Invoker,
        renewer: LockRenewer,
        config: HostConfig,
        *,
        slots: int,
    ) -> None:
        self.spec = spec
        self.queue: str = spec.trigger["queueName"]
        self._bus = bus
        self._invoker = invoker
        self._renewer = renewer
        self._config = config
        self._batch_size = max(1, config.max_message_batch_size) if spec.cardinality_many else 1
        self._slots = threading.BoundedSemaphore(slots)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"sb-{spec.name}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dispatch, name=f"sb-{spec.name}", daemon=True)
        self._retry_s = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop receiving; running invocations finish and settle (see :meth:`join`)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread.ident is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True)
        return not self._thread.is_alive()

    def _dispatch(self) -> None:
        raise NotImplementedError

    def _take_slot(self) -> bool:
        """Wait for a free worker; False if stopping."""
        while not self._stop.is_set():
            if self._slots.acquire(timeout=RECEIVE_WAIT_MS / 1000):
                return True
        return False

    def _failed(self, what: str, error: Exception) -> None:
        """Log a bus failure and pause before retrying (backing off up to RETRY_MAX_S)."""
        self._retry_s = min(RETRY_MAX_S, max(0.5, self._retry_s * 2))
        log.error(
            "Service Bus trigger %s (queue %r): %s failed: %r; retrying in %.1f s",
            self.spec.name,
            self.queue,
            what,
            error,
            self._retry_s,
        )
        self._stop.wait(self._retry_s)

    def _process(self, receiver: Receiver, messages: list[ReceivedMessage], renew: bool) -> None:
        """Invoke the function on ``messages`` and settle them by the outcome."""
        argument: Any = [to_function_message(m) for m in messages]
        if not self.spec.cardinality_many:
            argument = argument[0]
        succeeded = False
        lease = (
            self._renewer.keep(
                f"{len(messages)} message(s) of {self.queue!r}",
                lambda: min(receiver.renew_message_lock(m) for m in messages),
                min((m.locked_until for m in messages if m.locked_until), default=None),
            )
            if renew and not self.spec.cardinality_many
            else nullcontext()
        )
        with lease:
            try:
                self._invoker.call(self.spec, argument)
                succeeded = True
            except InvocationError:
                ids = ", ".join(f"{m.message_id} (delivery {m.delivery_count})" for m in messages)
                log.error("%s failed on %s; abandoning for redelivery", self.spec.name, ids)
            except Exception:
                log.exception("%s could not be invoked", self.spec.name)
        for message in messages:
            try:
                if succeeded:
                    receiver.complete(message)
                else:
                    receiver.abandon(message)
            except (MessageLockLostError, SessionLockLostError) as e:
                log.warning(
                    "message %s of %r: lock lost before settling (%r); it will be redelivered",
                    message.message_id,
                    self.queue,
                    e,
                )
            except Exception:
                log.exception("could not settle message %s of %r", message.message_id, self.queue)


class QueueListener(Listener):
    """A trigger on a queue without sessions."""

    def __init__(
        self,
        spec: FunctionSpec,
        bus: Bus,
        invoker: Invoker,
        renewer: LockRenewer,
        config: HostConfig,
    ) -> None:
        slots = 1 if spec.cardinality_many else max(1, config.max_concurrent_calls)
        super().__init__(spec, bus, invoker, renewer, config, slots=slots)

    def _dispatch(self) -> None:
        receiver: Receiver | None = None
        try:
            while self._take_slot():
                # Take every free worker at once, so one receive can feed them all.
                taken = 1
                while not self.spec.cardinality_many and self._slots.acquire(blocking=False):
                    taken += 1
                try:
                    if receiver is None:
                        receiver = self._bus.get_receiver(self.queue)
                    messages = receiver.receive(
                        max_messages=self._batch_size if self.spec.cardinality_many else taken,
                        max_wait_ms=RECEIVE_WAIT_MS,
                    )
                    self._retry_s = 0.0
                except Exception as e:
                    self._release(taken)
                    _close(receiver)
                    receiver = None
                    self._failed("receive", e)
                    continue
                work = [messages] if self.spec.cardinality_many else [[m] for m in messages]
                work = [w for w in work if w]
                self._release(taken - len(work))
                for batch in work:
                    self._pool.submit(self._work, receiver, batch)
        finally:
            self._pool.shutdown(wait=True)
            _close(receiver)

    def _release(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    def _work(self, receiver: Receiver, messages: list[ReceivedMessage]) -> None:
        try:
            self._process(receiver, messages, renew=True)
        finally:
            self._slots.release()


class SessionListener(Listener):
    """A trigger on a session-enabled queue: each held session is processed in order."""

    def __init__(
        self,
        spec: FunctionSpec,
        bus: Bus,
        invoker: Invoker,
        renewer: LockRenewer,
        config: HostConfig,
    ) -> None:
        slots = 1 if spec.cardinality_many else max(1, config.max_concurrent_sessions)
        super().__init__(spec, bus, invoker, renewer, config, slots=slots)
        self._idle_ms = max(1, round(config.session_idle_timeout_s * 1000))

    def _dispatch(self) -> None:
        try:
            while self._take_slot():
                try:
                    session = self._bus.get_session_receiver(
                        self.queue, session_id=None, max_wait_ms=RECEIVE_WAIT_MS
                    )
                    self._retry_s = 0.0
                except NoSessionAvailable:
                    self._slots.release()
                    continue
                except Exception as e:
                    self._slots.release()
                    self._failed("accepting a session", e)
                    continue
                self._pool.submit(self._hold, session)
        finally:
            self._pool.shutdown(wait=True)

    def _hold(self, session: SessionReceiver) -> None:
        """Process the session's messages in order until it idles, then release it."""
        try:
            what = f"session {session.session_id!r} of {self.queue!r}"
            renewed = None if self.spec.cardinality_many else session.session_locked_until
            with self._renewer.keep(what, session.renew_session_lock, renewed):
                while not self._stop.is_set():
                    messages = session.receive(
                        max_messages=self._batch_size, max_wait_ms=self._idle_ms
                    )
                    if not messages:
                        break
                    self._process(session, messages, renew=False)  # the session's lock covers them
        except SessionLockLostError as e:
            log.warning("%s: session lock lost (%r); releasing it", self.spec.name, e)
        except Exception:
            log.exception("%s: session %r failed", self.spec.name, session.session_id)
        finally:
            _close(session)
            self._slots.release()


def _close(receiver: Receiver | None) -> None:
    if receiver is None:
        return
    try:
        receiver.close()
    except Exception:
        log.exception("could not close a receiver of %r", receiver.queue)


def listener_for(
    spec: FunctionSpec, bus: Bus, invoker: Invoker, renewer: LockRenewer, config: HostConfig
) -> Listener:
    """The listener a trigger needs (sessions or not)."""
    if spec.sessions:
        return SessionListener(spec, bus, invoker, renewer, config)
    return QueueListener(spec, bus, invoker, renewer, config)
