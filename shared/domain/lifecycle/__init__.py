"""The task and node lifecycle: every rule that decides a state. Pure: no store, no bus, no clock.

Each rule takes the current record(s), one event and ``now``, changes the record
in place (callers pass a fresh read) and returns what changed and what to send.
The use cases in :mod:`shared.usecases` only load, call a rule and save, so the
rules are tested as tables (tests/test_lifecycle.py) and the simulator runs them.

The guarantees they give together:

- An event changes a task only if it names the task's current attempt, on the
  node and incarnation that attempt was given to. Anything else is stale and
  changes nothing, so duplicates, reorderings and messages from a dead agent are
  harmless.
- One exception keeps a finished task from running twice: when an attempt was
  given up because its node was lost, and its TaskEnded turns up later with an
  exit code, that result stands (the task ends with it and the newer attempt, if
  dispatched, is canceled). A task that ended is never run again. So does an end
  its agent says was its runtime limit's (``over_limit``) while no newer attempt
  has been sent: the task fails with the limit's error rather than running again.
- A node name is held by one agent process at a time. A registration is refused
  while another machine's agent holds the name and heartbeats; a restart on the
  same machine and state folder (whose lock file proves the old process gone)
  takes over at once; a registration older than the holder is refused.

The rules live by subject: :mod:`.tasks` (task rules), :mod:`.jobs` (closing a job),
:mod:`.dependents` (what a task's requeue brings back), :mod:`.nodes` (registration,
heartbeats, stop), :mod:`.online` (an admin bringing an on-prem node back Online) and :mod:`.ordering` (event order); this package re-exports them, so
callers write ``lifecycle.dispatch(...)``.
"""

from shared.domain.lifecycle.dependents import (
    Doomed,
    failed_after,
    group_of,
    revived,
    revived_after,
)
from shared.domain.lifecycle.jobs import (
    all_ended,
    being_canceled,
    canceled_by,
    explain_cancel,
    job_cancel_reason,
    reopen_job,
    settle_job,
    unstarted,
)
from shared.domain.lifecycle.nodes import (
    AGENT_STOPPED,
    LIVE_STATES,
    HeartbeatDecision,
    RegistrationDecision,
    ended_event,
    heartbeat,
    is_live,
    register,
    stopping,
)
from shared.domain.lifecycle.online import OnlineDecision, bring_online, online_refusal
from shared.domain.lifecycle.ordering import brought_up_to_date, in_order
from shared.domain.lifecycle.tasks import (
    KEEP_LOST,
    TaskChange,
    assignment_refused,
    cancel,
    dispatch,
    held_by_lost,
    hold_longer,
    is_current,
    key_of,
    kill_order,
    lose_attempt,
    machine_gone,
    outcome,
    placed_hosts,
    rerun,
    task_ended,
    task_started,
    undeliverable,
)

__all__ = [
    "AGENT_STOPPED",
    "Doomed",
    "HeartbeatDecision",
    "KEEP_LOST",
    "LIVE_STATES",
    "OnlineDecision",
    "RegistrationDecision",
    "TaskChange",
    "all_ended",
    "assignment_refused",
    "bring_online",
    "cancel",
    "canceled_by",
    "dispatch",
    "ended_event",
    "explain_cancel",
    "failed_after",
    "group_of",
    "heartbeat",
    "being_canceled",
    "brought_up_to_date",
    "in_order",
    "is_current",
    "is_live",
    "job_cancel_reason",
    "reopen_job",
    "key_of",
    "kill_order",
    "lose_attempt",
    "machine_gone",
    "held_by_lost",
    "hold_longer",
    "online_refusal",
    "outcome",
    "placed_hosts",
    "register",
    "rerun",
    "revived",
    "revived_after",
    "settle_job",
    "unstarted",
    "stopping",
    "task_ended",
    "task_started",
    "undeliverable",
]
