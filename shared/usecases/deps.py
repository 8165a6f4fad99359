"""What every use case works with: the ports, the settings and the clock, plus the few
helpers they share (retried writes, batched sends to nodes, scheduler kicks)."""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from shared.domain.messages import (
    NODES_QUEUE,
    REPLIES_QUEUE,
    SCHEDULER_QUEUE,
    SCHEDULER_SESSION,
    CancelTask,
    Message,
    RunTask,
)
from shared.domain.models import Job, Task
from shared.domain.states import JobState
from shared.domain.taskrange import TaskRange
from shared.errors import Conflict, Refused
from shared.ports.bus import Bus, OutgoingMessage
from shared.ports.compute import ComputeProvider
from shared.ports.output import OutputStore
from shared.ports.store import MAX_BATCH, MAX_BATCH_BYTES, Store, size_bound
from shared.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

CHUNK = MAX_BATCH - 1
"""Tasks per commit, leaving room for their job's document in the same transaction."""
REPLY_TTL_MS = 120_000
"""A reply nobody collects (its agent died) expires."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Backoff:
    """Retries of a write that met a Conflict: exponential with full jitter, so writers that
    collided do not collide again in lock-step. ``sleep`` is injectable for tests."""

    tries: int = 12
    base_s: float = 0.002
    cap_s: float = 0.25
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delays(self) -> Iterable[float]:
        for i in range(self.tries - 1):
            yield self.rng.uniform(0, min(self.cap_s, self.base_s * 2**i))


@dataclass
class Deps:
    store: Store
    bus: Bus
    output: OutputStore
    settings: Settings
    clock: Callable[[], datetime] = _utcnow
    backoff: Backoff = field(default_factory=Backoff)
    compute: ComputeProvider | None = None
    """Provider of managed nodes (None: only agents that join by themselves)."""

    def retry(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` again, after a jittered pause, while it meets a Conflict (someone else
        wrote first). ``fn`` must re-read what it writes: each try starts from fresh state."""
        for delay in self.backoff.delays():
            try:
                return fn(*args, **kwargs)
            except Refused:
                raise  # the answer: another try reads the same
            except Conflict:
                self.backoff.sleep(delay)
        return fn(*args, **kwargs)

    def kick(self) -> None:
        """Ask for a scheduler pass (coalesced: one pass serves every kick it finds waiting)."""
        self.bus.send(SCHEDULER_QUEUE, OutgoingMessage(body=b"{}", session_id=SCHEDULER_SESSION))

    def send_to_nodes(self, assignments: Iterable[tuple[str, RunTask | CancelTask]]) -> None:
        """Send assignments to their nodes' sessions: one batch per node.

        A RunTask lives half of HPC_DISPATCH_TIMEOUT_S on the bus: the broker never delivers
        it after that, so once the reconciler gives a dispatch up (after the whole timeout)
        the node cannot start it any more, even if it gets its session back only then."""
        self.send_node_messages(self.node_message(node, m) for node, m in assignments)

    def send_node_messages(self, messages: Iterable[OutgoingMessage]) -> None:
        """Send messages made by :meth:`node_message`: one batch per node (session)."""
        per_node: dict[str | None, list[OutgoingMessage]] = defaultdict(list)
        for message in messages:
            per_node[message.session_id].append(message)
        for batch in per_node.values():
            self.bus.send(NODES_QUEUE, batch)

    def node_message(self, node: str, message: RunTask | CancelTask) -> OutgoingMessage:
        """An assignment as it goes on the bus (so its size can be checked before it is
        committed as sent)."""
        ttl_ms = max(1, int(self.settings.dispatch_timeout_s * 500))
        return OutgoingMessage(
            body=message.to_bytes(),
            session_id=node,
            time_to_live_ms=ttl_ms if isinstance(message, RunTask) else None,
        )

    def reply(self, agent_id: str, message: Message) -> None:
        """Answer one agent process on its own replies session."""
        self.bus.send(
            REPLIES_QUEUE,
            OutgoingMessage(
                body=message.to_bytes(), session_id=agent_id, time_to_live_ms=REPLY_TTL_MS
            ),
        )


CHUNK_BYTES = MAX_BATCH_BYTES - 500_000
"""What the tasks or ranges of one commit may take (by :func:`size_bound`), leaving room for
their job's own document in the same transactional batch."""


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    """Parts of at most ``size`` items, and for tasks and ranges at most :data:`CHUNK_BYTES`
    by :func:`size_bound` (a probe: 80 tasks with 32 KB commands made a 2.7 MB commit that
    the store refused). Typical tasks are far below it, so those parts are ``size`` long."""
    start, taken = 0, 0
    for i, item in enumerate(items):
        cost = size_bound(item) if isinstance(item, Task | TaskRange) else 0
        if i > start and (i - start == size or taken + cost > CHUNK_BYTES):
            yield items[start:i]
            start, taken = i, 0
        taken += cost
    if start < len(items):
        yield items[start:]


JOB_PAGE = 1000


def all_jobs(store: Store, states: Sequence[JobState]) -> Iterator[Job]:
    """Every job in these states, newest first, read a page at a time (by id, no OFFSET)."""
    before: int | None = None
    while page := store.list_jobs(states=states, limit=JOB_PAGE, before=before):
        yield from page
        if len(page) < JOB_PAGE:
            return
        before = page[-1].id
