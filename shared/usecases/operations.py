"""The compute provider's begun operations, kept in the store until done.

Long-running operations (create, start, deallocate, delete) are begun by whoever asks
(an admin's command, the autoscaler) and polled on the next timer run, so no call waits
on one. They live in one Meta document, keyed by VM name (the latest operation of a VM
is the one that matters)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from shared.domain.cluster import Meta
from shared.errors import NotFound
from shared.ports.compute import Operation
from shared.usecases.deps import Deps

META_KEY = "compute-operations"


def _encode(op: Operation) -> dict[str, Any]:
    data = dataclasses.asdict(op)
    data["begun_at"] = op.begun_at.isoformat()
    return data


def _decode(data: dict[str, Any]) -> Operation:
    return Operation(**{**data, "begun_at": datetime.fromisoformat(data["begun_at"])})


def _load(deps: Deps) -> Meta:
    try:
        return deps.store.get_meta(META_KEY)
    except NotFound:
        return Meta(key=META_KEY)


def record_operation(deps: Deps, op: Operation) -> None:
    def write() -> None:
        meta = _load(deps)
        meta.data = {**meta.data, op.vm: _encode(op)}
        deps.store.put_meta(meta)

    deps.retry(write)


def pending_operations(deps: Deps) -> dict[str, Operation]:
    return {vm: _decode(data) for vm, data in _load(deps).data.items()}


def settle_operations(
    deps: Deps, before: dict[str, Operation], after: dict[str, Operation]
) -> None:
    """After a poll of ``before``: keep ``after`` (still running, or follow-ups) in their place;
    an operation someone recorded for a VM since ``before`` was read is kept as it is."""

    def write() -> None:
        meta = _load(deps)
        current = {vm: _decode(data) for vm, data in meta.data.items()}
        for vm, op in before.items():
            if current.get(vm) == op:
                current.pop(vm)
                if vm in after:
                    current[vm] = after[vm]
        meta.data = {vm: _encode(op) for vm, op in current.items()}
        deps.store.put_meta(meta)

    deps.retry(write)
