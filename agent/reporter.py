"""The agent's events on their way to the control plane: stamped, numbered, kept until sent.

Every event carries the node, the incarnation the control plane granted and a sequence
number that grows by one per event, so the control plane applies a batch in the order
the agent sent it. Events wait in an outbox that survives bus errors and go out in
order, in batches under Service Bus's size limit. Recent endings are remembered and
repeated in every heartbeat, so a TaskEnded lost on the way is recovered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from shared.domain.messages import (
    EVENTS_QUEUE,
    EndedAttempt,
    Heartbeat,
    Message,
    TaskEnded,
    attempt_key,
)
from shared.ports.bus import Bus, OutgoingMessage

MAX_SEND_BYTES = 192 * 1024
"""One events batch stays well under a Service Bus batch limit (256 KB on Standard)."""
RECENT_MAX = 500
"""Most recent endings a heartbeat repeats."""


class AttemptRef(Protocol):
    @property
    def job_id(self) -> int: ...
    @property
    def task_id(self) -> int: ...
    @property
    def attempt(self) -> int: ...


class Reporter:
    def __init__(self, bus: Bus, node: str, *, clock: Callable[[], float]) -> None:
        self.bus, self.node, self.clock = bus, node, clock
        self.incarnation: int | None = None
        self._seq = 0
        self._outbox: list[Message] = []
        self._recent: deque[tuple[float, EndedAttempt]] = deque(maxlen=RECENT_MAX)

    def begin(self, incarnation: int) -> None:
        """A new incarnation: numbering starts again."""
        self.incarnation, self._seq = incarnation, 0

    def stamp(self) -> dict[str, Any]:
        """Node, incarnation and the next sequence number, for an event about to be sent."""
        assert self.incarnation is not None
        self._seq += 1
        return {"node": self.node, "incarnation": self.incarnation, "seq": self._seq}

    def emit(self, event: Message) -> None:
        self._outbox.append(event)

    def ended(
        self,
        task: AttemptRef,
        *,
        exit_code: int | None,
        canceled: bool = False,
        output: str = "",
        error: str | None = None,
        over_limit: bool = False,
    ) -> None:
        """Report an attempt's end, and remember it for the next heartbeats."""
        key = attempt_key(task.job_id, task.task_id, task.attempt)
        self._recent.append(
            (
                self.clock(),
                EndedAttempt(
                    key=key,
                    exit_code=exit_code,
                    canceled=canceled,
                    error=error,
                    over_limit=over_limit,
                ),
            )
        )
        self.emit(
            TaskEnded(
                **self.stamp(),
                job_id=task.job_id,
                task_id=task.task_id,
                attempt=task.attempt,
                exit_code=exit_code,
                canceled=canceled,
                output=output,
                error=error,
                over_limit=over_limit,
            )
        )

    def heartbeat(
        self, *, agent_id: str, free_cores: int, running: list[str], keep_s: float
    ) -> None:
        # An unsent older heartbeat says nothing the new one does not.
        self._outbox = [m for m in self._outbox if not isinstance(m, Heartbeat)]
        horizon = self.clock() - keep_s
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        self.emit(
            Heartbeat(
                **self.stamp(),
                agent_id=agent_id,
                free_cores=free_cores,
                running=running,
                ended=[ended for _, ended in self._recent],
            )
        )

    def flush(self) -> None:
        """Send the outbox in order, in batches; what was not sent stays for the next try."""
        while self._outbox:
            batch: list[OutgoingMessage] = []
            size = 0
            for event in self._outbox:
                body = event.to_bytes()
                if batch and size + len(body) > MAX_SEND_BYTES:
                    break
                size += len(body)
                batch.append(
                    OutgoingMessage(
                        body=body,
                        content_type="application/json",
                        subject=getattr(event, "kind", None),
                    )
                )
            self.bus.send(EVENTS_QUEUE, batch)
            del self._outbox[: len(batch)]

    @property
    def pending(self) -> bool:
        """Events wait to be sent."""
        return bool(self._outbox)
