"""The meters of scripts/cost.py: a Cosmos store and a bus that count what Azure bills
(Cosmos DB requests by kind and their charge; Service Bus operations per queue)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from shared.adapters.cosmos_store import CosmosStore
from shared.ports.bus import Bus, OutgoingMessage, ReceivedMessage

COSMOS_KINDS = {
    "read_item": "point_reads",
    "query_items": "queries",
    "create_item": "writes",
    "replace_item": "writes",
    "upsert_item": "writes",
    "delete_item": "writes",
    "patch_item": "writes",
    "execute_item_batch": "batches",
}


class Meter:
    """Everything counted, by name; :meth:`snapshot` and :meth:`since` measure a stretch."""

    def __init__(self, store: CosmosStore) -> None:
        self.counts: Counter[str] = Counter()
        self.seconds = 0.0
        """Wall time spent in function executions."""
        self.store = store
        hook = store._hook

        def counting(headers: Any, result: object = None) -> None:
            self.counts["cosmos_requests"] += 1
            hook(headers, result)

        store._hook = counting  # type: ignore[method-assign, assignment]
        store._jobs = _CountedContainer(store._jobs, self.counts)  # type: ignore[assignment]
        store._cluster = _CountedContainer(store._cluster, self.counts)  # type: ignore[assignment]
        index = store.index  # the hot paths' pointers (shared/adapters/cosmos_index.py)
        index._container = _CountedContainer(index._container, self.counts)  # type: ignore[assignment]

    def snapshot(self) -> dict[str, float]:
        return {
            **self.counts,
            "cosmos_charge": self.store.request_charge,
            "fn_seconds": self.seconds,
        }

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.snapshot()
        return {k: round(v - before.get(k, 0), 2) for k, v in now.items() if v - before.get(k, 0)}


class _CountedContainer:
    """A Cosmos container that counts calls by kind (batches also by operation)."""

    def __init__(self, inner: Any, counts: Counter[str]) -> None:
        self._inner, self._counts = inner, counts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        kind = COSMOS_KINDS.get(name)
        if kind is None:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._counts[f"cosmos_{kind}"] += 1
            if name == "execute_item_batch":
                ops = kwargs.get("batch_operations", args[0] if args else ())
                self._counts["cosmos_batch_operations"] += len(ops)
            return attr(*args, **kwargs)

        return counted


class MeteredBus(Bus):
    """The embedded bus, counting Service Bus's billable operations per queue."""

    def __init__(self, inner: Bus, counts: Counter[str]) -> None:
        self.inner, self.counts = inner, counts

    def send(self, queue: str, messages: OutgoingMessage | Sequence[OutgoingMessage]) -> None:
        n = 1 if isinstance(messages, OutgoingMessage) else len(messages)
        self.counts[f"sb_sent:{queue}"] += n
        self.inner.send(queue, messages)

    def get_receiver(self, queue: str, **kwargs: Any) -> Any:
        return _MeteredReceiver(self.inner.get_receiver(queue, **kwargs), queue, self.counts)

    def get_session_receiver(self, queue: str, **kwargs: Any) -> Any:
        receiver = self.inner.get_session_receiver(queue, **kwargs)
        return _MeteredReceiver(receiver, queue, self.counts)

    def close(self) -> None:
        self.inner.close()


class _MeteredReceiver:
    def __init__(self, inner: Any, queue: str, counts: Counter[str]) -> None:
        self.inner, self.queue, self.counts = inner, queue, counts

    def receive(self, **kwargs: Any) -> list[ReceivedMessage]:
        got = self.inner.receive(**kwargs)
        self.counts[f"sb_received:{self.queue}"] += len(got)
        return list(got)

    def _settle(self, how: str, message: ReceivedMessage, *args: Any, **kwargs: Any) -> None:
        self.counts[f"sb_settled:{self.queue}"] += 1
        getattr(self.inner, how)(message, *args, **kwargs)

    def complete(self, message: ReceivedMessage) -> None:
        self._settle("complete", message)

    def abandon(self, message: ReceivedMessage) -> None:
        self._settle("abandon", message)

    def dead_letter(self, message: ReceivedMessage, *args: Any, **kwargs: Any) -> None:
        self._settle("dead_letter", message, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __enter__(self) -> _MeteredReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()
