"""Monitoring: jobs, tasks, nodes, node groups and task output, as the API shows them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.domain import hosts, memoryfit
from shared.domain.cluster import Node, NodeGroup
from shared.domain.models import Job, Task
from shared.domain.specvalues import quoted
from shared.domain.states import NODE_SCHEDULABLE, JobState, NodeState, TaskState
from shared.domain.usernames import NAME_RULE, USER_NAME
from shared.errors import InvalidRequest, NotFound
from shared.ports.output import DEFAULT_READ_BYTES, Stream, job_stamp
from shared.usecases import sweeps
from shared.usecases.deps import Deps


def get_job(deps: Deps, job_id: int) -> Job:
    return deps.store.get_job(job_id)


def list_jobs(
    deps: Deps,
    *,
    states: Iterable[JobState] | None = None,
    limit: int = 100,
    before: int | None = None,
    owner: str | None = None,
) -> list[Job]:
    """Newest first; ``before`` (a job id) continues a listing after its last job;
    ``owner``: one user's jobs (anyone may list anyone's: job states are no secret), a
    name that is no user name refused, an unknown user's list empty (as squeue -u)."""
    states = list(states) if states else None
    if owner is not None and not USER_NAME.fullmatch(owner):
        raise InvalidRequest(f"owner {quoted(owner)} is not a user name: {NAME_RULE}")
    return deps.store.list_jobs(states=states, limit=limit, before=before, owner=owner)


def list_tasks(
    deps: Deps,
    job_id: int,
    *,
    states: Iterable[TaskState] | None = None,
    offset: int = 0,
    limit: int = 1000,
    after: int = 0,
) -> list[Task]:
    """Stored tasks and the tasks of sweeps not created yet, in id order."""
    return sweeps.list_tasks(
        deps,
        job_id,
        states=list(states) if states else None,
        offset=offset,
        limit=limit,
        after=after,
    )


def get_task(deps: Deps, job_id: int, task_id: int) -> Task:
    return sweeps.get_task(deps, job_id, task_id)


def job_states(deps: Deps, ids: set[int]) -> dict[int, JobState | None]:
    """Each job's state (None: it does not exist)."""
    out: dict[int, JobState | None] = {}
    for job_id in ids:
        try:
            out[job_id] = deps.store.get_job(job_id).state
        except NotFound:
            out[job_id] = None
    return out


@dataclass(frozen=True)
class OutputPage:
    """One byte range of one attempt's stream, and what the whole stream is."""

    data: bytes
    attempt: int
    """The attempt served (the one asked for, else the task's result attempt, else its latest)."""
    offset: int
    size: int
    """The stream's whole size now (the truncation marker included)."""
    truncated: bool
    """The agent cut the stream at HPC_MAX_OUTPUT_BYTES (it ends with a line saying so)."""
    stored: bool = True
    """False: nothing of the stream is stored yet (not "it printed nothing")."""


def read_output(
    deps: Deps,
    job_id: int,
    task_id: int,
    stream: Stream,
    *,
    attempt: int | None = None,
    offset: int = 0,
    limit: int = DEFAULT_READ_BYTES,
) -> OutputPage:
    """Bytes ``offset`` to ``offset + limit`` of one attempt's stream. No ``attempt``: the
    attempt the task's state comes from (``result_attempt``), else its current one."""
    task = get_task(deps, job_id, task_id)
    if attempt is None:
        attempt = task.result_attempt if task.result_attempt is not None else task.attempt
    elif not 0 <= attempt <= task.attempt:
        had = "only attempt 0" if task.attempt == 0 else f"attempts 0 to {task.attempt}"
        raise NotFound(f"task {job_id}.{task_id} has no attempt {attempt}: it had {had}")
    unplaced = never_placed(task, attempt)
    if unplaced:
        raise NotFound(unplaced)
    # The job's stamp: a stream some other job of this id wrote (a store that started empty
    # beside kept output) is not this one's.
    submitted = deps.store.get_job(job_id).submit_time.isoformat()
    stamp = job_stamp(job_id, submitted)
    data = deps.output.read(
        job_id, task_id, stream, attempt=attempt, offset=offset, limit=limit, stamp=stamp
    )
    info = deps.output.info(job_id, task_id, stream, attempt=attempt, stamp=stamp)
    return OutputPage(
        data=data,
        attempt=attempt,
        offset=offset,
        size=max(info.size, (offset + len(data)) if data else 0),
        truncated=info.truncated,
        stored=info.stored or bool(data),
    )


def never_placed(task: Task, attempt: int) -> str | None:
    """Why ``attempt`` of ``task`` has no output because it never reached a node (a 404, as
    for an attempt the task never had: an empty 200 read as "it ran and wrote nothing");
    None if it may have. Only the current attempt's placement is recorded: an earlier one
    is read as it is (a requeue follows a run, or a cancel while queued)."""
    if attempt != task.attempt or task.result_attempt == attempt:
        return None
    if task.node or task.hosts or task.dispatch_time or task.start_time:
        return None
    key = f"task {task.key}"
    if task.state is not TaskState.QUEUED:
        return f"{key} never ran (it is {task.state}): no output"
    earlier = f"0 to {attempt - 1}" if attempt > 1 else "0"
    earlier = f" (its earlier attempts: --attempt {earlier})" if attempt else ""
    return f"{key} has not run yet: no output{earlier}"


NODE_PRIVATE = ("etag", "agentId", "hostId", "missingSince", "givenUp", "addedBy")
"""A node's fields no response shows (its agent's reply session, its machine's id...)."""


def public_node_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A node's document without :data:`NODE_PRIVATE`: what the API shows of a node."""
    return {k: v for k, v in doc.items() if k not in NODE_PRIVATE}


def list_nodes(deps: Deps) -> list[dict[str, Any]]:
    """Nodes with their running task count, free cores and free memory (from the store's
    accounting: what active tasks hold)."""
    return _node_docs(deps, deps.store.list_nodes())


def get_node(deps: Deps, name: str) -> dict[str, Any]:
    """One node as :func:`list_nodes` shows it; NotFound (404) for a name no node has
    (names are exact, as every node route takes them)."""
    try:
        node = deps.store.get_node(name)
    except NotFound:
        raise NotFound(f"node {quoted(name)} does not exist (hpc node list)") from None
    return _node_docs(deps, [node])[0]


def _node_docs(deps: Deps, nodes: list[Node]) -> list[dict[str, Any]]:
    active = deps.store.active_tasks()
    used = hosts.used_cores(active)  # (the store's accounting, not the agents' word)
    held = memoryfit.held_memory(active)
    running: dict[str, int] = defaultdict(int)
    for task in active:
        if task.node:
            running[task.node] += 1
    out = []
    for node in nodes:
        doc = public_node_doc(node.to_dict())
        doc["runningTasks"] = running[node.name]
        # cores a task could take now: none on a node that takes no work (Offline,
        # Draining, Starting...; a probe read Offline VMs' cores as free capacity)
        open_ = node.state in NODE_SCHEDULABLE
        doc["freeCores"] = max(node.cores - used[node.name], 0) if open_ else 0
        doc["usedCores"] = used[node.name]  # held by tasks, on any node (Draining too)
        # memory a task asking for some could have now, as cores (None: memory unknown)
        free_mb = memoryfit.node_free_mb(node, held)
        doc["freeMemoryMb"] = free_mb if open_ or free_mb is None else 0
        out.append(doc)
    return out


NODE_STATES = frozenset({*(s.value.lower() for s in NodeState), "drained"})


def filter_nodes(
    nodes: list[dict[str, Any]], groups: list[str], states: list[str]
) -> list[dict[str, Any]]:
    """Nodes (as :func:`list_nodes` gives them) in any of ``groups`` and of ``states`` (any
    case; none: all); Drained is Draining with no task. ValueError for an unknown state."""
    wanted = {s.lower() for s in states}
    unknown = sorted(wanted - NODE_STATES)
    if unknown:
        known = ", ".join([*(s.value for s in NodeState), "Drained"])
        raise ValueError(f"state {', '.join(unknown)}: a node state is one of {known}")
    folded = {g.lower() for g in groups}

    def state_of(node: dict[str, Any]) -> set[str]:
        state = str(node.get("state", "")).lower()
        drained = state == "draining" and not node.get("runningTasks")
        return {state, "drained"} if drained else {state}

    return [
        n
        for n in nodes
        if (not folded or folded & {str(g).lower() for g in n.get("groups") or []})
        and (not wanted or wanted & state_of(n))
    ]


def list_groups(deps: Deps) -> list[NodeGroup]:
    return deps.store.list_groups()
