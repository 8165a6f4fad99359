"""The reconciler: level-triggered repair, run by a timer.

Every run re-reads nodes and active tasks, compares them with what should be, and fixes
the difference: silent nodes become Unreachable and their attempts are requeued; jobs past
their whole runtime limit are canceled; on-prem
nodes an admin brought online whose agent did not register again go Offline again;
dispatches never confirmed, attempts whose end was lost, and attempts of ended
incarnations are requeued; and the scheduler gets a pass. Silence is judged only over
time the control plane was listening (see :func:`shared.domain.reconciler.listening_since`).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

from shared.domain import eligibility, lifecycle, reconciler
from shared.domain.cluster import Meta
from shared.domain.hosts import lost_host
from shared.domain.messages import EVENTS_LOCK_MS
from shared.domain.states import JobState, NodeState
from shared.errors import Conflict, NotFound
from shared.usecases import online, taskdeps
from shared.usecases.cancel import cancel_job
from shared.usecases.deps import Deps, all_jobs
from shared.usecases.losses import lose_attempts
from shared.usecases.queries import job_states
from shared.usecases.settling import settle

log = logging.getLogger(__name__)

META_KEY = "reconciler"

UNFINISHED_JOB_GRACE = timedelta(hours=1)
"""A job whose add_job has not made it visible this long after its submit time crashed
half-way (an add_job of 100,000 tasks takes seconds): its parts are purged."""


def reconcile(deps: Deps) -> None:
    now = deps.clock()
    timeout = timedelta(seconds=deps.settings.heartbeat_timeout_s)
    since = _listening_since(deps, now, timeout)
    listed = deps.store.list_nodes()
    for node in reconciler.silent_nodes(listed, now=now, timeout=timeout, since=since):
        deps.retry(_mark_unreachable, deps, node.name, now)
    online.expire_unanswered(deps, listed, now=now, since=since)
    nodes = deps.store.list_nodes()
    active = deps.store.active_tasks()
    by_name = {n.name: n for n in nodes}
    lose_attempts(
        deps,
        reconciler.stuck_dispatches(
            active,
            now=now,
            timeout=timedelta(seconds=deps.settings.dispatch_timeout_s),
            since=since,
        ),
        lambda t: f"node {t.node} never started it",
        count=True,
    )
    lose_attempts(
        deps,
        reconciler.lost_endings(
            nodes,
            active,
            now=now,
            timeout=timeout + timedelta(milliseconds=EVENTS_LOCK_MS),
            since=since,
        ),
        lambda t: f"node {t.node} stopped reporting it and never reported its end",
        count=True,
    )
    # Attempts that lost a node they hold (any of a multi-node task's nodes).
    orphans = {t.key: why for t in active if (why := lost_host(t, by_name)) is not None}
    lose_attempts(
        deps, [t for t in active if t.key in orphans], lambda t: orphans[t.key], count=True
    )
    _cancel_doomed_dependents(deps)
    deps.store.purge_unfinished_jobs(now - UNFINISHED_JOB_GRACE)
    deps.store.fold_counts()
    for job in all_jobs(deps.store, [JobState.QUEUED, JobState.RUNNING]):
        over = eligibility.over_time(job, now)
        if over is not None:
            log.info("job %d canceled: %s", job.id, over)
            with contextlib.suppress(Conflict):
                cancel_job(deps, job.id, reason=over)
            continue
        if taskdeps.has_doomed(job):
            taskdeps.cancel_doomed_tasks(deps, job.id)
        if job.task_count and (lifecycle.all_ended(job) or lifecycle.unstarted(job)):
            settle(deps, job.id)  # level-triggered backstop: a settling a crash left undone
    deps.kick()  # level-triggered: queued work gets a pass at least once per run


def _cancel_doomed_dependents(deps: Deps) -> None:
    """Queued jobs whose prerequisite ended other than Finished are canceled with that reason."""
    waiting = [j for j in all_jobs(deps.store, [JobState.QUEUED]) if j.depends_on]
    if not waiting:
        return
    states = job_states(deps, {d for j in waiting for d in j.depends_on})
    for job in waiting:
        reason = eligibility.doomed(job, states)
        if reason is not None:
            log.info("job %d canceled: %s", job.id, reason)
            with contextlib.suppress(Conflict):
                cancel_job(
                    deps,
                    job.id,
                    reason=reason,
                    canceled_for=eligibility.ended_prerequisite(job, states),
                )


def _listening_since(deps: Deps, now: datetime, timeout: timedelta) -> datetime:
    def update() -> datetime:
        try:
            meta = deps.store.get_meta(META_KEY)
        except NotFound:
            meta = Meta(key=META_KEY)
        previous = _time(meta.data.get("listeningSince"))
        since = reconciler.listening_since(
            previous, _time(meta.data.get("lastRun")), now=now, timeout=timeout
        )
        if since == now and previous is not None:
            log.warning(
                "the reconciler did not run for more than %g s: judging silence afresh",
                timeout.total_seconds(),
            )
        meta.data = {"listeningSince": since.isoformat(), "lastRun": now.isoformat()}
        deps.store.put_meta(meta)
        return since

    try:
        return deps.retry(update)
    except Conflict:  # another reconciler wrote it just now: it is listening
        return now


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _mark_unreachable(deps: Deps, name: str, now: datetime) -> bool:
    node = deps.store.get_node(name)
    if node.state not in reconciler.WATCHED:
        return False
    node.move_to(
        NodeState.UNREACHABLE,
        reason=f"no heartbeat for {deps.settings.heartbeat_timeout_s:g} s",
        now=now,
    )
    deps.store.put_node(node)
    log.warning("node %s unreachable; its attempts are requeued", name)
    return True
