"""Monitoring: jobs, tasks, nodes, node groups and task output, as the API shows them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from shared.domain.models import Job, NodeGroup, Task
from shared.domain.states import JobState, TaskState
from shared.ports.output import Stream
from shared.usecases.deps import Deps


def get_job(deps: Deps, job_id: int) -> Job:
    return deps.store.get_job(job_id)


def list_jobs(
    deps: Deps, *, states: Iterable[JobState] | None = None, limit: int = 100
) -> list[Job]:
    return deps.store.list_jobs(states=list(states) if states else None, limit=limit)


def list_tasks(
    deps: Deps,
    job_id: int,
    *,
    states: Iterable[TaskState] | None = None,
    offset: int = 0,
    limit: int = 1000,
) -> list[Task]:
    deps.store.get_job(job_id)  # 404 for an unknown job
    return deps.store.list_tasks(
        job_id, states=list(states) if states else None, offset=offset, limit=limit
    )


def get_task(deps: Deps, job_id: int, task_id: int) -> Task:
    deps.store.get_job(job_id)
    return deps.store.get_task(job_id, task_id)


def read_output(
    deps: Deps,
    job_id: int,
    task_id: int,
    stream: Stream,
    *,
    offset: int = 0,
    limit: int = 1 << 20,
) -> bytes:
    get_task(deps, job_id, task_id)
    return deps.output.read(job_id, task_id, stream, offset=offset, limit=limit)


def list_nodes(deps: Deps) -> list[dict[str, Any]]:
    """Nodes with their running task count and free cores (from the store's accounting)."""
    active = deps.store.active_tasks()
    used = used_cores(active)
    running: dict[str, int] = defaultdict(int)
    for task in active:
        if task.node:
            running[task.node] += 1
    out = []
    for node in deps.store.list_nodes():
        doc = node.to_dict()
        for private in ("etag", "agentId", "hostId", "missingSince"):
            doc.pop(private, None)
        doc["runningTasks"] = running[node.name]
        doc["freeCores"] = max(node.cores - used[node.name], 0)
        out.append(doc)
    return out


def list_groups(deps: Deps) -> list[NodeGroup]:
    return deps.store.list_groups()


def used_cores(active: Iterable[Task]) -> dict[str, int]:
    """Cores each node's active tasks hold: the store's accounting, not the agents' word."""
    used: dict[str, int] = defaultdict(int)
    for task in active:
        if task.node:
            used[task.node] += task.cores
    return used
