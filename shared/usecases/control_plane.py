"""The control plane as the function app sees it: one object, one method per use case.

It only holds the ports (:class:`shared.usecases.deps.Deps`) and forwards to the use-case
modules, so each use case stays in the module named after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.domain import nodeactions
from shared.domain.cluster import Node, NodeGroup, Principal
from shared.domain.messages import Event
from shared.domain.models import Job, Task
from shared.domain.states import JobState, TaskState
from shared.domain.taskspans import Span
from shared.errors import NotFound
from shared.ports.bus import Bus
from shared.ports.compute import ComputeProvider
from shared.ports.output import OutputStore, Stream
from shared.ports.store import Store
from shared.settings import Settings
from shared.usecases import (
    autoscale,
    autoscale_log,
    cancel,
    dependents,
    dispatch,
    events,
    idempotency,
    modify,
    node_release,
    nodegroups,
    nodes,
    pending_reasons,
    queries,
    reconcile,
    submit,
    task_actions,
    task_cancels,
    task_requeues,
)
from shared.usecases.dependents import Requeued
from shared.usecases.deps import Backoff, Deps
from shared.usecases.idempotency import Answer
from shared.usecases.nodes_add import NodeAdd


class ControlPlane:
    def __init__(
        self,
        *,
        store: Store,
        bus: Bus,
        output: OutputStore,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backoff: Backoff | None = None,
        compute: ComputeProvider | None = None,
    ) -> None:
        self.deps = Deps(
            store=store,
            bus=bus,
            output=output,
            settings=settings,
            clock=clock,
            backoff=backoff or Backoff(),
            compute=compute,
        )

    @property
    def store(self) -> Store:
        return self.deps.store

    @property
    def bus(self) -> Bus:
        return self.deps.bus

    @property
    def output(self) -> OutputStore:
        return self.deps.output

    @property
    def settings(self) -> Settings:
        return self.deps.settings

    # jobs
    def submit(self, data: Any, principal: Principal | None = None) -> Job:
        return submit.submit(self.deps, data, principal)

    def submit_once(
        self, data: Any, principal: Principal, key: str, render: Callable[[Job], str]
    ) -> Answer:
        """A submit with an Idempotency-Key: the first answer of this key, or a new job."""
        return idempotency.submit_once(self.deps, data, principal, key, render)

    def cancel_job(self, job_id: int, *, by: str | None = None) -> Job:
        return cancel.cancel_job(self.deps, job_id, by=by)

    def requeue_job(self, job_id: int) -> Job:
        return cancel.requeue_job(self.deps, job_id)

    def cancel_task(self, job_id: int, task_id: int, *, by: str | None = None) -> Task:
        return task_actions.cancel_task(self.deps, job_id, task_id, by=by)

    def cancel_tasks(
        self, job_id: int, spans: Sequence[Span], *, by: str | None = None
    ) -> list[task_cancels.Outcome]:
        return task_cancels.cancel_tasks(self.deps, job_id, spans, by=by)

    def requeue_task(self, job_id: int, task_id: int) -> Requeued:
        return task_actions.requeue_task(self.deps, job_id, task_id)

    def requeue_tasks(self, job_id: int, spans: Sequence[Span]) -> task_requeues.Requeues:
        return task_requeues.requeue_tasks(self.deps, job_id, spans)

    def left_canceled(self, job_id: int) -> list[int]:
        """The jobs canceled because this one did not finish, which its requeue leaves so."""
        return dependents.left_canceled(self.deps, job_id)

    def hold_job(self, job_id: int, *, until: datetime | None = None) -> Job:
        return modify.hold(self.deps, job_id, until=until)

    def release_job(self, job_id: int) -> Job:
        return modify.release(self.deps, job_id)

    def set_priority(self, job_id: int, priority: int | str) -> Job:
        return modify.set_priority(self.deps, job_id, priority)

    def modify_job(self, job_id: int, changes: dict[str, Any], *, admin: bool = False) -> Job:
        return modify.modify(self.deps, job_id, changes, admin=admin)

    # monitoring
    def get_job(self, job_id: int) -> Job:
        return queries.get_job(self.deps, job_id)

    def list_jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        limit: int = 100,
        before: int | None = None,
        owner: str | None = None,
    ) -> list[Job]:
        return queries.list_jobs(self.deps, states=states, limit=limit, before=before, owner=owner)

    def list_tasks(
        self,
        job_id: int,
        *,
        states: Iterable[TaskState] | None = None,
        offset: int = 0,
        limit: int = 1000,
        after: int = 0,
    ) -> list[Task]:
        return queries.list_tasks(
            self.deps, job_id, states=states, offset=offset, limit=limit, after=after
        )

    def get_task(self, job_id: int, task_id: int) -> Task:
        return queries.get_task(self.deps, job_id, task_id)

    def read_output(
        self, job_id: int, task_id: int, stream: Stream, **kwargs: Any
    ) -> queries.OutputPage:
        return queries.read_output(self.deps, job_id, task_id, stream, **kwargs)

    def pending_reasons(self, tasks: Iterable[Task]) -> dict[tuple[int, int], str]:
        return pending_reasons.pending_reasons(self.deps, tasks)

    def job_pending_reasons(self, jobs: Iterable[Job]) -> dict[int, str]:
        return pending_reasons.job_pending_reasons(self.deps, jobs)

    def list_nodes(self) -> list[dict[str, Any]]:
        return queries.list_nodes(self.deps)

    def get_node(self, name: str) -> dict[str, Any]:
        return queries.get_node(self.deps, name)

    def list_groups(self) -> list[NodeGroup]:
        return queries.list_groups(self.deps)

    def get_group(self, name: str) -> NodeGroup:
        """The group ``name`` means, in any case (404 unknown)."""
        return nodegroups.group_of(self.deps, name)

    # scheduling, events, repair
    def kick(self) -> None:
        self.deps.kick()

    def schedule_pass(self) -> int:
        return dispatch.schedule_pass(self.deps)

    def apply_events(self, evs: Sequence[Event]) -> None:
        events.apply_events(self.deps, evs)

    def apply_event_messages(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Decode each (message id, body); park the bad ones with their reason; apply the rest."""
        events.apply_event_messages(self.deps, messages)

    def reconcile(self) -> None:
        reconcile.reconcile(self.deps)

    # nodes, node groups, the autoscaler
    def add_nodes(self, group: str, count: int, **kw: Any) -> list[Node]:
        return nodes.add_nodes(self.deps, group, count, **kw)

    def add_nodes_once(
        self,
        body: Any,
        principal: Principal,
        key: str,
        asked: NodeAdd,
        render: Callable[[list[Node]], str],
    ) -> Answer:
        """A node add with an Idempotency-Key: the first answer of this key, or the nodes
        ``asked`` (a retry of a request that died half-way makes the rest)."""
        return idempotency.add_nodes_once(self.deps, body, principal, key, asked, render)

    def node_action(self, action: str, names: list[str], *, reason: str | None = None) -> list[Any]:
        """start, stop, drain, offline, remove or release these nodes; ``reason``: the nodes' state
        reason for a stop, drain or offline (who and why, as Slurm's ``reason=``)."""
        actions: dict[str, Callable[..., Sequence[Any]]] = {
            "start": nodes.start_nodes,
            "stop": nodes.stop_nodes,
            "drain": nodes.drain_nodes,
            "offline": nodes.offline_nodes,
            "remove": nodes.remove_nodes,
            "release": node_release.release_nodes,
        }
        do = actions[action]
        if reason is not None and action in ("stop", "drain", "offline"):
            return list(do(self.deps, names, reason=reason))
        return list(do(self.deps, names))

    def tasks_on_node(self, name: str) -> list[Task]:
        """The active tasks on node ``name`` (read before an offline gives them up)."""
        return nodes.tasks_on(self.deps, name)

    def act_on_node(
        self, action: str, name: str, *, reason: str | None = None, by: str | None = None
    ) -> tuple[list[Any], str | None]:
        """One node's action, and what to say when its result held already: then nothing is
        done (:func:`nodeactions.already`, the rule every action follows). Done on a VM, it
        is logged in ``hpc autoscale log`` with ``reason``, else "<action> by ``by``"."""
        node = self.deps.store.get_node(name)  # NotFound: 404 naming it
        reason = nodeactions.with_held_why(reason, node)
        said = nodeactions.already(action, node, reason)
        if said is not None:
            return [node], said
        # a heartbeat may write the node between our read and write (a probe's `hpc node stop
        # --group` read "stale etag ... nothing was written" of VMs it had stopped): the
        # action is tried again from a fresh read; a refusal (Refused) is the answer at once
        done = self.deps.retry(lambda: self.node_action(action, [name], reason=reason))
        if action != "remove":  # (a removed VM's record is gone: nothing to look back on)
            done_as = {"start": "started", "release": "released"}.get(action, action)
            why = reason or f"{done_as} by {by or 'an admin'}"
            autoscale_log.log_admin_action(self.deps, node, action, why)
        return done, None

    def stop_warnings(self, stopped: Sequence[Node]) -> list[str]:
        """What the autoscaler will undo of an admin's stop (a group's minNodes)."""
        return nodes.stop_warnings(self.deps, stopped)

    def create_group(self, name: str, **settings: Any) -> NodeGroup:
        return nodegroups.create_group(self.deps, name, **settings)

    def set_group(self, name: str, **settings: Any) -> NodeGroup:
        return nodegroups.set_group(self.deps, name, **settings)

    def delete_group(self, name: str) -> str:
        """The deleted group's name as it was stored."""
        return nodegroups.delete_group(self.deps, name)

    def autoscale(self) -> None:
        autoscale.run(self.deps)

    def autoscale_log(self, *, group: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if not group:
            return autoscale_log.read_log(self.deps, limit=limit)
        try:  # a misspelt group is an error, not an empty log
            group = nodegroups.group_of(self.deps, group).name
        except NotFound:  # unless it is a deleted group the log still tells of (a probe)
            kept = autoscale_log.read_log(self.deps, group=group, limit=limit)
            if not kept:
                raise
            return kept
        return autoscale_log.read_log(self.deps, group=group, limit=limit)
