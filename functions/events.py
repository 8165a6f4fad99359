"""Service Bus trigger: agent events (registrations, heartbeats, task starts and ends).

Batched; completed when the function returns, abandoned (and delivered again, then
dead-lettered) when it raises: applying an event twice changes nothing. No lock is renewed
for a batch, so a batch must be applied within the events queue's lock (EVENTS_LOCK_MS)."""

from __future__ import annotations

import logging
import typing

import azure.functions as func

from functions.context import control
from shared.domain.messages import CONNECTION_SETTING, EVENTS_QUEUE

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.service_bus_queue_trigger(
    arg_name="messages",
    queue_name=EVENTS_QUEUE,
    connection=CONNECTION_SETTING,
    cardinality="many",
    auto_complete_messages=True,
)
def on_events(messages: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
    """Apply a batch of events. Each is validated on its own: one that can never apply is
    parked on the rejected-events queue with its reason and the rest still apply.
    (``typing.List``: Azure's Python worker refuses ``list[...]`` binding annotations.)"""
    control().apply_event_messages([(m.message_id or "", m.get_body()) for m in messages])
