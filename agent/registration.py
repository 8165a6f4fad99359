"""Registration: ask the control plane for the node, wait for its answer on our own session.

The request (RegisterNode) goes on the events queue; the answer (Registration) comes back
on the replies queue in the session named after this process's ``agent_id``. The same
request is sent again every ``registration_retry_s`` until answered (the control plane may
be down or restarting); the control plane answers a repeat the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from pydantic import ValidationError

from shared.domain.messages import (
    EVENTS_QUEUE,
    REPLY,
    EndedAttempt,
    RegisterNode,
    Registration,
)
from shared.domain.protocol import AGENT_PROTOCOL
from shared.ports.bus import Bus, BusError, OutgoingMessage, SessionReceiver

log = logging.getLogger(__name__)

_WAIT_LOG_EVERY_S = 10.0
_RECEIVE_MS = 200


class RegistrationRefused(Exception):
    """The control plane refused this agent the node; the message says why and what to do."""


def register(
    bus: Bus,
    replies: SessionReceiver,
    request: RegisterNode,
    *,
    retry_s: float,
    stop: threading.Event,
) -> Registration | None:
    """The accepted answer (its incarnation, and the control plane's heartbeat timeout if
    it says it), or None if ``stop`` was set first. Raises RegistrationRefused."""
    started = time.monotonic()
    next_send = 0.0
    next_log = started + _WAIT_LOG_EVERY_S
    body = request.to_bytes()
    while not stop.is_set():
        now = time.monotonic()
        try:
            if now >= next_send:
                bus.send(EVENTS_QUEUE, OutgoingMessage(body=body, subject="register"))
                next_send = now + retry_s
            messages = replies.receive(max_messages=10, max_wait_ms=_RECEIVE_MS)
        except BusError as exc:
            log.warning("registration: bus error %s; retrying", exc)
            stop.wait(min(retry_s, 1.0))
            continue
        for message in messages:
            _complete(replies, message)
            try:
                reply = REPLY.validate_json(message.body)
            except ValidationError:
                log.warning("ignoring an unreadable reply %s", message.message_id)
                continue
            if not isinstance(reply, Registration) or reply.agent_id != request.agent_id:
                continue
            if not reply.accepted or reply.incarnation is None:
                raise RegistrationRefused(reply.reason or f"node {request.node!r}: refused")
            return reply
        if now >= next_log:
            next_log = now + _WAIT_LOG_EVERY_S
            log.warning(
                "node %s: no answer to registration for %.0f s; is the control plane up? "
                "(asking again every %g s)",
                request.node,
                now - started,
                retry_s,
            )
    return None


def request(
    *,
    node: str,
    groups: list[str],
    cores: int,
    agent_id: str,
    host_id: str,
    ended: list[EndedAttempt] | None = None,
    run_as_owner: bool = False,
    started_at: datetime | None = None,
    memory_mb: int | None = None,
) -> RegisterNode:
    """The registration request. ``groups`` is only proposed: the control plane takes it on
    the node's first registration and keeps its own groups after that (an admin changes
    them with ``hpc node set``); ``cores`` counts for an on-prem node, not a managed VM;
    ``memory_mb`` (the machine's) counts for any node (None: left off the wire).
    It carries this agent's protocol: which assignments it reads (shared.domain.protocol)."""
    return RegisterNode(
        node=node,
        groups=groups,
        cores=cores,
        agent_id=agent_id,
        host_id=host_id,
        started_at=started_at or datetime.now(UTC),
        ended=ended or [],
        protocol=AGENT_PROTOCOL,
        run_as_owner=run_as_owner,
        memory_mb=memory_mb,
    )


def _complete(receiver: SessionReceiver, message: object) -> None:
    try:
        receiver.complete(message)  # type: ignore[arg-type]
    except BusError as exc:
        log.debug("could not complete reply: %s", exc)
