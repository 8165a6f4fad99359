"""The autoscaler's log and memory as each timer run leaves them: its orders and notes with
their reasons (``hpc autoscale log``), refused and failed starts, and what it last said of
each group (the pending reasons read it). Written by :func:`shared.usecases.autoscale.run`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.domain import ownership
from shared.domain.autoscaler import Decision, Order, StartFailure
from shared.domain.cluster import Meta, Node
from shared.domain.growshrink import GroupMemory
from shared.errors import NotFound
from shared.usecases import idle_policy
from shared.usecases.autoscale_memory import SAID_FIELD, STATE_KEY
from shared.usecases.deps import Deps

LOG_KEY = "autoscale-log"
LOG_KEEP = 1000


def failure_entry(
    failure: StartFailure, action: str, decision: Decision, now: datetime
) -> dict[str, Any]:
    """A refused or failed start, for ``hpc autoscale log`` (a probe found QuotaExceeded only
    in the host's log): the provider's error, and how long its group now backs off."""
    until = decision.state.groups.get(failure.group, GroupMemory()).backoff_until
    # none in force (a lost VM backs nothing off): no "backs off -25 s" from an old one (a probe)
    wait = "" if until is None or until <= now else (
        f"; {failure.group} backs off {(until - now).total_seconds():.0f} s "
        f"(until {until:%H:%M:%S})"
    )  # fmt: skip
    return {"time": now.isoformat(), "action": action, "node": failure.node,
            "group": failure.group, "reason": failure.reason + wait}  # fmt: skip


def save_run(
    deps: Deps,
    decision: Decision,
    done: list[Order],
    now: datetime,
    *,
    before: list[dict[str, Any]] | None = None,
    after: list[dict[str, Any]] | None = None,
    memory: dict[str, Any] | None = None,
) -> None:
    """Store the memory and log the decisions (``before``/``after``: more entries, e.g. a
    measured boot, the idle nodes a warm pool keeps). Why each group did not grow is kept
    with the memory too, for the pending reasons of the tasks that wait for it."""
    said: dict[str, Any] = {}
    for note in decision.notes:
        if note.grows:
            words = note.text if note.about is None else {"text": note.text, "about": note.about}
            said.setdefault(note.group, {"at": now.isoformat(), "notes": []})["notes"].append(words)
    entries = (before or []) + [
        {"time": now.isoformat(), "action": o.action, "node": o.node, "group": o.group,
         "reason": o.reason}
        for o in done
    ] + [{"time": now.isoformat(), "action": "note", "node": None, "group": n.group,
          "reason": str(n)} for n in decision.notes] + (after or [])  # fmt: skip

    def write_state() -> None:
        try:
            meta = deps.store.get_meta(STATE_KEY)
        except NotFound:
            meta = Meta(key=STATE_KEY)
        before = meta.data.get(SAID_FIELD) or {}
        learnt = meta.data.get(idle_policy.MEMORY_FIELD)  # kept while no group has a policy
        meta.data = decision.state.to_dict()
        meta.data[SAID_FIELD] = _said(before, said, decision, now)
        if memory is not None or learnt is not None:
            meta.data[idle_policy.MEMORY_FIELD] = memory if memory is not None else learnt
        deps.store.put_meta(meta)

    deps.retry(write_state)
    if entries:
        _append(deps, entries)

    if done:
        deps.kick()


def log_admin_action(deps: Deps, node: Node, action: str, reason: str) -> None:
    """An admin's start, stop, drain, offline or release of a VM, logged beside the
    autoscaler's orders (an admin probe looking back saw a VM the autoscaler stopped as
    idle, but not who had started it). On-prem nodes are not the autoscaler's: not logged."""
    if not ownership.is_managed(node):
        return
    entry = {"time": deps.clock().isoformat(), "action": action, "node": node.name,
             "group": node.groups[0] if node.groups else None, "reason": reason}  # fmt: skip
    _append(deps, [entry])


def _append(deps: Deps, entries: list[dict[str, Any]]) -> None:
    """Add ``entries`` to the log (the last :data:`LOG_KEEP` are kept); a note said again
    run after run is logged once until it changes (:func:`_repeats`)."""

    def write_log() -> None:
        try:
            meta = deps.store.get_meta(LOG_KEY)
        except NotFound:
            meta = Meta(key=LOG_KEY)
        old: list[Any] = list(meta.data.get("entries", []))
        fresh = [e for e in entries if e["action"] != "note" or not _repeats(old, e)]
        # in time order: a run's entries carry its start time, and an admin's action logged
        # while it ran came first (a probe read 18:19:17, 18:19:18, 18:19:17); stable
        merged = sorted(old + fresh, key=lambda e: str(e.get("time") or ""))
        meta.data = {"entries": merged[-LOG_KEEP:]}
        deps.store.put_meta(meta)

    deps.retry(write_log)


def _said(
    before: dict[str, Any], said: dict[str, Any], decision: Decision, now: datetime
) -> dict[str, Any]:
    """What the autoscaler last said of each group: this run's notes, and a group's earlier
    ones until its next grow check (a run between checks decides no growth; a probe saw a
    task's reason say "next check in 38 s" for ever while the group was at its max)."""
    checked = {g for g, m in decision.state.groups.items() if m.last_grow_check == now}
    kept = {g: w for g, w in before.items() if g not in checked and g not in said}
    return {**kept, **said}


def _repeats(old: list[Any], entry: dict[str, Any]) -> bool:
    """A note said again run after run (a group at max) is logged once until it changes."""
    notes = [e for e in old if e.get("action") == "note" and e.get("group") == entry["group"]]
    return bool(notes) and notes[-1].get("reason") == entry["reason"]


def read_log(deps: Deps, *, group: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    try:
        entries = list(deps.store.get_meta(LOG_KEY).data.get("entries", []))
    except NotFound:
        return []
    if group:
        wanted = group.casefold()
        entries = [e for e in entries if _group_of(e).casefold() == wanted]
    return entries[-limit:]


def _group_of(entry: dict[str, Any]) -> str:
    """The group an entry is about: its own field. Notes logged before notes carried their
    group (``"group": null``) name it first in their text (``"AzureNodes: wants ..."``);
    a substring match made ``--group Z`` list every note with a z in it."""
    group = entry.get("group")
    if group:
        return str(group)
    if entry.get("action") == "note":
        head, sep, _ = str(entry.get("reason") or "").partition(": ")
        return head if sep else ""
    return ""
