"""What every use case works with: the ports, the settings and the clock, plus the few
helpers they share (retried writes, batched sends to nodes, scheduler kicks)."""

from __future__ import annotations

import logging
import random
import threading
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
TURN_LOCKS = 64
"""Locks :meth:`Deps.turn` stripes job ids over (a bounded set, whatever the job count)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Backoff:
    """Retries of a write that met a Conflict: exponential with full jitter, so writers that
    collided do not collide again in lock-step. ``sleep`` and ``clock`` are injectable for
    tests."""

    tries: int = 12
    base_s: float = 0.002
    cap_s: float = 0.25
    busy_s: float = 8.0
    """How long a contended write keeps trying (:meth:`Deps.retry_busy`): writes of distinct
    items that share one document (cancels of tasks of one sweep all write its range) each
    succeed in turn, so giving up after ``tries`` showed users mere contention as errors (a
    probe: 21 of 140 concurrent cancels refused on Cosmos DB)."""
    busy_tries: int = 400
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def delays(self) -> Iterable[float]:
        for i in range(self.tries - 1):
            yield self.rng.uniform(0, min(self.cap_s, self.base_s * 2**i))

    def busy_delays(self) -> Iterable[float]:
        """As :meth:`delays`, for at most ``busy_s`` (and ``busy_tries``) instead."""
        start = self.clock()
        for i in range(self.busy_tries - 1):
            if self.clock() - start >= self.busy_s:
                return
            yield self.rng.uniform(0, min(self.cap_s, self.base_s * 2 ** min(i, 20)))


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
    _turns: tuple[threading.Lock, ...] = field(
        default_factory=lambda: tuple(threading.Lock() for _ in range(TURN_LOCKS)),
        init=False,
        repr=False,
    )

    def turn(self, job_id: int) -> threading.Lock:
        """A lock the threads of this process take turns on for writes to one job's shared
        documents (a sweep's range): racing there they would only make each other retry.
        Other processes are still kept apart by the store's etags (and :meth:`retry_busy`)."""
        return self._turns[job_id % len(self._turns)]

    def retry(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` again, after a jittered pause, while it meets a Conflict (someone else
        wrote first). ``fn`` must re-read what it writes: each try starts from fresh state."""
        return self._retry(self.backoff.delays(), fn, *args, **kwargs)

    def retry_busy(self, fn: Callable[[], T], *, busy: str) -> T:
        """:meth:`retry` for a user's write that contends with other writes of the same
        document (not of the same item): tried for up to ``Backoff.busy_s``; if it still
        conflicts, Conflict(``busy``), a plain sentence, never the store's words (etags)."""
        try:
            return self._retry(self.backoff.busy_delays(), fn)
        except Refused:
            raise
        except Conflict:
            log.warning("gave up after %.1f s of conflicts: %s", self.backoff.busy_s, busy)
            raise Conflict(busy) from None

    def _retry(self, delays: Iterable[float], fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        for delay in delays:
            try:
                return fn(*args, **kw)
            except Refused:
                raise  # the answer: another try reads the same
            except Conflict:
                self.backoff.sleep(delay)
        return fn(*args, **kw)

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
