"""Apply agent events: task starts and ends, heartbeats, registrations, clean stops.

Order: a batch is applied in the order each node sent its events (incarnation, then
seq), whatever order it arrived in; a node's registration or stop is applied after the
task events that came before it. Task events are grouped per job, at most 99 tasks per
transaction, each transaction carrying exactly the counter changes of its own tasks, so a
retried or repeated unit never counts anything twice.

Isolation: a unit that fails (after retries on Conflict) does not stop the others; the
first failure is raised at the end so the bus delivers the batch again, and the units
that were applied change nothing the second time. An event that can never apply
(undecodable, or out of range) is not in the batch at all: the trigger parks it with its
reason (:func:`decode`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.domain import lifecycle
from shared.domain.messages import (
    EVENT,
    REJECTED_QUEUE,
    AssignmentRefused,
    CancelTask,
    Event,
    Heartbeat,
    NodeStopping,
    RegisterNode,
    Superseded,
    TaskEnded,
    TaskEvent,
    TaskStarted,
)
from shared.domain.models import Task
from shared.domain.states import TaskState
from shared.errors import NotFound
from shared.ports.bus import OutgoingMessage
from shared.ports.store import BatchTooLarge
from shared.usecases import online, taskdeps
from shared.usecases.deps import CHUNK, Deps
from shared.usecases.losses import lose_attempts
from shared.usecases.nodes import give_up_tasks
from shared.usecases.registration import register
from shared.usecases.settling import commit_settling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejected:
    """An event that can never apply, with why (it goes to the rejected-events queue)."""

    message_id: str
    body: bytes
    reason: str
    description: str


def decode(messages: Sequence[tuple[str, bytes]]) -> tuple[list[Event], list[Rejected]]:
    """Validate each event on its own: the good ones, and the bad ones with their reason."""
    good: list[Event] = []
    bad: list[Rejected] = []
    for message_id, body in messages:
        try:
            good.append(EVENT.validate_json(body))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            bad.append(
                Rejected(message_id, body, "InvalidEvent", f"{where}: {first['msg']}"[:1000])
            )
    return good, bad


def apply_event_messages(deps: Deps, messages: Sequence[tuple[str, bytes]]) -> None:
    """The events trigger's whole job: park what can never apply, apply the rest.

    A batch delivered again (a unit failed) parks its bad events again under the same
    message id, which Service Bus's duplicate detection drops (the embedded bus keeps both)."""
    good, bad = decode(messages)
    for rejected in bad:
        log.error(
            "rejecting event %s: %s (%s)",
            rejected.message_id,
            rejected.reason,
            rejected.description,
        )
        deps.bus.send(
            REJECTED_QUEUE,
            OutgoingMessage(
                body=rejected.body,
                message_id=rejected.message_id or None,
                application_properties={
                    "DeadLetterReason": rejected.reason,
                    "DeadLetterErrorDescription": rejected.description,
                },
            ),
        )
    if good:
        apply_events(deps, good)


def apply_events(deps: Deps, events: Sequence[Event]) -> None:
    units: list[tuple[Callable[..., bool], tuple[Any, ...]]] = []
    pending: dict[int, list[TaskEvent]] = defaultdict(list)
    beats: dict[str, Heartbeat] = {}
    after: dict[str, list[Event]] = {}  # each node's events after its last heartbeat

    def flush() -> None:
        for job_id, evs in pending.items():
            units.extend((_task_unit, (deps, job_id, part)) for part in _per_tasks(evs))
        pending.clear()

    for ev in lifecycle.in_order(events):
        if isinstance(ev, TaskStarted | TaskEnded | AssignmentRefused):
            pending[ev.job_id].append(ev)
            if ev.node in after:
                after[ev.node].append(ev)
        elif isinstance(ev, Heartbeat):
            beats[ev.node] = ev  # in order: the last one says all the earlier ones did
            after[ev.node] = []
        else:
            flush()
            fn = _register if isinstance(ev, RegisterNode) else _stopping
            units.append((fn, (deps, ev)))
    flush()
    units += [
        (_heartbeat, (deps, lifecycle.brought_up_to_date(beat, after[node])))
        for node, beat in beats.items()
    ]
    _run_units(deps, units)


def _run_units(deps: Deps, units: list[tuple[Callable[..., bool], tuple[Any, ...]]]) -> None:
    kick = False
    failure: Exception | None = None
    for fn, args in units:
        try:
            kick |= deps.retry(fn, *args)
        except Exception as exc:
            log.exception("applying %s failed", fn.__name__)
            failure = failure or exc
    if kick:
        deps.kick()
    if failure is not None:
        raise failure


def _per_tasks(evs: list[TaskEvent]) -> list[list[TaskEvent]]:
    """Split one job's events into parts of at most CHUNK distinct tasks, keeping order."""
    parts: list[list[TaskEvent]] = []
    seen: set[int] = set()
    for ev in evs:
        if ev.task_id not in seen and len(seen) == CHUNK:
            seen = set()
        if not seen:
            parts.append([])
        seen.add(ev.task_id)
        parts[-1].append(ev)
    return parts


def _task_unit(deps: Deps, job_id: int, evs: Sequence[TaskEvent]) -> bool:
    """One transaction: these tasks of one job and the job's counters, from fresh reads."""
    try:
        job = deps.store.get_job(job_id)
    except NotFound:
        return False
    tasks = {t.id: t for t in deps.store.get_tasks(job_id, {ev.task_id for ev in evs})}
    now = deps.clock()
    changed: dict[int, Task] = {}
    cancels = []
    kick = False
    ended = False
    for ev in evs:
        task = tasks.get(ev.task_id)
        if task is None:
            continue
        if isinstance(ev, TaskStarted):
            change = lifecycle.task_started(task, ev, now)
        elif isinstance(ev, TaskEnded):
            change = lifecycle.task_ended(task, ev, now)
        else:
            change = lifecycle.assignment_refused(task, ev, now, priority=job.priority)
        if change is None:
            continue
        lifecycle.explain_cancel(task, job)
        job.count(change.old, change.new, name=task.name)
        cancels += change.cancels
        ended |= change.ended
        # a task requeued, or a queued one whose old attempt's end released it (held_by_lost)
        kick |= change.ended or change.new is TaskState.QUEUED
        changed[task.id] = task
    if not changed:
        return False
    try:
        commit_settling(deps, job, list(changed.values()), ended=ended, now=now)
    except BatchTooLarge:
        if len(changed) < 2:
            raise
        return _in_halves(deps, job_id, evs)  # nothing was written: the same, in two parts
    deps.send_to_nodes(cancels)
    failed = {t.name for t in changed.values() if t.state in (TaskState.FAILED, TaskState.CANCELED)}
    if taskdeps.has_doomed(job) and failed & job.steps.keys():
        try:
            taskdeps.cancel_doomed_tasks(deps, job_id)
        except Exception:  # the reconciler's next run does it
            log.exception("canceling the dependents of failed tasks of job %d failed", job_id)
    return kick


def _in_halves(deps: Deps, job_id: int, evs: Sequence[TaskEvent]) -> bool:
    """Apply a job's task events as two units, each from fresh reads, when their tasks take
    too many bytes for one commit (tasks with long commands: a probe's 64 ends of 32 KB
    commands were 2.1 MB). Each commit moves the job's counts by exactly its own tasks."""
    ids = sorted({ev.task_id for ev in evs})
    first = set(ids[: len(ids) // 2])
    a = [ev for ev in evs if ev.task_id in first]
    b = [ev for ev in evs if ev.task_id not in first]
    return _task_unit(deps, job_id, a) | _task_unit(deps, job_id, b)


def _register(deps: Deps, req: RegisterNode) -> bool:
    return register(deps, req, apply_ends=lambda ends: apply_events(deps, ends))


def _stopping(deps: Deps, ev: NodeStopping) -> bool:
    try:
        node = deps.store.get_node(ev.node)
    except NotFound:
        return False
    if not lifecycle.stopping(node, ev, deps.clock()):
        return False
    deps.store.put_node(node)
    held = [t for t in deps.store.active_tasks(node=node.name) if t.incarnation == ev.incarnation]
    lose_attempts(deps, held, lambda _t: f"agent on {node.name} stopped", count=False)
    return True


def _heartbeat(deps: Deps, ev: Heartbeat) -> bool:
    try:
        node = deps.store.get_node(ev.node)
    except NotFound:
        return False
    active = deps.store.active_tasks(node=node.name)
    decision = lifecycle.heartbeat(node, ev, active, deps.clock())
    if not decision.current:
        if decision.heard:
            deps.store.put_node(node)  # an Offline node's agent runs on (hpc node start)
            _cancel(deps, node.name, decision.cancels)  # what it still runs
            if decision.stranded:  # an offline cut short (a crash, a racing dispatch): finish it
                stranded = set(decision.stranded)
                give_up_tasks(deps, node, [t for t in active if lifecycle.key_of(t) in stranded])
        if ev.agent_id and decision.over:
            deps.reply(
                ev.agent_id,
                Superseded(
                    node=node.name,
                    incarnation=ev.incarnation,
                    current=node.incarnation,
                    reason=decision.reason or "another agent holds the node",
                ),
            )
        return False
    deps.store.put_node(node)
    _cancel(deps, node.name, decision.cancels)
    if decision.cancels:
        log.warning(
            "node %s runs %d attempt(s) no longer its own; canceling them",
            node.name,
            len(decision.cancels),
        )
    if decision.recovered:
        log.warning(
            "node %s reported %d ending(s) the control plane never received; applying them",
            node.name,
            len(decision.recovered),
        )
        apply_events(deps, decision.recovered)
    return bool(decision.recovered)


def _cancel(deps: Deps, node: str, cancels: Sequence[CancelTask]) -> None:
    """Kill again the attempts a heard agent still lists that are no longer its own. Those
    given up hold their task's next attempt for another heartbeat timeout (a task in its
    grace between SIGTERM and SIGKILL, HPC_TASK_GRACE_S, may outlive the first hold): it
    starts once their end is reported, or once no agent says they run (a review: a task that
    trapped SIGTERM ran beside its new attempt on another node)."""
    deps.send_to_nodes((node, c) for c in cancels)
    by_job: dict[int, dict[int, int]] = defaultdict(dict)
    for cancel in cancels:
        by_job[cancel.job_id][cancel.task_id] = cancel.attempt
    if not by_job:
        return
    now = deps.clock()
    until = now + online.heartbeat_timeout(deps)
    for job_id, attempts in by_job.items():
        deps.retry(_hold_longer, deps, job_id, attempts, node, now, until)


def _hold_longer(
    deps: Deps, job_id: int, attempts: dict[int, int], node: str, now: datetime, until: datetime
) -> None:
    tasks = deps.store.get_tasks(job_id, list(attempts))
    changed = [t for t in tasks if lifecycle.hold_longer(t, attempts[t.id], node, now, until)]
    if changed:
        deps.store.commit(tasks=changed)
