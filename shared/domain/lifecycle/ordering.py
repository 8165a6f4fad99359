"""The order events of one node apply in, whatever order a batch delivers them in.

Part of :mod:`shared.domain.lifecycle` (its docstring states the guarantees). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.domain.messages import (
    MAX_ID,
    AgentEvent,
    Event,
    Heartbeat,
    TaskEnded,
    TaskStarted,
    attempt_key,
)


def in_order(events: Iterable[Event]) -> list[Event]:
    """The events of each node in the order its agent sent them (incarnation, then seq), with
    a registration after the events of the incarnations before it. Stable otherwise."""

    def key(ev: Event) -> tuple[str, int, int]:
        if isinstance(ev, AgentEvent):
            return (ev.node, ev.incarnation, ev.seq)
        return (ev.node, MAX_ID, -1)

    return sorted(events, key=key)


def brought_up_to_date(beat: Heartbeat, later: Iterable[Event]) -> Heartbeat:
    """``beat`` as of the node's last event in a batch (``later``: its events after it, in
    order; others are passed over): attempts its node started after it are running,
    attempts that ended after it are not.

    A batch applies each node's last heartbeat after its task events (one snapshot does for
    all); applied as sent, a heartbeat older than an end in the same batch listed the ended
    attempt as running, and its node was told to kill an attempt already over (the "runs
    attempts no longer its own" of every busy Cosmos run). An end is not added to the
    heartbeat's recent ends: its own TaskEnded (with its output) applies it, and if that
    failed the batch comes again; a recovery from here would keep no output.
    """
    running = dict.fromkeys(beat.running)
    for ev in later:
        if not isinstance(ev, TaskStarted | TaskEnded):
            continue
        if (ev.node, ev.incarnation) != (beat.node, beat.incarnation) or ev.seq <= beat.seq:
            continue
        key = attempt_key(ev.job_id, ev.task_id, ev.attempt)
        if isinstance(ev, TaskStarted):
            running[key] = None
        else:
            running.pop(key, None)
    if list(running) == beat.running:
        return beat
    return beat.model_copy(update={"running": list(running)})
