"""Service Bus trigger: scheduler kicks, on a session-enabled queue with one session id,
so exactly one pass runs at a time across all instances (single writer of placements).

Batched (``cardinality="many"``) so that a burst of kicks makes one pass, not one each.
Azure renews no lock for a batch trigger: a pass must end well inside the queue's lock
(SCHEDULER_LOCK_MS), or the kicks and the session go to another instance while it still
runs. docs/functions.md explains these choices and host.json's."""

from __future__ import annotations

import typing

import azure.functions as func

from functions.context import control
from shared.domain.messages import CONNECTION_SETTING, SCHEDULER_QUEUE

bp = func.Blueprint()


@bp.service_bus_queue_trigger(
    arg_name="kicks",
    queue_name=SCHEDULER_QUEUE,
    connection=CONNECTION_SETTING,
    is_sessions_enabled=True,
    cardinality="many",
    auto_complete_messages=True,
)
def schedule(kicks: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
    """One pass serves every kick in the batch: kicks coalesce. (``typing.List``: Azure's
    Python worker refuses ``list[...]`` binding annotations.)"""
    control().schedule_pass()
