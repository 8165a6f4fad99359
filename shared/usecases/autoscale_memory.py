"""The autoscaler's stored memory (one Meta document), and what the pending reasons read of
it: why a queued task's managed groups start no node (:func:`scaling_of`).

Apart from :mod:`shared.usecases.autoscale` so that monitoring reads it without importing
the timer run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.domain.cluster import Node, NodeGroup
from shared.domain.growshrink import AutoscalerState, group_memory_mb
from shared.domain.pending_scaling import GroupScaling, Said
from shared.errors import NotFound
from shared.usecases.deps import Deps

STATE_KEY = "autoscaler"
SAID_FIELD = "said"
"""In the memory document: why the last run did not grow each group (its grow notes)."""


def load_doc(deps: Deps) -> dict[str, Any]:
    """The autoscaler's stored memory (AutoscalerState's fields, the idle policies' memory,
    what it said of each group)."""
    try:
        return dict(deps.store.get_meta(STATE_KEY).data)
    except NotFound:
        return {}


def scaling_of(
    deps: Deps, groups: Sequence[NodeGroup], nodes: Sequence[Node] | None = None
) -> dict[str, GroupScaling]:
    """The managed groups (a provider set) as the pending reasons see them: whether an
    autoscaler runs for them here, and its memory and last word of each; with ``nodes``
    (given when a task asks for memory), each group's node memory as the autoscaler counts
    it (:func:`group_memory_mb`: a group whose nodes have too little starts none)."""
    managed = [g for g in groups if g.provider]
    if not managed:
        return {}
    doc = load_doc(deps)
    memory = AutoscalerState.from_dict({"groups": doc.get("groups", {})}).groups  # (no nodes)
    said: dict[str, Any] = doc.get(SAID_FIELD) or {}
    here = deps.compute.name if deps.compute is not None else None
    out = {}
    for g in managed:
        words = said.get(g.name) or {}
        at = words.get("at")
        out[g.name] = GroupScaling(
            name=g.name,
            managed=g.provider == here,
            autoscale=g.autoscale,
            grow_interval_s=g.grow_interval_s,
            memory=memory.get(g.name),
            notes=tuple(Said.of(n) for n in words.get("notes", ())),
            said_at=datetime.fromisoformat(at) if at else None,
            node_memory_mb=None
            if nodes is None
            else group_memory_mb(g.node_memory_mb, g.name, nodes),
            max_nodes=g.max_nodes,
        )
    return out
