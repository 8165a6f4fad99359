"""The order events of one node apply in, whatever order a batch delivers them in.

Part of :mod:`shared.domain.lifecycle` (its docstring states the guarantees). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.domain.messages import (
    MAX_ID,
    AgentEvent,
    Event,
)


def in_order(events: Iterable[Event]) -> list[Event]:
    """The events of each node in the order its agent sent them (incarnation, then seq), with
    a registration after the events of the incarnations before it. Stable otherwise."""

    def key(ev: Event) -> tuple[str, int, int]:
        if isinstance(ev, AgentEvent):
            return (ev.node, ev.incarnation, ev.seq)
        return (ev.node, MAX_ID, -1)

    return sorted(events, key=key)
