"""A job spec's expansion into records: the job (Queued), its single tasks, and its sweeps as
ranges whose tasks are created as they are dispatched. The spec and its checks are
:mod:`shared.domain.jobspec`; submit (:mod:`shared.usecases.submit`) stores what this
builds."""

from __future__ import annotations

from datetime import datetime

from shared.domain import taskgraph
from shared.domain.jobspec import JobSpec, task_memory
from shared.domain.models import Job, Task
from shared.domain.states import TaskState
from shared.domain.taskrange import TaskRange


def build(
    spec: JobSpec, job_id: int, *, now: datetime, owner: str = "admin"
) -> tuple[Job, list[Task], list[TaskRange]]:
    """The job (state Queued), its single tasks and its sweeps as ranges (their tasks are
    created as they are dispatched); task ids 1..n in spec order, except that a task
    that others depend on comes before them (shared.domain.taskgraph)."""
    job = Job(
        id=job_id,
        name=spec.name or f"job{job_id}",
        owner=owner,
        priority=spec.priority,
        node_groups=list(spec.node_groups),
        max_retries=spec.max_retries,
        submit_time=now,
        max_concurrent=spec.max_concurrent,
        hold_until=spec.hold_until,  # UTC already (_hold_until)
        held=spec.held,
        runtime_limit=spec.runtime_limit,
        job_runtime_limit=spec.job_runtime_limit,
        depends_on=list(dict.fromkeys(spec.depends_on)),
        run_dependents_on_failure=spec.run_dependents_on_failure,
        exclusive=spec.exclusive,
    )
    job.steps = taskgraph.steps(spec.tasks)
    tasks: list[Task] = []
    ranges: list[TaskRange] = []
    next_id = 1
    order = taskgraph.spec_order(spec.tasks) if job.steps else range(len(spec.tasks))
    for one in (spec.tasks[i] for i in order):
        index = one.sweep.start if one.sweep else None
        task = Task(
            job_id=job_id,
            id=next_id,
            depends_on=list(dict.fromkeys(one.depends_on)),
            name=one.name or (f"{job.name}[{index}]" if index is not None else job.name),
            command=one.command,
            cores=one.min_cores,
            max_cores=one.max_cores,
            exclusive=one.exclusive,
            nodes=one.nodes,
            min_memory_mb=task_memory(one, spec),
            sweep_index=index,
            work_dir=one.work_dir,
            env=dict(one.env),
            stdout=one.stdout,
            stderr=one.stderr,
            priority=spec.priority,
            node_groups=list(spec.node_groups),
            job_exclusive=spec.exclusive,
            submit_time=now,
            runtime_limit_s=one.runtime_limit or spec.runtime_limit,
            valid_exit_codes=one.valid_exit_codes or spec.valid_exit_codes,
        )
        if one.sweep is None:
            tasks.append(task)
            next_id += 1
            continue
        ranges.append(
            TaskRange(
                job_id=job_id,
                first_id=next_id,
                count=one.sweep.count,
                start=one.sweep.start,
                step=one.sweep.step,
                template=task,
                name_prefix=None if one.name else job.name,
            )
        )
        next_id += one.sweep.count
    job.task_count = next_id - 1
    job.task_counts = {TaskState.QUEUED: job.task_count}
    return job, tasks, ranges


def expand(spec: JobSpec, job_id: int, *, now: datetime) -> list[Task]:
    """Every task of the job as a Task record, sweeps expanded (for tests and small jobs)."""
    _, tasks, ranges = build(spec, job_id, now=now)
    for r in ranges:
        tasks += [r.task(r.first_id + k) for k in range(r.count)]
    return sorted(tasks, key=lambda t: t.id)
