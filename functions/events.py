"""Service Bus trigger: agent events (registrations, heartbeats, task starts and ends)."""

from __future__ import annotations

import logging

import azure.functions as func
from pydantic import ValidationError

from functions.context import control
from shared.messages import CONNECTION_SETTING, EVENT, EVENTS_QUEUE

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.service_bus_queue_trigger(
    arg_name="messages",
    queue_name=EVENTS_QUEUE,
    connection=CONNECTION_SETTING,
    cardinality="many",
)
def on_events(messages: list[func.ServiceBusMessage]) -> None:
    """Apply a batch of events; a malformed one is logged and dropped (it can never succeed)."""
    events = []
    for message in messages:
        try:
            events.append(EVENT.validate_json(message.get_body()))
        except ValidationError as e:
            log.error("dropping malformed event %s: %s", message.message_id, e)
    if events:
        control().apply_events(events)
