"""The task rules: an attempt's start, end, loss, refusal, dispatch, cancel and rerun.

Part of :mod:`shared.domain.lifecycle` (its docstring states the guarantees). Pure.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.domain.messages import (
    LIFELINE_SEQ,
    MAX_ID,
    AssignmentRefused,
    CancelTask,
    TaskEnded,
    TaskStarted,
    attempt_key,
)
from shared.domain.models import Host, LostAttempt, Task
from shared.domain.states import (
    TASK_ACTIVE,
    TASK_TERMINAL,
    TaskState,
)

KEEP_LOST = 16
"""How many lost attempts a task remembers (more than any sane retry limit)."""
KEEP_LOST_HOSTS = 64
"""A lost attempt remembers its hosts up to this many (a wider one, its first alone), so
that the task document stays small (16 lost attempts of a 1,024-node task would be ~1 MB
of hosts, against Cosmos DB's 2 MB item limit)."""


@dataclass
class TaskChange:
    """What a rule did to one task: its state before and after, and messages to send."""

    old: TaskState
    new: TaskState
    cancels: list[tuple[str, CancelTask]] = field(default_factory=list)
    """(node, CancelTask) to send: an attempt that must stop running."""

    @property
    def ended(self) -> bool:
        """It moved into an ended state (a change in place of an ended task is no end)."""
        return self.new in TASK_TERMINAL and self.new is not self.old


def key_of(task: Task) -> str:
    return attempt_key(task.job_id, task.id, task.attempt)


def is_current(task: Task, ev: TaskStarted | TaskEnded | AssignmentRefused) -> bool:
    """The event names the task's current attempt on the node (and incarnation) it went to."""
    return (
        task.attempt == ev.attempt
        and task.node == ev.node
        and (task.incarnation is None or task.incarnation == ev.incarnation)
    )


def outcome(
    exit_code: int | None,
    *,
    canceled: bool,
    error: str | None,
    valid: list[int] | None = None,
) -> TaskState:
    """Canceled, else Finished for a valid exit code (``valid``, default [0]) without error."""
    if canceled:
        return TaskState.CANCELED
    if exit_code is not None and exit_code in (valid or [0]) and error is None:
        return TaskState.FINISHED
    return TaskState.FAILED


def exit_reason(exit_code: int | None, valid: list[int] | None) -> str:
    """Why an exit code failed its task: every failed task says why (a probe found the
    default rule's failures with ``"error": null``, so no Error line in ``hpc task view``)."""
    killed = (
        f" (killed by {_signal_name(-exit_code)})"
        if exit_code is not None and exit_code < 0
        else ""
    )
    if valid:
        return f"exit code {exit_code}{killed} is not one of validExitCodes {valid}"
    if exit_code is None:
        return "its end was reported without an exit code"
    return f"exit code {exit_code}{killed} is not 0 (validExitCodes)"


def _signal_name(number: int) -> str:
    """``SIGKILL`` for 9: what a negative exit code (a process ended by a signal) means."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def task_started(task: Task, ev: TaskStarted, now: datetime) -> TaskChange | None:
    if not is_current(task, ev) or task.state is not TaskState.DISPATCHING:
        return None
    task.move_to(TaskState.RUNNING, now=now)
    return TaskChange(TaskState.DISPATCHING, TaskState.RUNNING)


def task_ended(task: Task, ev: TaskEnded, now: datetime) -> TaskChange | None:
    """The current attempt's end; or the late end of a lost attempt that ran to its end."""
    new = outcome(ev.exit_code, canceled=ev.canceled, error=ev.error, valid=task.valid_exit_codes)
    old = task.state
    if old in TASK_TERMINAL and _told_again(task, ev):
        task.output = ev.output
        return TaskChange(old, old)
    if is_current(task, ev):
        if old not in TASK_ACTIVE:
            return None
        task.move_to(new, now=now)
        # a canceled end keeps who asked for the cancel (its error, set by cancel())
        kept = task.error if new is TaskState.CANCELED and task.cancel_requested else None
        task.exit_code, task.output, task.error = ev.exit_code, ev.output, ev.error or kept
        if new is TaskState.FAILED and ev.error is None:
            task.error = exit_reason(ev.exit_code, task.valid_exit_codes)
        task.result_attempt = ev.attempt
        return TaskChange(old, new)
    result = _a_result(ev, old)
    lost = next((x for x in task.lost if x.attempt == ev.attempt and x.node == ev.node), None)
    if lost is not None and lost.until is not None:
        # its end, however it came: it runs no more, so the next attempt may start
        task.lost = [x.model_copy(update={"until": None}) if x is lost else x for x in task.lost]
        if not result or not lost.result or old in TASK_TERMINAL:
            return TaskChange(old, old)  # (stored: a later rerun need not wait for it)
    if not result or lost is None or not lost.result or old in TASK_TERMINAL:
        return None
    kill = kill_order(task) if old in TASK_ACTIVE else None
    cancels = [kill] if kill else []
    task.move_to(new, now=now)
    # where the result came from, not the placement given up for it (``attempt`` still
    # counts every attempt made; ``result_attempt`` says which one this is)
    task.node, task.incarnation = ev.node, ev.incarnation
    task.hosts = list(lost.hosts) or [
        Host(node=ev.node, cores=task.cores, incarnation=ev.incarnation)
    ]
    task.exit_code, task.output = ev.exit_code, ev.output
    if ev.over_limit:
        task.error = (
            f"attempt {ev.attempt} on {ev.node} was given up with its node after it had "
            f"reached its runtime limit; that end is kept: {ev.error}"
        )
    else:
        task.error = (
            f"attempt {ev.attempt} on {ev.node} ran to its end after its node was lost; "
            "its result is kept"
        )
    if new is TaskState.FAILED and not ev.over_limit:
        task.error += f": {exit_reason(ev.exit_code, task.valid_exit_codes)}"
    task.result_attempt = ev.attempt
    return TaskChange(old, new, cancels)


def _told_again(task: Task, ev: TaskEnded) -> bool:
    """The agent's own report (``seq`` from 1) of the end its lifeline reported for it while
    it was silent (:data:`LIFELINE_SEQ`): the same attempt, node, incarnation and exit code,
    with the stdout tail the agent read whole. Its tail is kept: the lifeline's is stale for
    a task that writes its own ``--stdout`` file, which the paused agent copies (a probe)."""
    return (
        ev.seq > LIFELINE_SEQ
        and bool(ev.output)
        and ev.output != task.output
        and not ev.canceled
        and (task.result_attempt, task.node, task.incarnation, task.exit_code)
        == (ev.attempt, ev.node, ev.incarnation, ev.exit_code)
    )


def _a_result(ev: TaskEnded, state: TaskState) -> bool:
    """A lost attempt's late end that may be its task's result: it ran to its end (an exit
    code, no error), or its agent killed it at its runtime limit (Slurm's TIMEOUT: an end of
    its own, not the give-up's kill) while no new attempt has been sent. A limit end does
    not kill a new attempt already sent (a run's own exit would: it must not run to its end
    twice); a node given up while its task was in its limit's grace (hpc node offline) holds
    the next attempt Queued until that end comes, so it fails with the limit's error rather
    than running again."""
    if ev.canceled:
        return False
    if ev.over_limit:
        return state is TaskState.QUEUED
    return ev.exit_code is not None and ev.error is None


def assignment_refused(
    task: Task, ev: AssignmentRefused, now: datetime, *, priority: int | None = None
) -> TaskChange | None:
    """An agent dropped an assignment meant for an earlier incarnation of its node: if the
    task still waits for it, requeue it (no retry used: it never ran)."""
    if task.attempt != ev.attempt or task.node != ev.node or task.state not in TASK_ACTIVE:
        return None
    if task.incarnation == ev.incarnation:
        return None  # it was meant for this incarnation after all: not refused
    return lose_attempt(
        task,
        max_retries=MAX_ID,
        canceling=False,
        reason=f"assignment reached a newer agent on {ev.node}",
        count=False,
        now=now,
        priority=priority,
    )


def lose_attempt(
    task: Task,
    *,
    max_retries: int,
    canceling: bool,
    reason: str,
    count: bool,
    now: datetime,
    may_run_until: datetime | None = None,
    priority: int | None = None,
) -> TaskChange | None:
    """Give up the current attempt (its node was lost or never confirmed it): requeue it as
    a new attempt, or fail it past the retry limit, or cancel it if its job is canceling.
    The attempt is remembered as lost, so its late end is still accepted. ``may_run_until``:
    it may still be running until then (its agent has yet to kill it), so the next attempt
    waits for that time or for this attempt's end (:func:`held_by_lost`). ``priority``: the
    job's now, which a requeued task takes (:func:`requeued_priority`)."""
    if task.state not in TASK_ACTIVE:
        return None
    old = task.state
    if task.node is not None:
        hosts = task.hosts if len(task.hosts) <= KEEP_LOST_HOSTS else task.hosts[:1]
        lost = LostAttempt(attempt=task.attempt, node=task.node, hosts=hosts, until=may_run_until)
        task.lost = [*task.lost, lost][-KEEP_LOST:]
    if count:
        task.requeue_count += 1
    if task.cancel_requested:  # the user's cancel holds: the attempt is over, so is the task
        task.move_to(TaskState.CANCELED, now=now)
        task.error = f"{reason} after a cancel was asked for; canceled"
    elif task.requeue_count > max_retries:
        task.move_to(TaskState.FAILED, now=now)
        task.error = (
            f"{reason}; not requeued (maxRetries 0)"
            if max_retries == 0
            else f"{reason}; requeued {max_retries} times already (maxRetries)"
        )
    elif canceling:
        task.move_to(TaskState.CANCELED, now=now)
    else:
        task.move_to(TaskState.QUEUED, now=now)
        task.attempt += 1
        task.incarnation = None
        task.error = reason
        task.priority = requeued_priority(task, priority)
    return TaskChange(old, task.state)


def requeued_priority(task: Task, job_priority: int | None) -> int:
    """A task back in the queue is ordered by its job's priority now, not by the copy it took
    when it was last queued: a task running, failed or canceled when the job's priority was
    changed (``hpc job modify --priority``, which reorders the queued ones) would come back
    ahead of, or behind, what the change meant (a probe: a job lowered to Lowest had its
    requeued task start before a Normal job's). None: unknown here, the copy stays."""
    return task.priority if job_priority is None else job_priority


def machine_gone(task: Task, node: str) -> bool:
    """``node``'s machine is known off (its VM deallocated): an attempt given up there runs
    no more, so the task's next attempt need not wait for it (it waited for the heartbeat
    timeout, though the VM was off). True if a hold was lifted. An attempt whose command ran
    elsewhere (another first node) keeps its hold."""
    if not any(lost.node == node and lost.until is not None for lost in task.lost):
        return False
    task.lost = [
        x.model_copy(update={"until": None}) if x.node == node and x.until is not None else x
        for x in task.lost
    ]
    return True


def hold_longer(task: Task, attempt: int, node: str, now: datetime, until: datetime) -> bool:
    """A given-up attempt its heard agent still lists (in its grace between SIGTERM and
    SIGKILL) holds the task's next attempt until ``until`` if its hold still runs and ends
    sooner; True if it changed. A hold already over, or ended by the attempt's end, stays so."""
    holds = [
        lost
        for lost in task.lost
        if (lost.attempt, lost.node) == (attempt, node)
        and lost.until is not None
        and now < lost.until < until
    ]
    for lost in holds:
        lost.until = until
    return bool(holds)


def held_by_lost(task: Task, now: datetime) -> LostAttempt | None:
    """A lost attempt of ``task`` that may still be running now: its next attempt must not
    start anywhere yet (both could run to their end). None: nothing holds it."""
    return next((lost for lost in task.lost if _may_run(lost, now)), None)


def _may_run(lost: LostAttempt, now: datetime) -> bool:
    return lost.until is not None and now < lost.until


def dispatch(
    task: Task, *, node: str, incarnation: int, now: datetime, hosts: Sequence[Host] = ()
) -> TaskChange:
    """Give the task a new placement: ``node`` (where it runs) and every node it holds with
    the cores granted there (:func:`placed_hosts`)."""
    placed = placed_hosts(task, node=node, incarnation=incarnation, hosts=hosts)
    old = task.state
    task.move_to(TaskState.DISPATCHING, now=now)
    task.node, task.incarnation = node, incarnation
    task.hosts = placed
    task.error = None  # why the previous attempt was given up: not this one's (chaos probe)
    return TaskChange(old, TaskState.DISPATCHING)


def placed_hosts(
    task: Task, *, node: str, incarnation: int, hosts: Sequence[Host] = ()
) -> list[Host]:
    """The hosts a placement on ``node`` gives the task: ``hosts`` (the first one ``node``),
    or none given, ``cores`` on ``node``. (Its assignment is made from them before the task
    is dispatched, so that one too large for the bus is never dispatched.)"""
    if hosts and hosts[0].node != node:
        raise ValueError(f"task {task.key}: its first host {hosts[0].node} is not {node}")
    return list(hosts) or [Host(node=node, cores=task.cores, incarnation=incarnation)]


def undeliverable(task: Task, reason: str, now: datetime) -> TaskChange | None:
    """A queued task whose assignment cannot be sent (over the bus's message size): Failed
    at once with the reason, never dispatched. Dispatching it would commit it Dispatching
    and then fail the send of its node's whole batch, every pass, until retries ran out for
    the tasks beside it too."""
    if task.state is not TaskState.QUEUED:
        return None
    task.move_to(TaskState.FAILED, now=now)
    task.error = reason
    return TaskChange(TaskState.QUEUED, TaskState.FAILED)


def cancel(task: Task, now: datetime, reason: str | None = None) -> TaskChange | None:
    """A user cancel: a queued task ends now; an active one gets a CancelTask and ends when
    its agent reports it killed. ``reason`` (who canceled it: Slurm's "CANCELLED by") is the
    task's error once it is Canceled, kept while its agent kills it."""
    if task.state is TaskState.QUEUED:
        task.move_to(TaskState.CANCELED, now=now)
        task.error = reason
        return TaskChange(TaskState.QUEUED, TaskState.CANCELED)
    kill = kill_order(task) if task.state in TASK_ACTIVE else None
    if kill is not None:
        task.error = reason or task.error
        task.cancel_requested = True  # if the attempt is given up before the kill lands
        return TaskChange(task.state, task.state, [kill])
    return None


def kill_order(task: Task) -> tuple[str, CancelTask] | None:
    """The CancelTask that stops the task's current attempt where it was placed (its first
    node, which runs the command; its incarnation then): None if it was never placed. Read
    the task before its attempt is given up to kill the given-up one."""
    if not (task.node and task.incarnation):
        return None
    message = CancelTask(
        incarnation=task.incarnation, job_id=task.job_id, task_id=task.id, attempt=task.attempt
    )
    return task.node, message


def rerun(task: Task, now: datetime, *, priority: int) -> TaskChange | None:
    """A user requeue of a Failed or Canceled task: a new attempt with a fresh retry budget,
    at its job's ``priority`` now (:func:`requeued_priority`)."""
    if task.state not in (TaskState.FAILED, TaskState.CANCELED):
        return None
    old = task.state
    task.move_to(TaskState.QUEUED, now=now)
    task.priority = requeued_priority(task, priority)
    task.attempt += 1
    task.requeue_count = 0
    task.cancel_requested = False
    task.incarnation = task.result_attempt = None
    # The user asked for a new run: a late old end must not cut it short; but one that may
    # still run (held_by_lost) still holds the new attempt back, its end no result.
    task.lost = [x.model_copy(update={"result": False}) for x in task.lost if _may_run(x, now)]
    task.error = task.output = task.canceled_for = None
    return TaskChange(old, TaskState.QUEUED)
