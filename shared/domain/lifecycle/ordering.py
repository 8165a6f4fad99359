"""The order events of one node apply in, whatever order a batch delivers them in.

Part of :mod:`shared.domain.lifecycle` (its docstring states the guarantees). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.domain.messages import (
    MAX_ID,
    AgentEvent,
    EndedAttempt,
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
    """``beat`` as its agent would have sent it after ``later`` (the node's events a batch
    holds after it, in order): attempts started since are running, attempts ended since are
    not, and are among its recent ends.

    A batch applies each node's last heartbeat after its task events (one snapshot does for
    all); applied as sent, a heartbeat older than an end in the same batch listed the ended
    attempt as running, and its node was told to kill an attempt already over (the "runs
    attempts no longer its own" of every busy Cosmos run).
    """
    running = dict.fromkeys(beat.running)
    ended = {e.key: e for e in beat.ended}
    for ev in later:
        if not isinstance(ev, TaskStarted | TaskEnded):
            continue
        if (ev.node, ev.incarnation) != (beat.node, beat.incarnation) or ev.seq <= beat.seq:
            continue
        key = attempt_key(ev.job_id, ev.task_id, ev.attempt)
        if isinstance(ev, TaskStarted):
            if key not in ended:
                running[key] = None
            continue
        running.pop(key, None)
        ended[key] = EndedAttempt(
            key=key,
            exit_code=ev.exit_code,
            canceled=ev.canceled,
            error=ev.error,
            over_limit=ev.over_limit,
        )
    if list(running) == beat.running and len(ended) == len(beat.ended):
        return beat
    return beat.model_copy(update={"running": list(running), "ended": list(ended.values())})
